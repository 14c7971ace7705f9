"""Pieces every command group shares: config loading with budget flags, JSON output, starting a run."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, NoReturn, Optional

import typer
from rich.console import Console

console = Console(stderr=True)

ConfigOpt = Annotated[Optional[Path], typer.Option("--config", help="m3lab.toml to use (default ./m3lab.toml).")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable JSON output.")]


def fail(message: str, code: int = 2) -> NoReturn:
    console.print(f"[red]error:[/red] {message}")
    raise typer.Exit(code)


def print_json(data: Any) -> None:
    print(json.dumps(data, indent=2, default=str))


def load(config: Optional[Path], max_iterations: Optional[int] = None, hours: Optional[float] = None,
         tokens: Optional[int] = None) -> Any:
    """Settings from the config file and environment, with the CLI's budget flags on top."""
    from orchestrator.config import ConfigError, load_settings, with_budget

    try:
        return with_budget(load_settings(config), max_iterations=max_iterations, max_hours=hours,
                           max_tokens=tokens)
    except ConfigError as exc:
        fail(str(exc))


def launch(task: Any, settings: Any, resume: Path | None = None,
           budget_overrides: dict[str, Any] | None = None) -> Path:
    """Start (or resume) a run in the foreground; on every ending, tell the user where it is and what next."""
    from orchestrator.runner import RunInterrupted, resume_run, start_run
    from serving.client import EndpointUnavailable

    holder: dict[str, Path] = {}

    def announce(run: Any) -> None:
        holder["path"] = run.path
        console.print(f"run [bold]{run.id}[/bold] started in {run.path}")

    try:
        if resume is not None:
            holder["path"] = resume
            path = resume_run(resume, settings, budget_overrides=budget_overrides)
        else:
            path = start_run(task, settings, on_created=announce)
    except EndpointUnavailable as exc:
        fail(f"{exc}\nThe run is paused; resume it with `m3lab runs resume {_id(holder)}`.", code=3)
    except (RunInterrupted, KeyboardInterrupt):
        fail(f"interrupted; the run is paused. Resume: `m3lab runs resume {_id(holder)}`", code=130)
    meta = json.loads((path / "run.json").read_text())
    console.print(f"run {meta['id']}: [bold]{meta['status']}[/bold] ({meta.get('stop_reason', '')}); "
                  f"best score {meta.get('best_score', 0):.4g} at iteration {meta.get('best_iteration') or '-'}")
    console.print(f"inspect: m3lab runs show {meta['id']} | m3lab runs logs {meta['id']} | "
                  f"m3lab runs diff {meta['id']} 1 | report: {path / 'report.md'}")
    return path


def _id(holder: dict[str, Path]) -> str:
    return holder["path"].name if "path" in holder else "<id from `m3lab runs list`>"
