"""What the issue-12 hardening costs, against the old way in the same run.

- Staging a workspace: `orchestrator.workspace.stage_tree` (reads the tree itself without following links, writes
  objects in Python, git never sees the work tree) against the old `git add -A && git write-tree` on a repository
  inside the workspace. Workspaces: 200 small files, and 2,000 small files plus 8 files of 8 MB.
- The quota measurement (`sandboxes.hostfs.disk_usage`, run after every exec and every second during one) on the
  same trees.
- Exec round trip of `true` in a Docker sandbox with the quota on (default 8192 MB) and off (`disk_mb=0`).
Prints a markdown table and writes it to benchmarks/results/host_safety_bench.md.

    .venv/bin/python benchmarks/host_safety_bench.py [--repeats 5]
"""
from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from orchestrator.safegit import clean_env, init_bare  # noqa: E402
from orchestrator.workspace import stage_tree  # noqa: E402
from sandboxes import SandboxSpec, hostfs, open_sandbox  # noqa: E402

RESULTS = Path(__file__).parent / "results" / "host_safety_bench.md"


def _tree(root: Path, small: int, big: int) -> Path:
    for i in range(small):
        path = root / f"pkg{i % 20}" / f"mod_{i}.py"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"VALUE_{i} = {i}\n" * 40)
    for i in range(big):
        (root / f"data_{i}.bin").write_bytes(os.urandom(8 << 20))
    return root


def _median_ms(fn: Callable[[], object], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def _old_staging(ws: Path) -> Callable[[], object]:
    """The replaced way: a repository inside the workspace, `git add -A` then `git write-tree`."""
    subprocess.run(["git", "init", "-q", str(ws)], check=True, env=clean_env())

    def stage() -> None:
        for args in (["add", "-A"], ["write-tree"]):
            subprocess.run(["git", "-C", str(ws), *args], check=True, capture_output=True, env=clean_env())
    return stage


def staging_rows(tmp: Path, repeats: int) -> list[str]:
    rows = []
    for label, small, big in (("200 small files", 200, 0), ("2,000 small + 8 x 8 MB", 2000, 8)):
        new_ws = _tree(tmp / f"new-{small}" / "workspace", small, big)
        git_dir = tmp / f"new-{small}" / "git"
        init_bare(git_dir)
        stage_tree(git_dir, new_ws)  # first staging writes every object; later ones mostly find them
        new_ms = _median_ms(lambda: stage_tree(git_dir, new_ws), repeats)
        old_ws = tmp / f"old-{small}"
        shutil.copytree(new_ws, old_ws)
        old = _old_staging(old_ws)
        old()
        old_ms = _median_ms(old, repeats)
        usage_ms = _median_ms(lambda: hostfs.disk_usage(new_ws), repeats)
        rows.append(f"| {label} | {new_ms:.1f} | {old_ms:.1f} | {usage_ms:.2f} |")
    return rows


def exec_rows(tmp: Path, repeats: int) -> list[str]:
    ws = _tree(tmp / "exec-ws", 200, 0)
    rows = []
    for label, disk_mb in (("quota on (8192 MB)", 8192), ("quota off (disk_mb=0)", 0)):
        with open_sandbox(SandboxSpec(workspace=ws, disk_mb=disk_mb), backend="docker", pool=False) as sb:
            sb.exec("true")
            times = []
            for _ in range(repeats * 20):
                start = time.perf_counter()
                sb.exec("true")
                times.append((time.perf_counter() - start) * 1000)
        rows.append(f"| {label} | {statistics.median(times):.2f} | {statistics.quantiles(times, n=10)[-1]:.2f} |")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--no-docker", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        lines = [f"Machine: {platform.machine()}, {os.cpu_count()} cores ({platform.platform()}); shared with other "
                 f"jobs, so numbers are noisy. Median of {args.repeats}.", "",
                 "| workspace | stage_tree (ms) | old git add -A + write-tree (ms) | quota measure (ms) |",
                 "| --- | ---: | ---: | ---: |", *staging_rows(Path(tmp), args.repeats)]
        if not args.no_docker:
            lines += ["", "| Docker exec of `true`, 200-file workspace | median (ms) | p90 (ms) |", "| --- | ---: | ---: |",
                      *exec_rows(Path(tmp), args.repeats)]
    text = "\n".join(lines) + "\n"
    print(text)
    RESULTS.write_text("# host_safety_bench\n\n" + text)


if __name__ == "__main__":
    main()
