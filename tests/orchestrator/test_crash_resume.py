"""Kill the run's process with SIGKILL at random points ten times, resume each time: the run completes, the
iterations are contiguous, and no iteration is evaluated (or decided) twice."""
from __future__ import annotations

import json
import os
import random
import signal
import time
from collections import Counter
from pathlib import Path

import git

from tests.orchestrator.crash_driver import min_kills, start
from tests.orchestrator.support import make_code_workspace


def test_sigkill_ten_times_then_resume_to_completion(tmp_path: Path) -> None:
    rng = random.Random(1234)
    max_life = 2.5  # each process is killed within this many seconds (min_kills' bound)
    src, runs = make_code_workspace(tmp_path), tmp_path / "runs"
    kills = 0
    while kills < 10:
        proc = start(runs, src)
        time.sleep(rng.uniform(0.8, max_life))
        if proc.poll() is not None:  # finished before the kill: that is fine too, but keep killing new runs
            break
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        kills += 1
    final = start(runs, src)
    _, err = final.communicate(timeout=300)
    run = next(p for p in runs.iterdir() if not p.name.startswith(".") and (p / "run.json").exists())  # .new-*: creation cut
    meta = json.loads((run / "run.json").read_text())
    assert meta["status"] == "succeeded", err.decode()[-3000:]
    assert kills >= min_kills(rounds=9, max_life=max_life) >= 5, "the run finished too early to exercise crashes"
    events = [json.loads(line) for line in (run / "events.jsonl").read_text().splitlines() if line.strip()]
    verdicts = Counter(e["iteration"] for e in events if e["kind"] == "verdict")
    decisions = Counter(e["iteration"] for e in events if e["kind"] == "decision")
    assert set(verdicts.values()) == {1} and set(decisions.values()) == {1}
    assert sorted(verdicts) == list(range(1, meta["iteration"] + 1)) == list(range(1, 10))
    assert sorted(int(p.stem) for p in (run / "iterations").glob("*.json")) == list(range(1, 10))
    seqs = [e["seq"] for e in events]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    messages = [c.message for c in git.Repo(run / "git").iter_commits("HEAD")]
    numbers = [int(m.split(":")[0].split()[1]) for m in messages]
    assert sorted(numbers) == list(range(0, 10))
