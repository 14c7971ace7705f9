"""Pieces every command group shares: config loading with budget flags, JSON output, starting a run."""
from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from rich.console import Console
from rich.markup import escape

from tasks.text import printable

console = Console(stderr=True)

ConfigOpt = Annotated[Path | None, typer.Option("--config", help="m3lab.toml to use (default ./m3lab.toml).")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable JSON output.")]
IslandsOpt = Annotated[int | None, typer.Option(
    "--islands", help="Producers in flight in one search (overrides [search] islands; 1 = the one-producer loop).")]


def fail(message: str, code: int = 2) -> NoReturn:
    """End the command with a clear message: `{"error": ...}` on stdout under --json, else one red line."""
    if json_requested():
        print_json({"error": message})
    else:
        # The message is data (paths, "[budget]" tables, the model's text): escaped, never read as markup.
        console.print(f"[red]error:[/red] {escape(printable(message))}", soft_wrap=True)
    raise typer.Exit(code)


def json_requested() -> bool:
    """The running command was given --json (its parameter is `json_out`, or `as_json`)."""
    try:  # typer >= 0.22 runs commands on its own copy of click (tests/orchestrator/test_cli_output.py checks)
        from typer._click.globals import get_current_context
    except ImportError:
        from click import get_current_context  # type: ignore[no-redef]  # the same function, older typer

    ctx = get_current_context(silent=True)
    return bool(ctx is not None and (ctx.params.get("json_out") or ctx.params.get("as_json")))


def print_json(data: Any) -> None:
    print(json.dumps(data, indent=2, default=str))


def load(config: Path | None, max_iterations: int | None = None, hours: float | None = None,
         tokens: int | None = None, islands: int | None = None) -> Any:
    """Settings from the config file and environment, with the CLI's budget (and `--islands`) flags on top."""
    from orchestrator.config import ConfigError, load_settings, with_flags

    try:
        return with_flags(load_settings(config), islands=islands, max_iterations=max_iterations, max_hours=hours,
                           max_tokens=tokens)
    except ConfigError as exc:
        fail(str(exc))


def launch(task: Any, settings: Any, resume: Path | None = None,
           budget_overrides: dict[str, Any] | None = None) -> Path:
    """Start (or resume) a run in the foreground; on every ending, tell the user where it is and what next."""
    from orchestrator.config import ConfigError
    from orchestrator.runner import DiskFull, RunInterrupted, RunNotResumable, resume_run, start_run
    from sandboxes.base import SandboxError
    from serving.client import EndpointUnavailable

    holder: dict[str, Path] = {}
    progress = Progress()

    def announce(run: Any) -> None:
        holder["path"] = run.path
        console.print(f"run [bold]{run.id}[/bold] started in {run.path}", soft_wrap=True)
        progress.follow(run.path / "events.jsonl")

    try:
        if resume is not None:
            holder["path"] = resume
            progress.follow(resume / "events.jsonl", from_end=True)
            path = resume_run(resume, settings, budget_overrides=budget_overrides)
        else:
            path = start_run(task, settings, on_created=announce)
    except (RunNotResumable, ConfigError) as exc:
        fail(str(exc))
    except SandboxError as exc:  # recorded in the run as failed (resumable once the sandbox works again)
        fail(f"sandbox failure: {exc}. The run {_id(holder)} failed; resume it with "
             f"`m3lab runs resume {_id(holder)}` once the sandbox works.")
    except DiskFull as exc:
        fail(str(exc), code=4)
    except EndpointUnavailable as exc:
        fail(f"{exc}\nThe run is paused; resume it with `m3lab runs resume {_id(holder)}`.", code=3)
    except (RunInterrupted, KeyboardInterrupt):
        fail(f"interrupted; the run is paused. Resume: `m3lab runs resume {_id(holder)}`", code=130)
    finally:
        progress.stop()
    meta = json.loads((path / "run.json").read_text())
    console.print(f"run {meta['id']}: [bold]{meta['status']}[/bold] ({meta.get('stop_reason', '')}); "
                  f"best score {meta.get('best_score', 0):.4g} at iteration {meta.get('best_iteration') or '-'}",
                  soft_wrap=True)
    console.print(f"inspect: m3lab runs show {meta['id']}", soft_wrap=True)
    console.print(f"report:  {path / 'report.md'}", soft_wrap=True)
    return path


class Progress:
    """Prints one line per notable event of a foreground run (the same events `m3lab runs logs` shows)."""

    def __init__(self) -> None:
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def follow(self, events: Path, from_end: bool = False) -> None:
        self._thread = threading.Thread(target=self._loop, args=(events, from_end), daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2)

    def _loop(self, events: Path, from_end: bool) -> None:
        from orchestrator.eventlog import file_end, follow
        from orchestrator.events import format_event

        for event in follow(events, file_end(events) if from_end else 0, self._stop.is_set):
            text = format_event(event, live=True)
            if text:
                console.print(text, highlight=False)


def _id(holder: dict[str, Path]) -> str:
    return holder["path"].name if "path" in holder else "<id from `m3lab runs list`>"
