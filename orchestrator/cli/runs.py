"""`m3lab run code ...` and `m3lab runs list|show|logs|diff|resume|stop|steer`."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from orchestrator.cli.cluster import ClusterOpt, submit  # [issue 15]
from orchestrator.cli.common import ConfigOpt, IslandsOpt, JsonOpt, fail, launch, load, print_json
from tasks.text import printable, shorten

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
    main: str | None = typer.Option(None, help="Main file a bare code block from the model replaces."),
    protect: list[str] = typer.Option([], help="Paths the producer must not edit (restored before the check)."),
    image: str = typer.Option("m3lab/default", help="Sandbox image."),
    max_iterations: int | None = typer.Option(None, help="Budget: producer-verifier rounds."),
    hours: float | None = typer.Option(None, help="Budget: active wall-clock hours."),
    tokens: int | None = typer.Option(None, help="Budget: total tokens of all model calls."),
    islands: IslandsOpt = None,
    config: ConfigOpt = None,
    cluster: bool = ClusterOpt,  # [issue 15]
) -> None:
    """Run the generic code task: make WORKSPACE's check command pass, verified in a fresh sandbox."""
    from tasks.code.task import CodeTask, TaskError

    try:
        task = CodeTask(source=str(workspace), check_command=check, goal=goal, main=main, protect=protect,
                        image=image)
    except TaskError as exc:
        fail(str(exc))
    if cluster:  # [issue 15]
        return submit(task, load(config, max_iterations, hours, tokens, islands))
    launch(task, load(config, max_iterations, hours, tokens, islands))


def _row(meta: dict[str, Any]) -> dict[str, Any]:
    from orchestrator.rundir import effective_status

    used = meta.get("budget", {}).get("used", {})
    # Numbers are coerced here, so a run.json with a field of the wrong type is caught as unreadable.
    return {"id": meta["id"], "kind": meta["task"]["kind"], "status": effective_status(meta),
            "stop_reason": meta.get("stop_reason", ""), "iterations": int(meta.get("iteration") or 0),
            "best_score": float(meta.get("best_score") or 0.0), "best_iteration": int(meta.get("best_iteration") or 0),
            "tokens": int(used.get("tokens") or 0), "elapsed_s": float(used.get("elapsed_s") or 0.0),
            "title": meta["task"].get("title", ""), "created_at": meta.get("created_at"),
            "updated_at": meta.get("updated_at")}


def _row_or_reason(run_dir: Path) -> dict[str, Any]:
    """A listing row; a run whose run.json cannot be read is a row with status "unreadable" and the reason."""
    from orchestrator.rundir import UnreadableRun, load_meta

    try:
        return _row(load_meta(run_dir))
    except (UnreadableRun, KeyError, TypeError, ValueError, AttributeError) as exc:
        reason = str(exc) if isinstance(exc, UnreadableRun) else f"run.json has a bad field ({exc!r})"
        return {"id": run_dir.name, "kind": "?", "status": "unreadable", "stop_reason": reason, "error": reason,
                "iterations": 0, "best_score": 0.0, "best_iteration": 0, "tokens": 0, "elapsed_s": 0.0,
                "title": reason, "created_at": None, "updated_at": None}


@runs_app.command("list")
def runs_list(config: ConfigOpt = None, json_out: JsonOpt = False) -> None:
    """Every run, newest first."""
    from orchestrator.rundir import list_runs

    settings = load(config)
    if settings.store.enabled:  # [issue 15] one query on the run index instead of reading every run.json
        from orchestrator.cli.cluster import index_rows_or_fail

        rows = index_rows_or_fail(settings)
    else:
        rows = [_row_or_reason(r.path) for r in list_runs(settings.runs_dir)]
    if json_out:
        return print_json(rows)
    console.print(runs_table(rows, console.width))


LIST_COLUMNS = {"id": lambda r: r["id"], "status": lambda r: r["status"], "iter": lambda r: str(r["iterations"]),
                "best": lambda r: f"{r['best_score']:.4g}", "kind": lambda r: r["kind"],
                "tokens": lambda r: str(r["tokens"]), "title": lambda r: r["title"]}
