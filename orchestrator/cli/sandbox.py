"""`m3lab sandbox build|doctor|reap`: images, a health check of the isolation, and cleanup after crashes."""
from __future__ import annotations

from typing import get_args

import typer

sandbox_app = typer.Typer(help="Sandboxes: build images, check isolation, reap leftovers.", no_args_is_help=True)


@sandbox_app.command("build")
def build(
    image: str = typer.Option("all", help="all | default | torch-cpu"),
    method: str = typer.Option("auto", help="auto | offline (debootstrap) | registry (Dockerfile)"),
    force: bool = typer.Option(False, help="rebuild even when the recipe hash matches"),
) -> None:
    """Build the sandbox images (cached by recipe hash; rebuilt only when the recipe changes)."""
    from sandboxes.base import SandboxError
    from sandboxes.engine import EngineUnavailable, connect
    from sandboxes.images import IMAGES, Method, build_image

    methods: dict[str, Method] = {m: m for m in get_args(Method)}
    names = list(IMAGES) if image == "all" else [image]
    if method not in methods or any(n not in IMAGES for n in names):
        raise typer.BadParameter(f"--image one of all, {', '.join(IMAGES)}; --method {'|'.join(methods)}")
    try:
        client = connect()
        for name in names:
            res = build_image(client, name, method=methods[method], force=force, log=lambda m: typer.echo(m, err=True))
            how = f"built via {res.method}" if res.built else "up to date"
            typer.echo(f"{res.tag}: {how} (recipe {res.recipe_hash}, {res.duration_s:.1f} s)")
    except (EngineUnavailable, SandboxError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from exc


@sandbox_app.command("doctor")
def doctor() -> None:
    """Which backend is active, engine version, images, and which limits are enforced."""
    from rich.console import Console
    from rich.table import Table

    from sandboxes.doctor import diagnose

    report = diagnose()
    console = Console()
    console.print(f"backend: [bold]{report.backend}[/bold]\nengine:  {report.engine}")
    for tag, state in report.images.items():
        console.print(f"image {tag}: {state}")
    table = Table("limit", "enforced by")
    for name, how in report.limits.items():
        table.add_row(name, how)
    console.print(table)
    for note in report.notes:
        console.print(note)
    raise typer.Exit(0 if report.ok else 1)


@sandbox_app.command("reap")
def reap() -> None:
    """Remove sandboxes whose owner process is gone or whose lifetime is over (after a crash)."""
    from sandboxes.engine import EngineUnavailable, connect
    from sandboxes.reaper import reap as do_reap

    try:
        client = connect(timeout_s=5)
    except EngineUnavailable:
        client = None
    result = do_reap(client)
    typer.echo(f"removed {len(result.removed)} ({', '.join(result.removed) or 'none'}); kept {result.kept} live")


def register(app: typer.Typer) -> None:
    """Add this group's commands to the root app."""
    app.add_typer(sandbox_app, name="sandbox")
