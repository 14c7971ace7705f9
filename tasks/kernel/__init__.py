"""Kernel-optimization tasks: KernelBench-format targets, an evaluation harness that candidate code cannot reach,
and a program database. Entry points: `tasks.kernel.task.KernelTask`, `tasks.kernel.runner.evaluate_candidate`."""
