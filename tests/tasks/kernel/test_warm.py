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


# --- pre-started candidate workers (options.prestart, on by default with warm) ---------------------------------

# Says which process it runs in and whether it was pre-started (its command line); honest otherwise.
WHOAMI = '''
import os
import torch

with open("/proc/self/cmdline", "rb") as fh:
    print("whoami:", os.getpid(), "prestarted" if b"--prestart" in fh.read() else "fresh", flush=True)
'''
SOFTMAX = '''

class ModelNew(torch.nn.Module):
    def __init__(self, *args):
        super().__init__()

    def forward(self, x):
        return torch.softmax(x, dim=1)
'''
# Leaves marks everywhere a later candidate in the same process could look (as an attacker hoping to be reused).
MARKER = WHOAMI + '''
import builtins, sys
builtins.M3LAB_MARK = os.getpid()
os.environ["M3LAB_MARK"] = str(os.getpid())
torch.M3LAB_MARK = os.getpid()
torch.softmax = lambda x, dim=None, **kw: torch.zeros_like(x)  # poisons every later softmax in this process
sys.modules["m3lab_marker"] = sys
''' + SOFTMAX.replace("torch.softmax(x, dim=1)", "torch.nn.functional.softmax(x, dim=1)")
# Looks for those marks.
SPY = WHOAMI + '''
import builtins, sys
seen = [name for name, hit in zip(["builtins", "env", "torch", "module"], [hasattr(builtins, "M3LAB_MARK"),
        "M3LAB_MARK" in os.environ, hasattr(torch, "M3LAB_MARK"), "m3lab_marker" in sys.modules]) if hit]
print("seen:", seen, flush=True)
''' + SOFTMAX


