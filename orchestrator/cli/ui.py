"""`m3lab ui`: the local web viewer over run directories."""
from __future__ import annotations

from pathlib import Path

import typer

from orchestrator.cli.common import ConfigOpt, load


def ui(
    port: int = typer.Option(8765, "--port", "-p", min=1, max=65535, help="TCP port to listen on."),
    host: str = typer.Option("127.0.0.1", "--host", help="Address to bind; loopback by default (no token). Any "
                             "other address requires the token printed at start."),
    allow_host: list[str] = typer.Option([], "--allow-host", help="Extra Host name the viewer answers to (a DNS "
                                         "name of this machine); repeatable."),
    runs_dir: Path | None = typer.Option(None, "--runs-dir", help="Runs folder (default: settings' runs_dir)."),
    config: ConfigOpt = None,
) -> None:
    """Serve the run viewer: runs list, live run pages, kernel and paper views, steer/stop."""
    from orchestrator.viewer.server import PortBusy, ViewerServer

    settings = load(config)
    folder = runs_dir if runs_dir is not None else settings.runs_dir
    try:  # [issue 15] with a PostgreSQL store, the run list comes from its run index
        server = ViewerServer(folder, host=host, port=port, allow_hosts=tuple(allow_host), store=settings.store)
    except (PortBusy, OSError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(code=2) from exc
    typer.echo(f"M3 Lab viewer on {server.url}  (runs: {folder.resolve()})  Ctrl+C to stop")
    if server.login_url:
        # Printed once: the token is not stored anywhere.
        typer.echo(f"not loopback: a token is required. Open once: {server.login_url}\n"
                   f"scripts: Authorization: Bearer {server.access.token}")
    server.run()


def register(app: typer.Typer) -> None:
    """Add this group's commands to the root app."""
    app.command("ui")(ui)
