"""A CLI-like process for the crash test: start the run (or resume the one in RUNS_DIR) with a deterministic
policy model and the local test sandbox; the test kills it with SIGKILL at random points. M3LAB_TEST_ISLANDS=K
runs a search with K islands instead (each island fails four times, then fixes the file).

Every check sleeps CHECK_SECONDS first, so a run needs at least (rounds x CHECK_SECONDS) of process life however fast
the machine is: a test that kills each process within L seconds knows the run cannot finish before it has been
killed more than rounds x CHECK_SECONDS / L - 1 times (``min_kills``), instead of hoping the machine is slow."""
from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

from orchestrator.config import BudgetLimits, LoopSettings, SearchSettings, Settings
from orchestrator.rundir import list_runs
from orchestrator.runner import create_run, drive, resume_run
from orchestrator.runtime import Runtime
from tasks.code.task import CodeTask
from tests.orchestrator.support import PolicyChatModel, Script, fix_after, local_opener

ISLANDS = int(os.environ.get("M3LAB_TEST_ISLANDS", "1"))
ROOT = Path(__file__).resolve().parents[2]
CHECK_SECONDS = 2.0
GOOD = "def add(a, b):\n    return a + b\n"
BAD = "def add(a, b):\n    return a - b\n"


def models(role, endpoint, thinking, max_tokens=None):
    if role == "producer":
        return PolicyChatModel(messages=iter(()), policy=fix_after(8 if ISLANDS == 1 else 4, GOOD, BAD))
    return Script().factory()(role, endpoint, thinking)


def min_kills(rounds: int, max_life: float) -> int:
    """The fewest kills a run of ``rounds`` sequential checks can have taken before it finishes, when each process
    lives at most ``max_life`` seconds: its lives (kills + 1) must add up to the checks' sleeps."""
    return math.ceil(rounds * CHECK_SECONDS / max_life) - 1


def start(runs: Path, src: Path, islands: int = 1) -> subprocess.Popen:
    """This driver in a child process (the crash tests kill it)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "M3LAB_TEST_ISLANDS": str(islands)}
    return subprocess.Popen([sys.executable, "-m", "tests.orchestrator.crash_driver", str(runs), str(src)],
                            cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def main(runs_dir: Path, source: Path) -> None:
    settings = Settings(runs_dir=runs_dir, budget=BudgetLimits(max_iterations=15),
                        loop=LoopSettings(stuck_patience=20), search=SearchSettings(islands=ISLANDS))
    existing = list_runs(runs_dir)
    if existing and existing[0].read_meta()["status"] == "succeeded":
        return
    if existing:
        resume_run(existing[0].path, settings, models=models, open_sandbox=local_opener)
    else:
        task = CodeTask(source=str(source), check_command=f"sleep {CHECK_SECONDS}; bash check.sh", main="calc.py")
        run = create_run(task, settings)
        drive(Runtime(run, task, settings, models, local_opener), resume=False)


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
