"""Starting, resuming and driving runs: the one boundary where errors are recorded in the run."""
from __future__ import annotations

import dataclasses
import os
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from orchestrator import (
    events,
    store,  # [issue 15] checkpointer selection, run index, leases
)
from orchestrator.config import ConfigError, Settings, settings_from_json
from orchestrator.control import clear_stop
from orchestrator.graph import build_graph
from orchestrator.rundir import RunDir, create_run_dir, disk_full, new_run_id
from orchestrator.runtime import ModelFactory, Runtime, endpoint_models
from orchestrator.workspace import LegacyRun, init_repo, require_git_dir, share_tree
from sandboxes.base import Sandbox, SandboxSpec
from serving.client import EndpointUnavailable
from tasks.base import Task
from tasks.registry import build_task


class RunNotResumable(RuntimeError):
    """The run is live in another process, or already succeeded."""


class DiskFull(RuntimeError):
    """The disk (or quota) under the runs folder is full; the run is paused and resumable once there is room."""


class RunInterrupted(RuntimeError):
    """The process was asked to terminate (SIGTERM/SIGINT); the run is paused and resumable."""


def recursion_limit(settings: Settings) -> int:
    """Graph steps one invocation may take: every turn of every iteration, plus plan/verify/decide/finish."""
    return settings.budget.max_iterations * (settings.loop.max_turns + 3) + 16


def startup_problems(settings: Settings, spec: SandboxSpec | None) -> list[str]:
    """What would stop a run from starting, found before anything is created or any model is called: a runs
    folder that is a file, a sandbox `spec` (the producer's; None with a test opener) that cannot start."""
    from sandboxes import startup_problems as sandbox_problems

    problems = []
    folder = Path(settings.runs_dir)
    existing = next((p for p in (folder, *folder.absolute().parents) if p.exists()), None)
    if existing is not None and not existing.is_dir():
        problems.append(f"runs_dir: {existing} is a file, not a folder")
    elif existing is not None and not os.access(existing, os.W_OK | os.X_OK):
        problems.append(f"runs_dir: {existing} is not writable")
    if spec is not None:
        problems += [f"sandbox: {p}" for p in sandbox_problems(spec, settings.sandbox_backend)]
    return problems


def check_startable(settings: Settings, spec: SandboxSpec | None) -> None:
    """Raise `ConfigError` listing every `startup_problems` entry."""
    problems = startup_problems(settings, spec)
    if problems:
        raise ConfigError("cannot start the run: " + "; ".join(problems), problems)


def create_run(task: Task, settings: Settings) -> RunDir:
    """A new run folder, complete with workspace, repository, event log and run.json, or none at all."""
    run_id = new_run_id(task.kind)

    def fill(run: RunDir) -> None:
        task.prepare_workspace(run.workspace)
        share_tree(run.workspace)
        init_repo(run.git_dir, run.workspace)
        run.events.add(events.run_started(task.title()))
        run.update_meta(id=run_id, task={"kind": task.kind, "params": task.params(), "title": task.title()},
                        config=settings.to_json(), status="created", stop_reason="", iteration=0, best_score=0.0,
                        budget={"limits": dataclasses.asdict(settings.budget),
                                "used": {"iterations": 0, "tokens": 0, "elapsed_s": 0.0}},
                        best_iteration=0, created_at=time.time(), pid=None)

    try:
        run = create_run_dir(settings.runs_dir, run_id, fill)
    except Exception as exc:
        if disk_full(exc):
            raise DiskFull(f"disk full under {settings.runs_dir}: no run was created ({exc})") from exc
        raise
    if settings.store.enabled:  # [issue 15] the run index sees the run from its creation on
        store.mirror(run, settings.store)
        run.update_meta()
    return run


def start_run(task: Task, settings: Settings, models: ModelFactory = endpoint_models,
              open_sandbox: Callable[[SandboxSpec, str], Sandbox] | None = None,
              on_created: Callable[[RunDir], None] | None = None) -> Path:
    """Create runs/<id>/ and drive the loop in the foreground to its end; returns the run directory. Nothing
    is created when the run could not start (`check_startable`)."""
    producer_spec = dataclasses.replace(task.sandbox_spec(Path(settings.runs_dir)), workspace=None)
    check_startable(settings, producer_spec if open_sandbox is None else None)
    run = create_run(task, settings)
    if on_created:
        on_created(run)
    drive(Runtime(run, task, settings, models, open_sandbox), resume=False)
    return run.path


def load_runtime(run_path: Path, settings: Settings, models: ModelFactory = endpoint_models,
                 open_sandbox: Callable[[SandboxSpec, str], Sandbox] | None = None) -> Runtime:
    """The runtime of an existing run: its own budget/loop snapshot, the task rebuilt from run.json."""
    run = RunDir(run_path)
    meta = run.read_meta()
    kept_in = meta["config"].get("store", {}).get("kind", "sqlite")  # [issue 15]
    if kept_in != settings.store.describe()["kind"]:
        raise RunNotResumable(f"run {run.id} keeps its checkpoints in {kept_in}: configure the same store "
                              "(store.url in m3lab.toml or M3LAB_STORE_URL) to continue it")
    task = build_task(meta["task"]["kind"], meta["task"]["params"])
    return Runtime(run, task, settings_from_json(meta["config"], settings), models, open_sandbox)


