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
    app()
