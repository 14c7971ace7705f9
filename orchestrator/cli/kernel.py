"""`m3lab kernel eval|targets` and `m3lab optimize`: evaluate one kernel candidate, or start a kernel search."""
from __future__ import annotations

from pathlib import Path

import typer

from orchestrator.cli.cluster import ClusterOpt, submit  # [issue 15]
from orchestrator.cli.common import ConfigOpt, IslandsOpt, JsonOpt, fail, launch, load, print_json

kernel_app = typer.Typer(help="Kernel targets and the evaluation harness.", no_args_is_help=True)
DeviceOpt = typer.Option("cpu", "--device", help="cpu or cuda.")
IsolationOpt = typer.Option("sandbox", "--isolation",
                            help="sandbox (fresh sandbox per evaluation) or subprocess (hosts without one).")
DEFAULT_EXT_CACHE = Path("/var/tmp/m3lab-kernel-ext")
"""World-traversable (the candidate's user reads it), written only by this process."""


def _ensure_eval_image(build: bool) -> None:
    """With a Docker engine, the evaluation image must exist: say how to build it, or build it (--build-image)."""
    from sandboxes import default_backend

    if default_backend() != "docker":
        return  # the process sandbox runs the host's own Python
    from rich.console import Console

    from sandboxes.base import SandboxError
    from sandboxes.engine import connect
    from sandboxes.images import build_image, image_label, tag_of
    from tasks.kernel.runner import EVAL_IMAGE

    client = connect()
    name = EVAL_IMAGE.split("/", 1)[1].split(":")[0]
    if image_label(client, tag_of(name)) is not None:
        return
    if not build:
        fail(f"sandbox image {tag_of(name)} is missing: run `m3lab sandbox build --image {name}` (minutes, offline) "
             "or add --build-image")
    console = Console(stderr=True)
    try:
        with console.status(f"building {tag_of(name)} (first time: a few minutes)") as status:
            def log(message: str) -> None:
                status.update(message[:100])
                console.log(message[:200])

            for image in ("default", name):
                build_image(client, image, log=log)
    except SandboxError as exc:
        fail(f"building {tag_of(name)} failed: {str(exc).splitlines()[0]}")


def register(app: typer.Typer) -> None:
    """Add this group's commands to the root app."""
    app.add_typer(kernel_app, name="kernel")
    app.command("optimize")(optimize)


@kernel_app.command("eval")
def kernel_eval(
    target: str = typer.Argument(..., help="Target file (KernelBench format) or a bundled target name."),
    candidate: Path = typer.Argument(..., help="Candidate file defining ModelNew."),
    device: str = DeviceOpt,
    isolation: str = IsolationOpt,
    iters: int = typer.Option(20, help="Timed calls per model per timing shape."),
    warmup: int = typer.Option(3, help="Warm-up calls (indistinguishable from timed ones)."),
    no_timing: bool = typer.Option(False, "--no-timing", help="Correctness only."),
    start_timeout: float = typer.Option(300.0, "--start-timeout", min=1,
                                        help="Seconds a worker may take to start (imports, the candidate's module)."),
    call_timeout: float = typer.Option(120.0, "--call-timeout", min=1,
                                       help="Seconds one call of the candidate (a check, a timed call) may take."),
    eval_dir: Path | None = typer.Option(None, help="Where to lay out the evaluation (default: a temp dir)."),
    compile_timeout: float = typer.Option(300.0, help="Time limit (s) of the compile stage (C++/CUDA extensions)."),
    ext_cache: Path = typer.Option(DEFAULT_EXT_CACHE, help="Compile cache shared by evaluations (keyed by a hash "
                                   "of sources, flags, torch version and CUDA arch)."),
    sanitize: bool = typer.Option(False, "--sanitize", help="Run compute-sanitizer memcheck + racecheck (CUDA)."),
    build_image: bool = typer.Option(False, "--build-image", help="Build the sandbox image first if it is missing."),
    json_out: JsonOpt = False,
) -> None:
    """Evaluate CANDIDATE against TARGET and print the verdict (exit 0 accepted, 1 rejected, 2 no verdict)."""
    import tempfile

    from sandboxes.base import SandboxError
    from sandboxes.engine import EngineUnavailable
    from tasks.kernel.runner import EvalFailed, EvalOptions, evaluate_candidate
    from tasks.kernel.targets import resolve_target

    if device not in ("cpu", "cuda") or isolation not in ("sandbox", "subprocess"):
        fail("--device must be cpu|cuda and --isolation sandbox|subprocess")
    if isolation == "sandbox":
        _ensure_eval_image(build_image)
    opts = EvalOptions(device=device, isolation=isolation, iters=iters, warmup=warmup,  # type: ignore[arg-type]
                       timing=not no_timing, start_timeout_s=start_timeout, call_timeout_s=call_timeout,
                       compile_timeout_s=compile_timeout, ext_cache=ext_cache, sanitize=sanitize)
    if eval_dir is None:
        temp = Path(tempfile.mkdtemp(prefix="m3lab-kernel-eval-"))
        temp.chmod(0o755)  # the candidate worker may run as nobody
        eval_dir = temp / "eval"
    folder = eval_dir
    try:
        # The user's own file: a link they made is followed here (the runner refuses links in sandbox output).
        verdict = evaluate_candidate(resolve_target(target), candidate.resolve(), opts, folder)
    except (EvalFailed, FileNotFoundError, SandboxError, EngineUnavailable) as exc:
        fail(str(exc))  # a missing image or engine names its fix (`m3lab sandbox build --image torch-cpu`)
    if json_out:
        print_json(verdict.to_json())
    else:
        _print_verdict(verdict, folder)
    raise typer.Exit(0 if verdict.accepted else 1)