def _write(folder: Path, name: str, source: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    folder.chmod(0o755)
    path = folder / f"{name}.py"
    path.write_text(source)
    path.chmod(0o644)
    return path


def _log(folder: Path) -> str:
    return next(folder.glob("eval-*/logs/cand.log")).read_text()


def _whoami(folder: Path) -> tuple[int, str]:
    line = next(ln for ln in _log(folder).splitlines() if ln.startswith("whoami:"))
    return int(line.split()[1]), line.split()[2]


def _world_tmp() -> Path:
    path = Path(tempfile.mkdtemp(prefix="m3lab-prestart-test-"))  # traversable by nobody (candidates may drop)
    path.chmod(0o755)
    return path


def test_a_prestarted_worker_is_fresh_for_every_candidate() -> None:
    """The second candidate is handed a pre-started process, not the first one's: nothing the first left behind
    (globals, environment, a patched torch, modules) is visible to it."""
    tmp = _world_tmp()
    marker = _write(tmp / "src", "marker", MARKER)
    spy = _write(tmp / "src", "spy", SPY)
    first = evaluate(tmp / "1", "softmax", marker, warm=True, static=False)
    second = evaluate(tmp / "2", "softmax", spy, warm=True, static=False)
    assert first.accepted and second.accepted, (first.summary(), second.summary())
    (pid1, how1), (pid2, how2) = _whoami(tmp / "1"), _whoami(tmp / "2")
    assert how1 == "fresh" and how2 == "prestarted" and pid1 != pid2
    assert "seen: []" in _log(tmp / "2"), _log(tmp / "2")
    third = evaluate(tmp / "3", "softmax", spy, warm=True, static=False)
    assert third.accepted and _whoami(tmp / "3")[1] == "prestarted" and _whoami(tmp / "3")[0] not in (pid1, pid2)
    off = evaluate(tmp / "4", "softmax", spy, warm=True, static=False, prestart=False)
    assert off.accepted and _whoami(tmp / "4")[1] == "prestarted"  # the one started by the third evaluation
    fresh = evaluate(tmp / "5", "softmax", spy, warm=True, static=False)
    assert fresh.accepted and _whoami(tmp / "5")[1] == "fresh"  # none was started by the fourth (prestart off)
    shutil.rmtree(tmp)


def test_prestart_survives_a_candidate_that_crashes_or_hangs() -> None:
    tmp = _world_tmp()
    honest = _write(tmp / "src", "honest", WHOAMI + SOFTMAX)
    crash = _write(tmp / "src", "crash", WHOAMI + SOFTMAX.replace(
        "return torch.softmax(x, dim=1)", "import signal\n        os.kill(os.getpid(), signal.SIGSEGV)"))
    hang = _write(tmp / "src", "hang", WHOAMI + SOFTMAX.replace(
        "return torch.softmax(x, dim=1)", "import time\n        time.sleep(600)"))
    assert evaluate(tmp / "0", "softmax", honest, warm=True, static=False).accepted
    crashed = evaluate(tmp / "1", "softmax", crash, warm=True, static=False)
    assert not crashed.accepted and "SIGSEGV" in crashed.errors[0], crashed.summary()
    hung = evaluate(tmp / "2", "softmax", hang, warm=True, static=False, call_timeout_s=2)
    assert not hung.accepted and "timed out after 2 s in forward" in hung.errors[0], hung.summary()
    after = evaluate(tmp / "3", "softmax", honest, warm=True, static=False)
    assert after.accepted, after.summary()
    assert [_whoami(tmp / str(i))[1] for i in range(4)] == ["fresh", "prestarted", "prestarted", "prestarted"]
    assert len({_whoami(tmp / str(i))[0] for i in range(4)}) == 4
    shutil.rmtree(tmp)


# A candidate as an attacker writes it against the process waiting for the NEXT candidate (the same uid nobody),
# started while this candidate is checked: stop it (hoping the next evaluation hangs) or kill it; read its memory.
PRESTART_ATTACK = WHOAMI + '''
import signal
from pathlib import Path

TRIED = []


def attack():
    for entry in Path("/proc").iterdir():
        try:
            cmd = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if b"--prestart" in cmd and entry.name.isdigit() and int(entry.name) != os.getpid():
            try:
                (entry / "mem").open("rb").read(1)
                TRIED.append("read mem")
            except OSError as exc:
                TRIED.append("mem " + type(exc).__name__)
            try:
                os.kill(int(entry.name), signal.SIGNAL)
                TRIED.append("sent SIGNAL to " + entry.name)
            except OSError as exc:
                TRIED.append(type(exc).__name__)
    print("attack:", TRIED, flush=True)
''' + SOFTMAX.replace("return torch.softmax", "if not TRIED:\n            attack()\n        return torch.softmax")


@pytest.mark.parametrize("sig", ["SIGSTOP", "SIGKILL"])
def test_a_candidate_that_stops_or_kills_the_prestarted_worker_spoils_nothing(sig: str) -> None:
    """Run as root with a world-readable interpreter, both run as nobody (the candidate can signal the waiting
    worker, not read its memory); otherwise both run at the evaluator's uid (it can do both: the sandbox isolates)."""
    tmp = _world_tmp()
    honest = _write(tmp / "src", "honest", WHOAMI + SOFTMAX)
    attack = _write(tmp / "src", "attack", PRESTART_ATTACK.replace("SIGNAL", sig))
    assert evaluate(tmp / "0", "softmax", honest, warm=True, static=False).accepted
    hit = evaluate(tmp / "1", "softmax", attack, warm=True, static=False)
    log = _log(tmp / "1")
    assert f"sent {sig}" in log, log
    if can_drop_privileges():
        assert "read mem" not in log, log  # non-dumpable before its imports: the process, not its memory
    assert hit.accepted, hit.summary()
    after = evaluate(tmp / "2", "softmax", honest, warm=True, static=False)
    assert after.accepted, after.summary()
    # A killed one is dropped and a fresh worker takes the candidate; a stopped one is resumed (nothing of it
    # could be touched) and serves it.
    assert _whoami(tmp / "2")[1] == ("fresh" if sig == "SIGKILL" else "prestarted")
    assert _whoami(tmp / "2")[0] != _whoami(tmp / "1")[0]
    again = evaluate(tmp / "3", "softmax", honest, warm=True, static=False)
    assert again.accepted and _whoami(tmp / "3")[1] == "prestarted"
    shutil.rmtree(tmp)


@pytest.mark.slow
def test_the_warm_loop_with_prestarted_workers_rejects_every_planted_cheat(tmp_path: Path) -> None:
    """The whole battery through warm evaluators, one after another, so every cheat after the first of its target
    runs in a pre-started worker; each is rejected as in test_cheats (dynamic layer alone where static stops it)."""
    from tasks.kernel.targets.battery import CHEAT_CASES, dynamic_ok

    missed = []
    for case in CHEAT_CASES:
        cand = TARGETS_DIR / "cheats" / case.file
        full = evaluate(tmp_path / f"full_{case.file}", case.target, cand, timing=case.timed, warm=True)
        if full.accepted or not (full.cheats or full.failures or full.errors):
            missed.append(f"{case.file}: accepted {full.summary()}")
        if full.stage == "static" or case.dynamic != "reject":
            dyn = evaluate(tmp_path / f"dyn_{case.file}", case.target, cand, timing=case.timed, static=False, warm=True)
            ok, why = dynamic_ok(case, dyn)
            if not ok:
                missed.append(f"{case.file} (dynamic layer alone): {why}")
    assert not missed, missed


# Watches the waiting pre-started worker(s) from inside every call it gets: their process state each time.
WATCHER = WHOAMI + '''
from pathlib import Path


def states():
    found = []
    for entry in Path("/proc").iterdir():
        try:
            cmd = (entry / "cmdline").read_bytes()
            state, ppid = (entry / "stat").read_text().rsplit(")", 1)[1].split()[:2]
        except (OSError, IndexError, ValueError):
            continue
        if b"--prestart" in cmd and int(ppid) == os.getppid():  # started by our evaluator
            found.append(state)
    print("states:", "".join(found), flush=True)
''' + SOFTMAX.replace("return torch.softmax", "states()\n        return torch.softmax")


def test_waiting_workers_are_stopped_during_the_timed_calls_only() -> None:
    tmp = _world_tmp()
    watcher = _write(tmp / "src", "watcher", WATCHER)
    first = evaluate(tmp / "1", "softmax", watcher, warm=True, static=False, warmup=1, iters=3)
    assert first.accepted, first.summary()
    seen = [ln.split()[1] if len(ln.split()) > 1 else "" for ln in _log(tmp / "1").splitlines()
            if ln.startswith("states:")]
    # correctness calls come first (the waiting worker runs or sleeps), then the timed calls (it is stopped)
    checked, timed = seen[:first.checked_calls], seen[first.checked_calls:]
    assert timed and all(s and set(s) <= {"T", "t"} for s in timed), seen
    assert checked and not any("T" in s for s in checked), seen
    after = evaluate(tmp / "2", "softmax", watcher, warm=True, static=False, warmup=1, iters=3)
    assert after.accepted and _whoami(tmp / "2")[1] == "prestarted"  # resumed, and it served the next candidate
    shutil.rmtree(tmp)