def claim_for_resume(run: RunDir, budget_overrides: dict[str, Any] | None = None,
                     store_settings: store.StoreSettings | None = None, mark_running: bool = True) -> str:
    """Under the run's lock: refuse a live or succeeded run without changing anything; else write the budget
    overrides and (`mark_running`) mark the run as running in this process (a second resume then sees it live).
    With a store, the lease says whether the run is live (its owner may be on another node). Returns the status
    the run had."""
    with run.locked():
        meta = run.read_meta()
        status = store.run_status(run, store_settings or store.StoreSettings(), meta)
        if status == "running":
            raise RunNotResumable(f"run {run.id} is already running (pid {meta.get('pid')}); nothing was changed")
        if status == "succeeded":
            raise RunNotResumable(f"run {run.id} already succeeded; start a new run to go further")
        try:
            require_git_dir(run.git_dir)
        except LegacyRun as exc:
            raise RunNotResumable(str(exc)) from None
        fields: dict[str, Any] = {"status": "running", "pid": os.getpid()} if mark_running else {}
        if budget_overrides:
            config = dict(meta["config"])
            config["budget"] = {**config["budget"], **budget_overrides}
            fields["config"] = config
        run.update_meta(**fields)
        clear_stop(run.path)  # a user resuming a stopped run wants it to go on
        return status


def resume_run(run_path: Path, settings: Settings, models: ModelFactory = endpoint_models,
               open_sandbox: Callable[[SandboxSpec, str], Sandbox] | None = None,
               budget_overrides: dict[str, Any] | None = None) -> Path:
    """Continue a paused (crashed, interrupted, endpoint down, disk full) or stopped run from its last
    checkpoint. A refused resume (live or succeeded run) changes nothing."""
    run = RunDir(run_path)
    previous = claim_for_resume(run, budget_overrides, settings.store)
    try:
        rt = load_runtime(run_path, settings, models, open_sandbox)
    except BaseException:
        run.update_meta(status=previous, pid=None)
        raise
    try:
        drive(rt, resume=True)
    except RunNotResumable:  # [issue 15] another worker took the lease meanwhile: put the status back
        run.update_meta(status=previous, pid=None)
        raise
    return rt.run.path


def _raise_interrupt(signum: int, frame: Any) -> None:
    raise RunInterrupted(f"signal {signum}")


def drive(rt: Runtime, resume: bool, lease: store.Lease | None = None) -> None:
    """Invoke the graph until it ends; record why it stopped if it did not end by itself."""
    run = rt.run
    try:
        run.reserve_space()
        if lease is None:  # [issue 15] with a store, one owner per run: the lease (a cluster worker brings its own)
            try:
                lease = store.claim(run, rt.settings.store)
            except store.LeaseHeld as exc:
                run.release_space()
                rt.close()
                raise RunNotResumable(str(exc)) from None
        run.update_meta(status="running", pid=os.getpid())
    except OSError as exc:
        if not disk_full(exc):
            raise
        rt.close()
        _pause(run, _disk_full_message(run, exc))
        raise DiskFull(_disk_full_message(run, exc)) from exc
    if resume:
        run.events.add(events.run_resumed(run.read_meta().get("iteration"), rt.task.title()))
    in_main = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _raise_interrupt) if in_main else None
    checkpoints = store.open_checkpointer(run.path, rt.settings.store)  # [issue 15] SQLite file or PostgreSQL
    try:
        graph = build_graph(rt, checkpoints.__enter__())
        config = {"configurable": {"thread_id": run.id}, "recursion_limit": recursion_limit(rt.settings)}
        snapshot = graph.get_state(config)
        if snapshot.next:  # interrupted mid-run: continue from the last checkpoint
            graph.invoke(None, config, durability="sync")
        else:  # new run, or a finished one resumed (plan re-enters and goes straight to produce)
            graph.invoke({"status": "running"}, config, durability="sync")
    except EndpointUnavailable as exc:
        _pause(run, f"model endpoint unavailable: {exc}. Resume with `m3lab runs resume {run.id}`.")
        raise
    except (RunInterrupted, KeyboardInterrupt) as exc:
        _pause(run, f"interrupted ({exc or 'Ctrl-C'}); resume with `m3lab runs resume {run.id}`")
        raise
    except store.LeaseLost:  # [issue 15] another worker owns the run now: write nothing more
        raise
    except Exception as exc:
        if disk_full(exc):
            run.release_space()
            _pause(run, _disk_full_message(run, exc))
            raise DiskFull(_disk_full_message(run, exc)) from exc
        run.events.add(events.error(run.read_meta().get("iteration"), repr(exc)))
        run.update_meta(status="failed", stop_reason=f"error: {exc!r}"[:500], pid=None)
        raise
    else:
        run.update_meta(pid=None)
    finally:
        if in_main:
            signal.signal(signal.SIGTERM, previous)
        checkpoints.__exit__(None, None, None)
        store.release(run, lease)  # [issue 15]
        rt.close()
        run.release_space()


def _disk_full_message(run: RunDir, exc: BaseException) -> str:
    detail = " ".join(str(exc).split())[:300]  # one line, whatever tool raised it (git's errors span lines)
    return (f"disk full under {run.path.parent} ({detail}); the run is paused: free some space, then resume with "
            f"`m3lab runs resume {run.id}`")


def _pause(run: RunDir, message: str) -> None:
    try:
        run.events.add(events.status(run.read_meta().get("iteration"), "paused", message))
        run.update_meta(status="paused", stop_reason=message, pid=None)
    except OSError:  # the disk is still full: the dead pid in run.json already reads as paused
        pass