DROP_ORDER = ("tokens", "kind", "best", "title", "iter")
"""Columns given up, in this order, when the terminal is too narrow: the id (what a user copies) never is."""
TITLE_MIN = 16


def _shown(value: Any) -> str:
    """Run data (much of it written by a sandbox or a model) as rich markup: never markup, never a terminal control."""
    return escape(printable(str(value)))


def runs_table(rows: list[dict[str, Any]], width: int) -> Table:
    """One line per run; ids are never cut or wrapped: the title shrinks first, then columns are dropped."""
    cells = {name: [printable(get(r)) for r in rows] for name, get in LIST_COLUMNS.items()}
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
        table.add_row(*(Text(cells[name][i]) for name in shown))  # Text: a title is never read as markup
    return table


@runs_app.command("show")
def runs_show(run_id: str, config: ConfigOpt = None, json_out: JsonOpt = False) -> None:
    """Status, iterations, best score / speed-up and budget use of one run."""
    from orchestrator.report import iteration_records, model_behaviour, model_call_counts

    run = _find(run_id, config)
    meta = run.read_meta()
    row = _row(meta)
    row["status"] = _status(run, config, meta)  # [issue 15] from the lease when a store is configured
    row["budget"] = meta.get("budget", {})
    row["model"] = model_call_counts(run)
    row["iterations_detail"] = [
        {"iteration": r.iteration, "verdict": r.verdict_kind, "score": r.score, "decision": r.decision.action,
         "findings": r.findings[:3]}
        for r in iteration_records(run)]
    if json_out:
        return print_json(row)
    limits, used = row["budget"].get("limits", {}), row["budget"].get("used", {})
    console.print(f"[bold]{_shown(row['id'])}[/bold]  {_shown(row['title'])}")
    console.print(f"status: [bold]{_shown(row['status'])}[/bold] {_shown(row['stop_reason'])}")
    label = "best speed-up" if row["kind"] == "kernel" else "best score"
    console.print(f"{label}: {row['best_score']:.4g} (iteration {row['best_iteration'] or '-'})")
    console.print(f"budget: iterations {used.get('iterations', 0)}/{limits.get('max_iterations')}, "
                  f"tokens {used.get('tokens', 0)}/{limits.get('max_tokens')}, "
                  f"time {used.get('elapsed_s', 0) / 3600:.2f}/{limits.get('max_hours')} h")
    console.print(f"model: {model_behaviour(row['model'])}")
    table = Table("iter", "verdict", "score", "decision", "first finding")
    for it in row["iterations_detail"]:
        first = shorten(it["findings"][0], 160) if it["findings"] else ""  # wraps in its cell
        table.add_row(str(it["iteration"]), *(Text(printable(c)) for c in (it["verdict"], f"{it['score']:.4g}",
                                                                           it["decision"], first)))
    console.print(table)


@runs_app.command("logs")
def runs_logs(run_id: str, follow: bool = typer.Option(False, "--follow", "-f", help="Keep printing new events."),
              tail: int = typer.Option(0, help="Only the last N events (0 = all)."),
              config: ConfigOpt = None, json_out: JsonOpt = False) -> None:
    """The run's events (model calls, tool calls, execs, verdicts, decisions); --json: one array, or JSON Lines
    with --follow."""
    from orchestrator import eventlog
    from orchestrator.events import format_event

    run = _find(run_id, config)
    path = run.path / "events.jsonl"
    start = eventlog.tail(path, tail).start if tail else 0
    if json_out and not follow:  # one JSON document; --follow streams JSON Lines instead
        return print_json([eventlog.as_written(e) for e in eventlog.follow(path, start, lambda: True)])

    def ended() -> bool:  # [issue 15] queued: submitted to a cluster
        return not follow or _status(run, config) not in ("running", "queued")

    for event in eventlog.follow(path, start, ended, poll_s=0.5):
        print(json.dumps(eventlog.as_written(event)) if json_out else format_event(event), flush=True)


