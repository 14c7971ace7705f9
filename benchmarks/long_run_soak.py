"""Long-run soak: what a run holds as it goes on. A scripted model (instant), the code task with real Docker
sandboxes (the producer runs one command per iteration; every check opens a fresh sandbox), never complete, so
the run goes to its iteration budget. Every `--every` iterations it records the sandbox containers of the run,
the process's open file descriptors and RSS, and the run folder's size.

Baseline in the same run: the pre-fix path, where every one-off check sandbox went through the warm pool (which
then kept one idle container per iteration, bound to that iteration's deleted folder), for a shorter run.

    .venv/bin/python benchmarks/long_run_soak.py [--iterations 1000] [--every 100] [--minutes 40]

A run that reaches `--minutes` ends at its time budget; the table then says how many iterations fit.
"""
from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from orchestrator.config import BudgetLimits, LoopSettings, Settings  # noqa: E402
from orchestrator.runner import start_run  # noqa: E402
from sandboxes.engine import LABEL_OWNER_PID, LABEL_RUN, shared_client  # noqa: E402
from serving.client import ModelEndpoint  # noqa: E402
from tasks.base import CheckReport  # noqa: E402
from tasks.code.task import CodeTask  # noqa: E402
from tests.orchestrator.support import Script, make_code_workspace, tool_call  # noqa: E402

Sample = dict[str, float]


def process_sample(run_dir: Path, run_id: str) -> Sample:
    """Containers of the run (and of this process), open fds, RSS and run-folder size, now."""
    client = shared_client()
    mine = client.api.containers(all=True, filters={"label": f"{LABEL_OWNER_PID}={os.getpid()}"})
    rss_kb = next(int(line.split()[1]) for line in Path("/proc/self/status").read_text().splitlines()
                  if line.startswith("VmRSS:"))
    size = sum(f.stat().st_size for f in run_dir.rglob("*") if f.is_file() and not f.is_symlink())
    return {"run_containers": sum(c["Labels"].get(LABEL_RUN) == run_id for c in mine), "process_containers": len(mine),
            "fds": len(os.listdir("/proc/self/fd")), "rss_mb": rss_kb / 1024, "run_mb": size / 2**20}


@dataclass
class SoakTask(CodeTask):
    """The code task, never complete (the run goes to its budget), sampling every `every` iterations."""

    every: int = 100
    samples: Any = None
    started: float = 0.0

    def is_complete(self, report: CheckReport) -> bool:
        return False

    def on_iteration_end(self, run_dir: Path, iteration: int, report: CheckReport, accepted: bool,
                         parent: int | None = None) -> None:
        if iteration % self.every == 0:
            sample = process_sample(Path(run_dir), Path(run_dir).name)
            sample.update(iteration=iteration, minutes=(time.monotonic() - self.started) / 60)
            self.samples.append(sample)
            print(" ".join(f"{k}={v:.1f}" if isinstance(v, float) else f"{k}={v}" for k, v in sample.items()),
                  flush=True)


def soak(root: Path, iterations: int, every: int, minutes: float,
         opener: Callable[..., Any] | None = None) -> tuple[list[Sample], Sample, float]:
    """One scripted run; returns the samples, a sample taken after it ended, and the seconds it took."""
    fast = ModelEndpoint(retry_for_s=0.5)
    settings = Settings(producer=fast, verifier=fast, runs_dir=root / "runs", sandbox_backend="docker",
                        budget=BudgetLimits(max_iterations=iterations, max_hours=minutes / 60, max_tokens=10**12),
                        loop=LoopSettings(max_turns=1, stuck_patience=10**9))
    task = SoakTask(source=str(make_code_workspace(root, solved=True)), check_command="bash check.sh",
                    main="calc.py", every=every, samples=[], started=time.monotonic())
    script = Script(default={"producer": tool_call("run", command="echo working; ls"),
                             "verifier": tool_call("submit_verdict", verdict="pass", findings=[])})
    started = time.monotonic()
    run = start_run(task, settings, models=script.factory(), open_sandbox=opener)
    took = time.monotonic() - started
    after = process_sample(run, run.name)
    return task.samples, after, took


def pooled_one_offs(spec: Any, backend: str) -> Any:
    """The pre-fix path: every sandbox through the warm pool, which refilled for each (uncapped) spec."""
    from sandboxes import open_sandbox
    from sandboxes.pool import shared_pool

    shared_pool(shared_client()).cap = 10**6
    return open_sandbox(spec, backend="docker", pool=True)


def table(name: str, samples: list[Sample], after: Sample, took: float) -> list[str]:
    rows = [f"| {name} | {s['iteration']:.0f} | {s['minutes']:.1f} | {s['run_containers']:.0f} | "
            f"{s['process_containers']:.0f} | {s['fds']:.0f} | {s['rss_mb']:.0f} | {s['run_mb']:.1f} |"
            for s in samples]
    n = samples[-1]["iteration"] if samples else 0
    rows.append(f"| {name}: after the run ({n:.0f}+ iterations, {took / 60:.1f} min) | | | "
                f"{after['run_containers']:.0f} | {after['process_containers']:.0f} | {after['fds']:.0f} | "
                f"{after['rss_mb']:.0f} | {after['run_mb']:.1f} |")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--iterations", type=int, default=1000)
    parser.add_argument("--every", type=int, default=100)
    parser.add_argument("--minutes", type=float, default=40.0, help="time budget of the soak run")
    parser.add_argument("--baseline-iterations", type=int, default=40)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "long_run_soak.md")
    args = parser.parse_args()
    lines = ["| path | iteration | minutes | run's containers | process's containers | open fds | RSS MB | "
             "run folder MB |", "|---|---|---|---|---|---|---|---|"]
    with tempfile.TemporaryDirectory() as tmp:
        base_every = max(1, args.baseline_iterations // 4)
        lines += table("baseline: one-offs through the pool", *soak(Path(tmp) / "base", args.baseline_iterations,
                                                                    base_every, args.minutes, pooled_one_offs))
        from sandboxes.pool import drain_shared_pool

        drain_shared_pool()
    with tempfile.TemporaryDirectory() as tmp:
        samples, after, took = soak(Path(tmp) / "soak", args.iterations, args.every, args.minutes)
        lines += table("one-offs end with their job", samples, after, took)
    done = int(samples[-1]["iteration"]) if samples else 0
    note = ("" if done >= args.iterations else
            f"\nOnly {done}+ of {args.iterations} iterations fit in the {args.minutes:g}-minute budget.\n")
    machine = f"{platform.node()} · {os.cpu_count()} cores · Python {platform.python_version()}"
    text = (f"# Long-run soak ({time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {machine})\n\n"
            f"Scripted model, code task, real Docker (one producer command and one fresh check sandbox per "
            f"iteration). Shared machine: times are noisy.\n\n" + "\n".join(lines) + "\n" + note)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
