"""`m3lab run code ...` and `m3lab runs list|show|logs|diff|resume|stop|steer`."""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Optional

import typer
from rich.console import Console
from rich.table import Table

from orchestrator.cli.common import ConfigOpt, JsonOpt, fail, launch, load, print_json
from tasks.text import shorten

console = Console()
run_app = typer.Typer(help="Start a run of a task kind.", no_args_is_help=True)
runs_app = typer.Typer(help="List, inspect, steer, stop and resume runs.", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    app.add_typer(run_app, name="run")
    app.add_typer(runs_app, name="runs")


@run_app.command("code")
def run_code(
    workspace: Path = typer.Argument(..., help="Folder with the starting files (copied into the run)."),
    check: str = typer.Option(..., "--check", help="Command that must exit 0, e.g. 'pytest -q'."),
    goal: str = typer.Option("", help="What to achieve, in words."),
    main: Optional[str] = typer.Option(None, help="Main file a bare code block from the model replaces."),
    protect: list[str] = typer.Option([], help="Paths the producer must not edit (restored before the check)."),
    image: str = typer.Option("m3lab/default", help="Sandbox image."),
    max_iterations: Optional[int] = typer.Option(None, help="Budget: producer-verifier rounds."),
    hours: Optional[float] = typer.Option(None, help="Budget: active wall-clock hours."),
    tokens: Optional[int] = typer.Option(None, help="Budget: total tokens of all model calls."),
    config: ConfigOpt = None,
) -> None:
    """Run the generic code task: make WORKSPACE's check command pass, verified in a fresh sandbox."""
    from tasks.code.task import CodeTask, TaskError

    try:
        task = CodeTask(source=str(workspace), check_command=check, goal=goal, main=main, protect=protect,
                        image=image)
    except TaskError as exc:
        fail(str(exc))
    launch(task, load(config, max_iterations, hours, tokens))


def _row(meta: dict[str, Any]) -> dict[str, Any]:
    from orchestrator.rundir import effective_status

    used = meta.get("budget", {}).get("used", {})
    return {"id": meta["id"], "kind": meta["task"]["kind"], "status": effective_status(meta),
            "stop_reason": meta.get("stop_reason", ""), "iterations": meta.get("iteration", 0),
            "best_score": meta.get("best_score", 0.0), "best_iteration": meta.get("best_iteration", 0),
            "tokens": used.get("tokens", 0), "elapsed_s": used.get("elapsed_s", 0.0),
            "title": meta["task"].get("title", ""), "created_at": meta.get("created_at"),
            "updated_at": meta.get("updated_at")}


@runs_app.command("list")
def runs_list(config: ConfigOpt = None, json_out: JsonOpt = False) -> None:
    """Every run, newest first."""
    from orchestrator.rundir import list_runs

    rows = [_row(r.read_meta()) for r in list_runs(load(config).runs_dir)]
    if json_out:
        return print_json(rows)
    console.print(runs_table(rows, console.width))


LIST_COLUMNS = {"id": lambda r: r["id"], "status": lambda r: r["status"], "iter": lambda r: str(r["iterations"]),
                "best": lambda r: f"{r['best_score']:.4g}", "kind": lambda r: r["kind"],
                "tokens": lambda r: str(r["tokens"]), "title": lambda r: r["title"]}
DROP_ORDER = ("tokens", "kind", "best", "title", "iter")
"""Columns given up, in this order, when the terminal is too narrow: the id (what a user copies) never is."""
TITLE_MIN = 16


def runs_table(rows: list[dict[str, Any]], width: int) -> Table:
    """One line per run; ids are never cut or wrapped: the title shrinks first, then columns are dropped."""
    cells = {name: [get(r) for r in rows] for name, get in LIST_COLUMNS.items()}
    need = {name: max([len(name), *map(len, values)]) + 3 for name, values in cells.items()}  # + padding, rule
    need["title"] = min(need["title"], TITLE_MIN + 3)
    shown = list(LIST_COLUMNS)
    for name in DROP_ORDER:
        if sum(need[c] for c in shown) + 1 <= width:
            break
        shown.remove(name)
    table = Table(*shown)
    for column in table.columns:
        column.no_wrap = True
        if column.header == "title":  # whatever the other columns leave
            column.overflow = "ellipsis"
            column.max_width = max(TITLE_MIN, width - 1 - sum(need[c] for c in shown if c != "title") - 3)
        else:
            column.min_width = need[str(column.header)] - 3
    for i in range(len(rows)):
        table.add_row(*(cells[name][i] for name in shown))
    return table


@runs_app.command("show")
def runs_show(run_id: str, config: ConfigOpt = None, json_out: JsonOpt = False) -> None:
    """Status, iterations, best score / speed-up and budget use of one run."""
    from orchestrator.report import iteration_records, model_behaviour, model_call_counts

    run = _find(run_id, config)
    meta = run.read_meta()
    row = _row(meta)
    row["budget"] = meta.get("budget", {})
    row["model"] = model_call_counts(run)
    row["iterations_detail"] = [
        {"iteration": r["iteration"], "verdict": r["verdict"]["verdict"], "score": r["verdict"]["score"],
         "decision": r["decision"]["action"], "findings": r["verdict"]["findings"][:3]}
        for r in iteration_records(run)]
    if json_out:
        return print_json(row)
    limits, used = row["budget"].get("limits", {}), row["budget"].get("used", {})
    console.print(f"[bold]{row['id']}[/bold]  {row['title']}")
    console.print(f"status: [bold]{row['status']}[/bold] {row['stop_reason']}")
    label = "best speed-up" if row["kind"] == "kernel" else "best score"
    console.print(f"{label}: {row['best_score']:.4g} (iteration {row['best_iteration'] or '-'})")
    console.print(f"budget: iterations {used.get('iterations', 0)}/{limits.get('max_iterations')}, "
                  f"tokens {used.get('tokens', 0)}/{limits.get('max_tokens')}, "
                  f"time {used.get('elapsed_s', 0) / 3600:.2f}/{limits.get('max_hours')} h")
    console.print(f"model: {model_behaviour(row['model'])}")
    table = Table("iter", "verdict", "score", "decision", "first finding")
    for it in row["iterations_detail"]:
        first = shorten(it["findings"][0], 160) if it["findings"] else ""  # wraps in its cell
        table.add_row(str(it["iteration"]), it["verdict"], f"{it['score']:.4g}", it["decision"], first)
    console.print(table)


def _format_event(e: dict[str, Any]) -> str:
    stamp = time.strftime("%H:%M:%S", time.localtime(e.get("ts", 0)))
    skip = {"seq", "ts", "kind", "iteration", "key"}
    fields = " ".join(f"{k}={json.dumps(v)[:160]}" for k, v in e.items() if k not in skip)
    return f"{stamp} #{e.get('seq')} [it {e.get('iteration')}] {e.get('kind')}: {fields}"


@runs_app.command("logs")
def runs_logs(run_id: str, follow: bool = typer.Option(False, "--follow", "-f", help="Keep printing new events."),
              tail: int = typer.Option(0, help="Only the last N events (0 = all)."),
              config: ConfigOpt = None, json_out: JsonOpt = False) -> None:
    """The run's events (model calls, tool calls, execs, verdicts, decisions); --json: one array, or JSON Lines
    with --follow."""
    run = _find(run_id, config)
    path = run.path / "events.jsonl"
    with open(path, encoding="utf-8") as f:
        lines = f.readlines()
        if json_out and not follow:  # one JSON document; --follow streams JSON Lines instead
            whole = [line for line in (lines[-tail:] if tail else lines) if line.endswith("\n")]
            return print_json([json.loads(line) for line in whole])
        for line in lines[-tail:] if tail else lines:
            _emit(line, json_out)
        while follow:
            line = f.readline()
            if line.endswith("\n"):
                _emit(line, json_out)
                continue
            from orchestrator.rundir import effective_status

            if effective_status(run.read_meta()) != "running":
                break
            time.sleep(0.5)


def _emit(line: str, json_out: bool) -> None:
    if not line.strip():
        return
    if json_out:
        print(line.rstrip(), flush=True)
        return
    try:
        print(_format_event(json.loads(line)), flush=True)
    except json.JSONDecodeError:
        pass


@runs_app.command("diff")
def runs_diff(run_id: str, iteration: int, config: ConfigOpt = None) -> None:
    """The producer's change in one iteration (from the workspace git history) and its verdict."""
    from orchestrator.workspace import diff_for_iteration

    run = _find(run_id, config)
    try:
        print(diff_for_iteration(run.workspace, iteration))
    except KeyError as exc:
        fail(str(exc.args[0]) if exc.args else str(exc))
    record = run.iteration_path(iteration)
    if record.exists():
        verdict = json.loads(record.read_text())["verdict"]
        print(f"\nverdict: {verdict['verdict']} (score {verdict['score']:.4g})")
        for finding in verdict["findings"]:
            print(f"- {finding}")


@runs_app.command("resume")
def runs_resume(run_id: str, max_iterations: Optional[int] = typer.Option(None, help="New iteration budget."),
                hours: Optional[float] = typer.Option(None, help="New time budget."),
                tokens: Optional[int] = typer.Option(None, help="New token budget."),
                config: ConfigOpt = None) -> None:
    """Continue a paused, crashed or stopped run from its last checkpoint (optionally with a larger budget)."""
    run = _find(run_id, config)
    overrides = {k: v for k, v in (("max_iterations", max_iterations), ("max_hours", hours),
                                   ("max_tokens", tokens)) if v is not None}
    launch(None, load(config), resume=run.path, budget_overrides=overrides)


@runs_app.command("stop")
def runs_stop(run_id: str, config: ConfigOpt = None) -> None:
    """Ask a running run to stop cleanly (it writes its report); a run with no live process is marked stopped."""
    from orchestrator.control import request_stop
    from orchestrator.rundir import effective_status

    run = _find(run_id, config)
    request_stop(run.path, "user")
    status = effective_status(run.read_meta())
    if status == "running":
        console.print(f"stop requested: {run.id} stops at its next step")
    elif status == "paused":
        run.update_meta(status="stopped", stop_reason="user: stopped while paused", pid=None)
        run.events.append("run_finished", run.read_meta().get("iteration"), status="stopped",
                          stop_reason="user: stopped while paused")
        console.print(f"{run.id} was paused; marked stopped (resume still possible)")
    else:
        console.print(f"{run.id} already ended ({status})")


@runs_app.command("steer")
def runs_steer(run_id: str, text: str, config: ConfigOpt = None) -> None:
    """Add a requirement to a running or paused run; the producer sees it at its next step."""
    from orchestrator.control import add_steer

    run = _find(run_id, config)
    try:
        add_steer(run.path, text)
    except ValueError as exc:
        fail(str(exc))
    console.print(f"steering queued for {run.id}")


def _find(run_id: str, config: Optional[Path]):
    from orchestrator.rundir import find_run

    try:
        return find_run(load(config).runs_dir, run_id)
    except KeyError as exc:
        fail(str(exc.args[0]) if exc.args else str(exc))
