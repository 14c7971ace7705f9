"""Warm evaluators (options.warm, subprocess isolation): the reference workers survive from one evaluation to the
next, a dead one is replaced, the candidate (uid nobody) can neither signal nor rewrite them, and a hung server
is killed without spoiling the next evaluation."""
from __future__ import annotations

import os
import shutil
import signal
import tempfile
from pathlib import Path

import pytest

from tasks.kernel.harness.procs import can_drop_privileges
from tasks.kernel.targets import TARGETS_DIR
from tasks.kernel.warm import POOL
from tests.tasks.kernel.support import evaluate

HONEST = TARGETS_DIR / "candidates" / "softmax_torch.py"

# As an attacker would write it: find the warm reference workers and the warm evaluator's files, and go for them.
ATTACK = '''
import glob, os, signal
from pathlib import Path
import torch

TRIED = []
for entry in Path("/proc").iterdir():
    try:
        cmd = (entry / "cmdline").read_bytes().split(b"\\0")
    except OSError:
        continue
    try:
        ppid = (entry / "stat").read_text().rsplit(")", 1)[1].split()[1]
        parent = Path("/proc", ppid, "cmdline").read_bytes()
    except (OSError, IndexError):
        continue
    if b"harness.worker" in cmd and b"Model" in cmd and b"harness.serve" in parent:
        try:
            os.kill(int(entry.name), signal.SIGKILL)
            TRIED.append("killed " + entry.name)
        except OSError as exc:
            TRIED.append(type(exc).__name__)
for path in glob.glob("/tmp/m3lab-warm-*/harness/worker.py") + glob.glob("/tmp/m3lab-warm-*/target.py"):
    try:
        with open(path, "a") as fh:
            fh.write("\\nraise SystemExit('poisoned')\\n")
        TRIED.append("wrote " + path)
    except OSError as exc:
        TRIED.append(type(exc).__name__)
print("attack:", TRIED, flush=True)


class ModelNew(torch.nn.Module):
    def __init__(self, *args):
        super().__init__()

    def forward(self, x):
        return torch.softmax(x, dim=-1)
'''


def _ref_pids() -> set[int]:
    """Live reference workers of this test's warm servers (other sessions may run kernel tests too)."""
    servers = {s.proc.pid for group in POOL._free.values() for s in group if s.alive()}
    found = set()
    for entry in Path("/proc").iterdir():
        try:
            cmd = (entry / "cmdline").read_bytes().split(b"\0")
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        if b"harness.worker" in cmd and b"Model" in cmd and ppid in servers:
            found.add(int(entry.name))
    return found


@pytest.fixture(autouse=True)
def _fresh_pool():
    POOL.close()
    yield
    POOL.close()


def test_references_stay_warm_and_a_dead_one_is_replaced(tmp_path: Path) -> None:
    first = evaluate(tmp_path / "1", "softmax", HONEST, warm=True)
    refs = _ref_pids()
    second = evaluate(tmp_path / "2", "softmax", HONEST, warm=True)
    assert first.accepted and second.accepted, (first.summary(), second.summary())
    assert len(refs) == 2 and _ref_pids() == refs  # the same two processes served both evaluations
    assert second.aa_spread is not None and second.timings  # re-timed, A/A reported
    os.kill(min(refs), signal.SIGKILL)
    third = evaluate(tmp_path / "3", "softmax", HONEST, warm=True)
    assert third.accepted, third.summary()
    assert len(_ref_pids()) == 2 and not _ref_pids() & refs  # both replaced, together


@pytest.mark.skipif(not can_drop_privileges(), reason="the candidate runs as nobody only when the evaluator is root "
                    "and nobody can read the interpreter")
def test_candidate_cannot_signal_or_rewrite_the_warm_references(tmp_path: Path) -> None:
    tmp_path = Path(tempfile.mkdtemp(prefix="m3lab-warm-test-"))  # world-traversable: the candidate drops to nobody
    tmp_path.chmod(0o755)
    evaluate(tmp_path / "warmup", "softmax", HONEST, warm=True)
    refs = _ref_pids()
    attack = tmp_path / "attack.py"
    attack.write_text(ATTACK)
    attack.chmod(0o644)
    verdict = evaluate(tmp_path / "a", "softmax", attack, warm=True, static=False)
    assert not any("evaluator's uid" in w for w in verdict.warnings), verdict.warnings  # it ran as nobody
    log = next((tmp_path / "a").glob("eval-*/logs/cand.log")).read_text()
    assert "attack: [" in log and "killed" not in log and "wrote" not in log, log
    assert verdict.accepted, verdict.summary()  # nothing it tried hurt the references
    assert _ref_pids() == refs
    after = evaluate(tmp_path / "b", "softmax", HONEST, warm=True)
    assert after.accepted and _ref_pids() == refs
    shutil.rmtree(tmp_path)


