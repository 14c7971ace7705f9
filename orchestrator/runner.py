"""Starting, resuming and driving runs: the one boundary where errors are recorded in the run."""
from __future__ import annotations

import dataclasses
import os
import signal
import threading
import time
from pathlib import Path
from typing import Any, Callable

from orchestrator.config import Settings, settings_from_json
from orchestrator.control import clear_stop
from orchestrator.graph import build_graph
from orchestrator.rundir import RunDir, new_run_id
from orchestrator.runtime import ModelFactory, Runtime, endpoint_models
from orchestrator import store  # [issue 15] checkpointer selection, run index, leases
from orchestrator.workspace import init_repo, share_tree
from sandboxes.base import Sandbox, SandboxSpec
from serving.client import EndpointUnavailable
from tasks.base import Task
from tasks.registry import build_task


class RunNotResumable(RuntimeError):
    """The run is live in another process, or already succeeded."""


class RunInterrupted(RuntimeError):
    """The process was asked to terminate (SIGTERM/SIGINT); the run is paused and resumable."""


def recursion_limit(settings: Settings) -> int:
    """Graph steps one invocation may take: every turn of every iteration, plus plan/verify/decide/finish."""
    return settings.budget.max_iterations * (settings.loop.max_turns + 3) + 16


def create_run(task: Task, settings: Settings) -> RunDir:
    run = RunDir(settings.runs_dir / new_run_id(task.kind))
    run.create()
    store.mirror(run, settings.store)  # [issue 15] the run index sees the run from its creation on
    task.prepare_workspace(run.workspace)
    share_tree(run.workspace)
    init_repo(run.workspace)
    run.update_meta(id=run.id, task={"kind": task.kind, "params": task.params(), "title": task.title()},
                    config=settings.to_json(), status="created", stop_reason="", iteration=0, best_score=0.0,
                    budget={"limits": dataclasses.asdict(settings.budget), "used": {"iterations": 0, "tokens": 0,
                                                                                   "elapsed_s": 0.0}},
                    best_iteration=0, created_at=time.time(), pid=None)
    run.events.append("run_started", None, key="run_started", task=task.title())
    return run


def start_run(task: Task, settings: Settings, models: ModelFactory = endpoint_models,
              open_sandbox: Callable[[SandboxSpec, str], Sandbox] | None = None,
              on_created: Callable[[RunDir], None] | None = None) -> Path:
    """Create runs/<id>/ and drive the loop in the foreground to its end; returns the run directory."""
    run = create_run(task, settings)
    if on_created:
        on_created(run)
    drive(Runtime(run, task, settings, models, open_sandbox), resume=False)
    return run.path


def load_runtime(run_path: Path, settings: Settings, models: ModelFactory = endpoint_models,
                 open_sandbox: Callable[[SandboxSpec, str], Sandbox] | None = None,
                 budget_overrides: dict[str, Any] | None = None) -> Runtime:
    run = RunDir(run_path)
    meta = run.read_meta()
    kept_in = meta["config"].get("store", {}).get("kind", "sqlite")  # [issue 15]
    if kept_in != settings.store.describe()["kind"]:
        raise RunNotResumable(f"run {run.id} keeps its checkpoints in {kept_in}: configure the same store "
                              "(store.url in m3lab.toml or M3LAB_STORE_URL) to continue it")
    merged = settings_from_json(meta["config"], settings)
    if budget_overrides:
        merged = dataclasses.replace(merged, budget=dataclasses.replace(merged.budget, **budget_overrides))
        run.update_meta(config=merged.to_json())
    task = build_task(meta["task"]["kind"], meta["task"]["params"])
    return Runtime(run, task, merged, models, open_sandbox)


def resume_run(run_path: Path, settings: Settings, models: ModelFactory = endpoint_models,
               open_sandbox: Callable[[SandboxSpec, str], Sandbox] | None = None,
               budget_overrides: dict[str, Any] | None = None) -> Path:
    """Continue a paused (crashed, interrupted, endpoint down) or stopped run from its last checkpoint."""
    rt = load_runtime(run_path, settings, models, open_sandbox, budget_overrides)
    status = store.run_status(rt.run, rt.settings.store)  # [issue 15] the lease decides when a store is configured
    if status == "running":
        raise RunNotResumable(f"run {rt.run.id} is already running (pid {rt.run.read_meta().get('pid')})")
    if status == "succeeded":
        raise RunNotResumable(f"run {rt.run.id} already succeeded; start a new run to go further")
    clear_stop(rt.run.path)
    drive(rt, resume=True)
    return rt.run.path


def _raise_interrupt(signum: int, frame: Any) -> None:
    raise RunInterrupted(f"signal {signum}")


def drive(rt: Runtime, resume: bool, lease: "store.Lease | None" = None) -> None:
    """Invoke the graph until it ends; record why it stopped if it did not end by itself."""
    run = rt.run
    if lease is None:  # [issue 15] with a store, one owner per run: the lease (a cluster worker brings its own)
        try:
            lease = store.claim(run, rt.settings.store)
        except store.LeaseHeld as exc:
            rt.close()
            raise RunNotResumable(str(exc)) from None
    run.update_meta(status="running", pid=os.getpid())
    if resume:
        run.events.append("run_resumed", run.read_meta().get("iteration"), task=rt.task.title())
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
        run.events.append("error", run.read_meta().get("iteration"), message=repr(exc)[:2000])
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


def _pause(run: RunDir, message: str) -> None:
    run.events.append("status", run.read_meta().get("iteration"), status="paused", reason=message)
    run.update_meta(status="paused", stop_reason=message, pid=None)
