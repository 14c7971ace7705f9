"""Islands benchmark (`[search] islands = K`, orchestrator/islands.py): candidates evaluated per hour by one
search with K = 1 (the one-producer loop: the baseline, same run), 2 and 4 islands, on this machine.

Each search: the code task with a scripted producer (two model calls per candidate: write the file, declare done)
that never gets it right, so it runs to its budget of `--candidates` candidates. The model answers after
`latency` seconds (a shared endpoint) and the check sleeps `eval` seconds before running (a stand-in for a GPU
evaluation on another node: time that costs this host no CPU). With K islands the K producers wait on the model
and the K evaluations run at the same time, so the wall time per round stays about that of one candidate.

    PYTHONPATH=. .venv/bin/python benchmarks/islands_bench.py [--candidates 12] [--md benchmarks/results/islands_bench.md]
"""
from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from orchestrator.config import BudgetLimits, LoopSettings, SearchSettings, Settings  # noqa: E402
from orchestrator.runner import start_run  # noqa: E402
from serving.client import ModelEndpoint  # noqa: E402
from tasks.code.task import CodeTask  # noqa: E402
from tests.orchestrator.support import PolicyChatModel, Script, fix_after, local_opener, make_code_workspace  # noqa: E402

GOOD = "def add(a, b):\n    return a + b\n"
BAD = "def add(a, b):\n    return a - b\n"


def models(latency_s: float):
    never = fix_after(10**9, GOOD, BAD)

    def make(role, endpoint, thinking, max_tokens=None):
        time.sleep(latency_s)
        if role == "producer":
            return PolicyChatModel(messages=iter(()), policy=never)
        return Script().factory()(role, endpoint, thinking)
    return make


def one_search(root: Path, islands: int, candidates: int, latency_s: float, eval_s: float) -> float:
    """Wall seconds of one search to `candidates` evaluated candidates."""
    src = make_code_workspace(root / "src")
    task = CodeTask(source=str(src), check_command=f"sleep {eval_s}; bash check.sh", main="calc.py")
    fast = ModelEndpoint(retry_for_s=0.5)
    settings = Settings(producer=fast, verifier=fast, runs_dir=root / "runs",
                        budget=BudgetLimits(max_iterations=candidates), loop=LoopSettings(stuck_patience=10**6, plan=False),
                        search=SearchSettings(islands=islands))
    started = time.monotonic()
    run = start_run(task, settings, models=models(latency_s), open_sandbox=local_opener)
    wall = time.monotonic() - started
    evaluated = len(list((run / "iterations").glob("*.json")))
    assert evaluated == candidates, f"{evaluated} candidates evaluated, expected {candidates}"
    return wall


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--candidates", type=int, default=12)
    parser.add_argument("--islands", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--md", type=Path, default=Path("benchmarks/results/islands_bench.md"))
    args = parser.parse_args()
    rows = []
    for latency_s, eval_s in ((0.0, 0.0), (1.0, 1.0)):
        base = None
        for k in args.islands:
            with tempfile.TemporaryDirectory(prefix="m3lab-islands-") as tmp:
                wall = one_search(Path(tmp), k, args.candidates, latency_s, eval_s)
            base = base or wall
            rows.append((latency_s, eval_s, k, wall, args.candidates / wall * 3600, base / wall))
            print(f"latency {latency_s} s, eval {eval_s} s, islands {k}: {wall:.1f} s", flush=True)
    machine = f"{platform.node()}: {os.cpu_count()} cores, Python {platform.python_version()}"
    lines = [f"# islands_bench ({time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())})", "",
             f"Machine: {machine} (shared, loaded by other sessions: noisy). {args.candidates} candidates per "
             "search; baseline = islands 1 (the one-producer loop) in the same run.", "",
             "| model s/call | eval s | islands | wall (s) | candidates/h | vs 1 island |", "|---|---|---|---|---|---|"]
    lines += [f"| {lat:g} | {ev:g} | {k} | {wall:.1f} | {rate:.0f} | {speed:.2f}x |"
              for lat, ev, k, wall, rate, speed in rows]
    text = "\n".join(lines) + "\n"
    args.md.parent.mkdir(parents=True, exist_ok=True)
    args.md.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
