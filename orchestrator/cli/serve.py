"""`m3lab serve`: start a vLLM server from a profile (detached), show its status, stop it.

    m3lab serve --embedded                      # SmolLM2-135M on this machine, returns once it is ready
    m3lab serve --profile m3 --dry-run          # print the exact MiniMax M3 launch for the visible GPUs
    m3lab serve status [--json]                 # served models, max model length, one-token latency
    m3lab serve stop
"""
from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import typer

serve_app = typer.Typer(help="Model servers (vLLM): start from a profile, status, stop.", no_args_is_help=False)


def _config(config_file: Path | None, **overrides):  # -> ServingConfig (import kept lazy)
    from serving.config import load_serving_config

    return load_serving_config(config_file).with_overrides(**overrides)


def _fail(message: str) -> None:
    typer.secho(message, fg=typer.colors.RED, err=True)
    raise typer.Exit(1)


@serve_app.callback(invoke_without_command=True)
def serve(
    ctx: typer.Context,
    embedded: bool = typer.Option(False, "--embedded", help="Serve the offline default model (profile 'embedded')."),
    profile: str | None = typer.Option(None, "--profile", help="Profile name (serving/profiles/) or .toml path."),
    model: str | None = typer.Option(None, "--model", help="Hub id or local path replacing the profile's model."),
    port: int | None = typer.Option(None, "--port", min=1, max=65535, help="Port (default 8000)."),
    host: str | None = typer.Option(None, "--host", help="Interface to bind (default 127.0.0.1)."),
    gpus: int | None = typer.Option(None, "--gpus", help="Size for N GPUs instead of the visible ones (dry runs)."),
    tp: int | None = typer.Option(None, "--tp", help="Tensor-parallel size override."),
    max_model_len: int | None = typer.Option(None, "--max-model-len", help="Context length override (<= 1M)."),
    kv_cache_dtype: str | None = typer.Option(None, "--kv-cache-dtype", help="KV-cache dtype override."),
    msa_plugin: bool | None = typer.Option(None, "--msa-plugin/--no-msa-plugin", help="Load our MSA vLLM plugin."),
    msa_fp8_step: bool | None = typer.Option(
        None, "--msa-fp8-step/--no-msa-fp8-step",
        help="With --kv-cache-dtype fp8 on SM90: the MSA prefill's tile-outer step in FP8 (faster, less exact)."),
    msa_fp8_q_terms: int | None = typer.Option(
        None, "--msa-fp8-q-terms", min=1, max=2,
        help="With --msa-fp8-step: Q as 1 or 2 e4m3 terms (2: ~9x less error on peaked attention, ~14% slower)."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Print the vLLM command and exit."),
    check: bool = typer.Option(False, "--check", help="With --dry-run: validate the command with the installed vLLM."),
    ready_timeout: float | None = typer.Option(None, "--ready-timeout", help="Seconds to wait for readiness."),
    config_file: Path | None = typer.Option(None, "--config", help="m3lab.toml whose serving table to read."),
) -> None:
    """Start a vLLM server from a profile as a background process; returns once the model answers."""
    if ctx.invoked_subcommand is not None:
        return
    if embedded and profile not in (None, "embedded"):
        _fail("--embedded and --profile are exclusive (--embedded means --profile embedded)")
    name = "embedded" if embedded else profile
    if name is None:
        typer.echo(ctx.get_help())
        raise typer.Exit(0)
    from serving.launch import LaunchError, LaunchOptions, build_launch, check_with_vllm
    from serving.profiles import ProfileError, load_profile
    from serving.server import ServerError, start_server

    config = _config(config_file, host=host, port=port, ready_timeout_s=ready_timeout)
    options = LaunchOptions(port=config.port, host=config.host, model=model, gpus=gpus, tensor_parallel=tp,
                            max_model_len=max_model_len, kv_cache_dtype=kv_cache_dtype, msa_plugin=msa_plugin,
                            msa_fp8_step=msa_fp8_step, msa_fp8_q_terms=msa_fp8_q_terms)
    try:
        plan = build_launch(load_profile(name, config.profiles_dir), config, options, dry_run=dry_run)
    except (ProfileError, LaunchError) as exc:
        _fail(str(exc))
    if dry_run:
        for note in plan.notes:
            typer.echo(f"# note: {note}", err=True)
        typer.echo(f"# profile {name}: device={plan.device} tensor_parallel={plan.tensor_parallel} "
                   f"expert_parallel={plan.expert_parallel} endpoint={plan.base_url}", err=True)
        typer.echo(plan.shell_command())
        if check:
            try:
                verdict = check_with_vllm([plan], config)[0]
            except LaunchError as exc:
                _fail(str(exc))
            if not verdict.ok:
                _fail("vLLM rejects this command: " + "; ".join(verdict.problems))
            typer.echo("# check: the installed vLLM accepts this command", err=True)
        return
    typer.echo(f"starting vLLM ({name}, {plan.served_model_name}) on {plan.base_url} ...")
    try:
        result = start_server(plan, config, profile=name)
    except ServerError as exc:
        _fail(str(exc))
    state = result.state  # None only for a reused server that `m3lab serve` did not start
    if result.reused or state is None:
        owner = f"pid {state.pid}" if state else "not started by m3lab serve"
        typer.echo(f"already serving {result.model} at {result.base_url} ({owner}); reusing it")
    else:
        typer.echo(f"ready in {result.ready_s:.1f} s: {result.model} at {result.base_url} "
                   f"(pid {state.pid}, log {state.log_path})")


@serve_app.command("status")
def status(
    port: int | None = typer.Option(None, "--port", min=1, max=65535, help="Port of the server (default 8000)."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
    config_file: Path | None = typer.Option(None, "--config"),
) -> None:
    """Served models, max model length and one-token latency of the server on the port."""
    from serving.client import EndpointUnavailable
    from serving.probe import endpoint_info, queue_depth
    from serving.server import read_state

    config = _config(config_file, port=port)
    state = read_state(config, config.port)
    base_url = state.base_url if state else f"http://{config.host}:{config.port}/v1"
    report: dict = {"base_url": base_url, "state": asdict(state) if state else None}
    try:
        info = endpoint_info(base_url)
        report.update(up=True, models=[asdict(m) for m in info.models], latency_s=info.latency_s,
                      queue=queue_depth(base_url))  # [issue 15] many runs share one endpoint
    except EndpointUnavailable as exc:
        report.update(up=False, error=str(exc))
    if as_json:
        typer.echo(json.dumps(report, indent=1))
    else:
        _print_status(report)
    if not report["up"]:
        raise typer.Exit(1)


def _print_status(report: dict) -> None:
    state = report["state"]
    if not report["up"]:
        typer.secho(f"down: {report['error']}", fg=typer.colors.RED)
        return
    owner = f"pid {state['pid']}, profile {state['profile']}, log {state['log_path']}" if state else "not started by m3lab serve"
    typer.echo(f"up: {report['base_url']} ({owner})")
    for m in report["models"]:
        typer.echo(f"  model {m['id']}  max_model_len {m['max_model_len']}")
    if report["latency_s"] is not None:
        typer.echo(f"  one-token latency {report['latency_s'] * 1000:.0f} ms")
    if report.get("queue") is not None:
        queue = report["queue"]
        typer.echo(f"  requests waiting {queue.get('waiting', 0):g}, running {queue.get('running', 0):g}")


@serve_app.command("stop")
def stop(
    port: int | None = typer.Option(None, "--port", min=1, max=65535, help="Port of the server (default 8000)."),
    config_file: Path | None = typer.Option(None, "--config"),
) -> None:
    """Stop the server `m3lab serve` started on the port (its whole process group)."""
    from serving.server import ServerError, stop_server

    config = _config(config_file, port=port)
    try:
        state = stop_server(config, config.port)
    except ServerError as exc:
        _fail(str(exc))
    typer.echo(f"stopped {state.model} on port {state.port} (pid {state.pid})")


@serve_app.command("profiles")
def profiles(config_file: Path | None = typer.Option(None, "--config")) -> None:
    """List the launch profiles."""
    from serving.profiles import list_profiles, load_profile

    config = _config(config_file)
    for name in list_profiles(config.profiles_dir):
        typer.echo(f"{name:12s} {load_profile(name, config.profiles_dir).description}")


def register(app: typer.Typer) -> None:
    """Add this group's commands to the root app."""
    app.add_typer(serve_app, name="serve")