def test_a_hung_evaluation_kills_the_server_and_the_next_starts_fresh(tmp_path: Path) -> None:
    hang = tmp_path / "hang.py"
    hang.write_text(HONEST.read_text().replace("import torch", "import time\nimport torch", 1)
                    + "\nimport time as _t\n_t.sleep(600)\n")
    evaluate(tmp_path / "w", "softmax", HONEST, warm=True)
    refs = _ref_pids()
    with pytest.raises(Exception, match="timed out"):
        evaluate(tmp_path / "h", "softmax", hang, warm=True, static=False, timeout_s=1, compile_timeout_s=1,
                 start_timeout_s=60)
    again = evaluate(tmp_path / "n", "softmax", HONEST, warm=True)
    assert again.accepted and not _ref_pids() & refs


@pytest.mark.slow
def test_real_loop_with_warm_references_stops_resumes_and_rejects_the_cheat(tmp_path: Path) -> None:
    """`m3lab optimize --warm` path: the scripted producer cycles honest, a planted cheat and broken code; the run
    stops at its budget and resumes; the same two reference workers serve every timed check."""
    import pandas as pd
    from langchain_core.messages import AIMessage

    from orchestrator.config import BudgetLimits, LoopSettings, Settings
    from orchestrator.runner import resume_run, start_run
    from serving.client import ModelEndpoint
    from tasks.kernel.runner import EvalOptions
    from tasks.kernel.task import KernelTask
    from tests.orchestrator.support import Script, local_opener

    pool = [HONEST.read_text(), (TARGETS_DIR / "cheats" / "c10_nan_wildcard.py").read_text(),
            "import torch\nclass ModelNew(torch.nn.Module):\n    def forward(self, x):\n        return x[0]\n"]

    def script(n: int) -> Script:
        return Script(producer=[AIMessage(content=f"```python\n{pool[i % len(pool)]}```\n") for i in range(n)])

    ep = ModelEndpoint(retry_for_s=0.5)

    def settings(n: int) -> Settings:
        return Settings(producer=ep, verifier=ep, runs_dir=tmp_path / "runs", budget=BudgetLimits(max_iterations=n),
                        loop=LoopSettings(stuck_patience=100))

    task = KernelTask(target="softmax", isolation="subprocess", options=EvalOptions(iters=4, warmup=1, warm=True))
    run = start_run(task, settings(3), models=script(3).factory(), open_sandbox=local_opener)
    refs = _ref_pids()
    resume_run(run, settings(6), models=script(3).factory(), open_sandbox=local_opener,
               budget_overrides={"max_iterations": 6})
    table = pd.read_csv(run / "artifacts/kernel/candidates.csv")
    assert list(table["iteration"]) == [1, 2, 3, 4, 5, 6]
    assert list(table["accepted"].astype(bool)) == [True, False, False, True, False, False]
    assert len(refs) == 2 and _ref_pids() == refs  # resumed in the same process: the same warm references


def test_two_gpus_get_one_warm_evaluator_each_and_two_evaluations_in_flight(tmp_path: Path,
                                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """The dispatch on a 2-GPU host, run here without GPUs: two evaluations asked for at once each take a server
    of their own, pinned to its GPU (each then answers that it sees no CUDA device: an error, never a pass)."""
    from concurrent.futures import ThreadPoolExecutor

    from tasks.kernel.runner import EvalFailed

    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1")

    def one(i: int) -> str:
        try:
            verdict = evaluate(tmp_path / str(i), "softmax", HONEST, warm=True, device="cuda")
        except EvalFailed as exc:
            return str(exc)
        assert not verdict.accepted
        return verdict.errors[0]

    with ThreadPoolExecutor(2) as pool:
        answers = list(pool.map(one, range(2)))
    servers = [s for group in POOL._free.values() for s in group]
    assert sorted(s.slot for s in servers) == ["0", "1"], answers
    assert all("CUDA" in a for a in answers), answers