def _print_verdict(verdict, folder: Path) -> None:  # noqa: ANN001
    from rich.console import Console
    from rich.markup import escape

    from tasks.text import printable

    out = Console()
    colour = "green" if verdict.accepted else "red"  # the candidate's messages: never markup, never a terminal control
    out.print(f"[{colour}]{escape(printable(verdict.summary()))}[/{colour}]")
    comp = verdict.compile
    if comp:
        out.print(f"  compile: {comp.get('stage_s', comp.get('seconds', 0)):.1f} s, "
                  f"{'cached' if comp.get('cached') else 'built'}, {len(comp.get('extensions', []))} extension(s), "
                  f"{len(comp.get('errors', []))} error(s), {len(comp.get('warnings', []))} warning(s)")
    for t in verdict.timings:
        out.print(f"  {t.shape}: ref {t.ref_ms:.4g} ms | cand {t.cand_ms:.4g} ms | {t.speedup:.3f}x | "
                  f"A/A {t.aa_ratio:.3f} | floor {t.floor_ms:.3g} ms")
    for label, items in (("cheat", verdict.cheats), ("wrong", verdict.failures), ("error", verdict.errors),
                         ("flag", verdict.flags), ("warning", verdict.warnings)):
        for item in items:
            out.print(f"  {label}: {escape(printable(item[:400]))}")
    out.print(f"  {verdict.checked_calls} checked calls on {escape(printable(str(verdict.device_name)))}, "
              f"{verdict.eval_s:.1f} s; logs in {folder}")


@kernel_app.command("targets")
def kernel_targets(json_out: JsonOpt = False) -> None:
    """List the bundled targets and their honest candidates."""
    from tasks.kernel.harness.spec import read_meta_static
    from tasks.kernel.targets import BUNDLED, HONEST, resolve_target

    rows = []
    for name in BUNDLED:
        meta = read_meta_static(resolve_target(name))
        rows.append({"name": name, "devices": meta.get("devices", ["cpu", "cuda"]), "honest": HONEST[name],
                     "path": str(resolve_target(name))})
    if json_out:
        return print_json(rows)
    for r in rows:
        print(f"{r['name']:<18} {','.join(r['devices']):<10} {', '.join(r['honest'])}")


def warm_default(warm: bool | None, isolation: str, cluster: bool) -> bool:
    """Warm evaluators unless turned off, where they apply: subprocess isolation (a sandboxed evaluation always
    starts fresh) in this process (a cluster's evaluations run in Ray workers whose GPUs change per task)."""
    return warm if warm is not None else isolation == "subprocess" and not cluster


def optimize(
    target: str = typer.Argument(..., help="Target file (KernelBench format) or a bundled target name."),
    device: str = DeviceOpt,
    hours: float | None = typer.Option(None, help="Budget: active wall-clock hours."),
    max_iterations: int | None = typer.Option(None, help="Budget: producer-verifier rounds."),
    tokens: int | None = typer.Option(None, help="Budget: total tokens."),
    target_speedup: float | None = typer.Option(None, help="Stop once this verified speed-up is reached."),
    isolation: str = IsolationOpt,
    iters: int = typer.Option(20, help="Timed calls per model per timing shape in each check."),
    warm: bool | None = typer.Option(None, "--warm/--no-warm", help="Subprocess isolation: keep the reference "
                                     "workers started across the run's evaluations and the next candidate worker "
                                     "pre-started (one warm evaluator per GPU; every candidate still gets a fresh "
                                     "process). Default: on with --isolation subprocess (not with --cluster)."),
    islands: IslandsOpt = None,
    config: ConfigOpt = None,
    cluster: bool = ClusterOpt,  # [issue 15]
) -> None:
    """Start a kernel search: the producer rewrites ModelNew, the harness verifies and times every candidate."""
    from tasks.kernel.runner import EvalOptions
    from tasks.kernel.task import KernelTask, KernelTaskError

    try:
        task = KernelTask(target=target, device=device, target_speedup=target_speedup, isolation=isolation,
                          options=EvalOptions(iters=iters, warm=warm_default(warm, isolation, cluster)))
    except (KernelTaskError, FileNotFoundError) as exc:
        fail(str(exc))
    if cluster:  # [issue 15] evaluations then run as Ray tasks sized for one GPU (or CPU) each
        return submit(task, load(config, max_iterations, hours, tokens, islands))
    launch(task, load(config, max_iterations, hours, tokens, islands))
