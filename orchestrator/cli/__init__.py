"""The `m3lab` command line. Each command group lives in its own module with a `register(app)` function;
heavy imports (torch, docker, vLLM clients) happen inside the commands, never at import time."""
from __future__ import annotations

import typer

from orchestrator.cli import cluster, kernel, paper, runs, sandbox, serve, ui

app = typer.Typer(
    name="m3lab",
    help="M3 Lab: producer-verifier research agent (runs, sandboxes, serving, kernels, papers).",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)

for _module in (runs, sandbox, serve, kernel, paper, ui, cluster):  # [issue 15] cluster
    _module.register(app)


def main() -> None:
    """The console script. Errors a command did not foresee end in one line (one JSON document under --json);
    their traceback goes to a file, named in that line, so nothing is lost."""
    import json
    import sys
    import traceback
    from pathlib import Path

    as_json = "--json" in sys.argv[1:]
    try:
        if not as_json:
            app()
        else:  # usage errors too must come out as one JSON document
            sys.exit(_run_for_json())
    except Exception as exc:  # noqa: BLE001 - the CLI's one boundary for unforeseen errors
        log = Path.home() / ".cache" / "m3lab" / "last-error.txt"
        log.parent.mkdir(parents=True, exist_ok=True)
        log.write_text(traceback.format_exc(), encoding="utf-8")
        message = f"{type(exc).__name__}: {exc} (traceback: {log})"
        if as_json:
            print(json.dumps({"error": message}))
        else:
            print(f"error: {message}", file=sys.stderr)
        sys.exit(1)


def _run_for_json() -> int:
    """Run the app without click's own error printing: a usage error becomes `{"error": ...}` on stdout."""
    import json

    from typer import Abort

    try:  # typer >= 0.22 runs on its own copy of click (tests/orchestrator/test_cli_output.py checks)
        from typer._click.exceptions import ClickException
    except ImportError:
        from click.exceptions import ClickException  # type: ignore[assignment]  # the same class, older typer
    try:
        return int(app(standalone_mode=False) or 0)
    except ClickException as exc:
        print(json.dumps({"error": exc.format_message()}))
        return exc.exit_code
    except Abort:
        print(json.dumps({"error": "aborted"}))
        return 1