@runs_app.command("diff")
def runs_diff(run_id: str, iteration: int, config: ConfigOpt = None) -> None:
    """The producer's change in one iteration (from the run's git history) and its verdict."""
    from orchestrator.events import read_record
    from orchestrator.safegit import GitFailed
    from orchestrator.workspace import LegacyRun, diff_for_iteration

    run = _find(run_id, config)
    try:  # the patch and the findings hold what the sandbox wrote: printed as text, never as terminal controls
        print(printable(diff_for_iteration(run.git_dir, iteration)))
    except KeyError as exc:
        fail(str(exc.args[0]) if exc.args else str(exc))
    except (LegacyRun, GitFailed) as exc:
        fail(str(exc))
    path = run.iteration_path(iteration)
    if path.exists():
        record = read_record(path)
        print(printable(f"\nverdict: {record.verdict_kind} (score {record.score:.4g})"))
        for finding in record.findings:
            print(printable(f"- {finding}"))


@runs_app.command("resume")
def runs_resume(run_id: str, max_iterations: int | None = typer.Option(None, help="New iteration budget."),
                hours: float | None = typer.Option(None, help="New time budget."),
                tokens: int | None = typer.Option(None, help="New token budget."),
                config: ConfigOpt = None, cluster: bool = ClusterOpt) -> None:
    """Continue a paused, crashed or stopped run from its last checkpoint (optionally with a larger budget)."""
    run = _find(run_id, config)
    overrides = {k: v for k, v in (("max_iterations", max_iterations), ("max_hours", hours),
                                   ("max_tokens", tokens)) if v is not None}
    settings = load(config, max_iterations, hours, tokens)  # the same checks as at start: bad values change nothing
    if cluster:  # [issue 15] the new budget is written here (checked under the run's lock); a cluster worker
        from orchestrator.runner import RunNotResumable, claim_for_resume  # continues the run

        try:
            claim_for_resume(run, overrides, settings.store, mark_running=False)
        except RunNotResumable as exc:
            fail(str(exc))
        return submit(None, load(config), resume=run)
    launch(None, load(config), resume=run.path, budget_overrides=overrides)


@runs_app.command("stop")
def runs_stop(run_id: str, config: ConfigOpt = None) -> None:
    """Ask a running run to stop cleanly (it writes its report); a run with no live process is marked stopped.
    An ended run is left as it is (exit 1)."""
    from orchestrator.control import RunEnded, request_stop

    run = _find(run_id, config)
    try:  # [issue 15] with a store, the lease says whether the run is live (its owner may be on another node)
        status = request_stop(run.path, "user", status_of=lambda meta: _status(run, config, dict(meta)))
    except RunEnded as exc:
        fail(str(exc), code=1)
    if status == "paused":
        run.update_meta()  # [issue 15] the run index sees the stop too
        console.print(f"{run.id} was paused; marked stopped (resume still possible)")
    else:
        console.print(f"stop requested: {run.id} stops at its next step")


@runs_app.command("steer")
def runs_steer(run_id: str, text: str, config: ConfigOpt = None) -> None:
    """Add a requirement to a running or paused run; the producer sees it at its next step. An ended run is
    left as it is (exit 1)."""
    from orchestrator.control import RunEnded, add_steer

    run = _find(run_id, config)
    try:  # [issue 15] with a store, the lease says whether the run is live
        add_steer(run.path, text, status_of=lambda meta: _status(run, config, dict(meta)))
    except RunEnded as exc:
        fail(str(exc), code=1)
    except ValueError as exc:
        fail(str(exc))
    console.print(f"steering queued for {run.id}")


def _find(run_id: str, config: Path | None):
    from orchestrator.rundir import UnreadableRun, find_run, load_meta
    from orchestrator.store import mirror

    settings = load(config)
    try:
        run = find_run(settings.runs_dir, run_id)
        load_meta(run.path)
    except KeyError as exc:
        fail(str(exc.args[0]) if exc.args else str(exc))
    except UnreadableRun as exc:
        fail(f"run {run.id} is unreadable: {exc}")
    mirror(run, settings.store)  # [issue 15] the CLI's own run.json writes (stop while paused) reach the index
    return run


def _status(run, config: Path | None, meta: dict[str, Any] | None = None) -> str:
    """[issue 15] Effective status: the lease decides when a store is configured, else the local pid."""
    from orchestrator.cli.cluster import status_or_fail

    return status_or_fail(run, load(config), meta)
