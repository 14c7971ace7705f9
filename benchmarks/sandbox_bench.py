"""Sandbox start and exec latency, Docker and process backends in the same run.

Measures, per backend: cold start (open_sandbox without the warm pool, until it returns; and until a first
`true` has run, which includes starting Docker's exec agent), warm-pool start
(the pool filled beforehand), exec round trip of `true` (median and p90), 100 execs in a row, and for
reference a plain `docker run --rm IMAGE python3 -c pass` (the number the issue compares against).
Prints a markdown table and writes it to benchmarks/results/sandbox_bench.md.

    .venv/bin/python benchmarks/sandbox_bench.py [--repeats 5]
"""
from __future__ import annotations

import argparse
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sandboxes import SandboxSpec, open_sandbox  # noqa: E402
from sandboxes.engine import engine_available, shared_client  # noqa: E402
from sandboxes.pool import shared_pool  # noqa: E402

RESULTS = Path(__file__).parent / "results" / "sandbox_bench.md"
IMAGE = "m3lab/default"


@dataclass
class Row:
    backend: str
    cold_start_ms: float
    cold_first_exec_ms: float
    warm_start_ms: float | None
    exec_rt_ms: float
    exec_rt_p90_ms: float
    hundred_execs_s: float


def _ms(samples: list[float]) -> float:
    return statistics.median(samples) * 1000


def _timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def bench_backend(backend: str, workspace: Path, repeats: int) -> Row:
    spec = SandboxSpec(image=IMAGE, workspace=workspace)
    cold, first = [], []
    for _ in range(repeats):
        start = time.perf_counter()
        sb = open_sandbox(spec, backend=backend, pool=False)
        cold.append(time.perf_counter() - start)
        sb.exec(["true"])  # Docker starts its exec agent here; the process backend did at open
        first.append(time.perf_counter() - start)
        sb.close()
    warm: list[float] = []
    if backend == "docker":
        pool = shared_pool(shared_client())
        for _ in range(repeats):
            pool.prewarm(spec)
            start = time.perf_counter()
            sb = open_sandbox(spec, backend=backend, pool=True)
            warm.append(time.perf_counter() - start)
            sb.close()
            pool.wait()
        pool.drain()
    with open_sandbox(spec, backend=backend, pool=False) as sb:
        sb.exec(["true"])
        rts = sorted(_timed(lambda: sb.exec(["true"])) for _ in range(50))
        hundred = _timed(lambda: [sb.exec(["true"]) for _ in range(100)])
    return Row(backend, _ms(cold), _ms(first), _ms(warm) if warm else None, _ms(rts), rts[int(0.9 * len(rts))] * 1000,
               hundred)


def plain_docker_run_ms(repeats: int) -> float:
    samples = [_timed(lambda: subprocess.run(["docker", "run", "--rm", IMAGE, "python3", "-c", "pass"],
                                             check=True, capture_output=True)) for _ in range(repeats)]
    return _ms(samples)


def machine() -> str:
    model = "unknown CPU"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    import os

    mem_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return f"{model}, {os.cpu_count()} cores, {mem_gib:.0f} GiB, {platform.system()} {platform.release()}"


def table(rows: list[Row], docker_run_ms: float | None) -> str:
    lines = ["| backend | cold start (ms) | cold start + first exec (ms) | warm-pool start (ms) "
             "| exec round trip, median / p90 (ms) | 100 execs (s) |",
             "| --- | ---: | ---: | ---: | ---: | ---: |"]
    for r in rows:
        warm = f"{r.warm_start_ms:.1f}" if r.warm_start_ms is not None else "n/a (no pool needed)"
        lines.append(f"| {r.backend} | {r.cold_start_ms:.0f} | {r.cold_first_exec_ms:.0f} | {warm} | {r.exec_rt_ms:.1f} / {r.exec_rt_p90_ms:.1f} "
                     f"| {r.hundred_execs_s:.2f} |")
    if docker_run_ms is not None:
        lines.append(f"| reference: `docker run --rm {IMAGE} python3 -c pass` | | {docker_run_ms:.0f} | | | |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    rows = []
    docker_ms = None
    with tempfile.TemporaryDirectory() as tmp:
        if engine_available():
            rows.append(bench_backend("docker", Path(tmp), args.repeats))
            docker_ms = plain_docker_run_ms(args.repeats)
        else:
            print("no Docker engine: docker row skipped", file=sys.stderr)
        rows.append(bench_backend("process", Path(tmp), args.repeats))
    text = (f"# Sandbox benchmark\n\nMachine: {machine()}; {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; "
            f"median of {args.repeats} starts, 50 round trips of `true`.\n\n{table(rows, docker_ms)}\n")
    print(text)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(text)


if __name__ == "__main__":
    main()
