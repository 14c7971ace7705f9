"""`m3lab paper ingest|rubric` and `m3lab reproduce`: paper reproduction (tasks/paper)."""
from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from typing import Any, NoReturn

import typer
from rich.markup import escape

from orchestrator.cli.cluster import ClusterOpt, submit  # [issue 15]
from orchestrator.cli.common import ConfigOpt, JsonOpt, console, fail, launch, load, print_json
from tasks.text import printable

paper_app = typer.Typer(help="Paper reproduction: ingest a PDF, make or check its rubric.", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    app.add_typer(paper_app, name="paper")
    app.command("reproduce")(reproduce)


def _fail(message: str, json_out: bool, kind: str = "PaperError") -> NoReturn:
    """One clear line; with --json one JSON object on stdout ({"error": ...}), exit code 2 either way."""
    if json_out:
        print_json({"error": message, "kind": kind})
        raise typer.Exit(2)
    fail(message)


def _ingest(pdf: Path, out: Path, password: str | None, max_pages: int, json_out: bool = False) -> Any:
    from tasks.paper.errors import PaperError
    from tasks.paper.ingest import ingest_pdf

    try:
        return ingest_pdf(pdf, out, password=password, max_pages=max_pages)
    except PaperError as exc:
        _fail(str(exc), json_out, type(exc).__name__)
    except (RuntimeError, ValueError, OSError) as exc:  # a PDF that breaks MuPDF mid-way, a full disk
        _fail(f"{pdf}: ingest failed ({type(exc).__name__}: {exc})", json_out, type(exc).__name__)


def _settings(config: Path | None, json_out: bool) -> Any:
    from orchestrator.config import ConfigError, load_settings

    try:
        return load_settings(config)
    except ConfigError as exc:
        _fail(str(exc), json_out, "ConfigError")


def _vision_tables(bundle: Any, pdf: Path, out: Path, password: str | None, settings: Any) -> None:
    """Low-confidence tables transcribed from their image by the verifier model when it takes images (only then:
    the embedded model does not); what changed is noted in the bundle's warnings."""
    from tasks.paper.pdf import open_pdf
    from tasks.paper.vision_tables import transcribe_with_endpoint

    if settings is not None and settings.verifier.vision:
        transcribe_with_endpoint(bundle, open_pdf(pdf, password=password, max_pages=10**6), out, settings.verifier)


def _default_settings(bundle: Any, out: Path) -> Any:
    """The settings of ./m3lab.toml for the optional vision step; a broken file there skips the step with a note
    instead of failing an ingest that needs no model."""
    from orchestrator.config import ConfigError, load_settings
    from tasks.paper.bundle import write_bundle_files

    try:
        return load_settings(None)
    except ConfigError as exc:
        bundle.warnings.append(f"vision transcription of tables skipped: {' '.join(str(exc).split())[:200]}")
        write_bundle_files(bundle, out)
        return None


@paper_app.command("ingest")
def ingest(
    pdf: Path = typer.Argument(..., help="Paper PDF."),
    out: Path = typer.Option(..., "--out", help="Bundle folder to write."),
    password: str | None = typer.Option(None, help="Password of an encrypted PDF."),
    max_pages: int = typer.Option(150, help="Refuse longer PDFs (budget guard)."),
    vision: bool = typer.Option(True, "--vision/--no-vision",
                                help="When the verifier model takes images: have it transcribe low-confidence "
                                     "tables (cells kept only where the page prints them)."),
    config: ConfigOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Extract sections, equations, tables, figures, numbers and references into OUT."""
    bundle = _ingest(pdf, out, password, max_pages, json_out)
    if vision:
        _vision_tables(bundle, pdf, out, password, _settings(config, json_out) if config else _default_settings(bundle, out))
    summary = bundle.summary()
    if json_out:
        return print_json({**summary, "out": str(out)})
    counts = ", ".join(f"{v} {k}" for k, v in summary["counts"].items())
    console.print(f"[bold]{bundle.title}[/bold]: {counts}")
    for warning in summary["warnings"][:10]:
        console.print(f"[yellow]warning:[/yellow] {warning}")
    console.print(f"bundle written to {out} (summary.json, bundle.json, text.md, tables/, figures/, equations/)")


def _make_rubric(bundle: Any, use_model: bool, settings: Any) -> Any:
    """The model's rubric when it is usable, else the deterministic one (the reason is printed)."""
    from serving.client import EndpointUnavailable
    from tasks.paper.asker import endpoint_asker
    from tasks.paper.rubric_gen import REPLY_TOKENS, generate_rubric

    ask, max_chars = None, None
    if use_model:
        try:
            # The reply gets at most a quarter of the served context; the prompt pieces get the rest.
            ask, budget = endpoint_asker(settings.verifier, REPLY_TOKENS)
            max_chars = budget.prompt_chars
        except EndpointUnavailable as exc:
            console.print(f"[yellow]model unavailable ({escape(str(exc))}); using the deterministic rubric[/yellow]")
    result = generate_rubric(bundle, ask, max_chars)
    if result.source == "fallback" and ask is not None:
        problems = escape(printable("; ".join(result.problems)[:300]))  # they quote the model's reply
        console.print(f"[yellow]the model's rubric was not usable ({problems}); "
                      "using the deterministic rubric[/yellow]")
    return result


@paper_app.command("rubric")
def rubric(
    pdf: Path = typer.Argument(..., help="Paper PDF."),
    out: Path = typer.Option(..., "--out", help="rubric.json to write (review and edit it before the run)."),
    model: bool = typer.Option(True, "--model/--no-model", help="Ask the verifier model to refine the rubric."),
    password: str | None = typer.Option(None, help="Password of an encrypted PDF."),
    max_pages: int = typer.Option(150, help="Refuse longer PDFs (budget guard)."),
    config: ConfigOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Write a PaperBench-format rubric for PDF (Code Development / Code Execution / Result Analysis leaves)."""
    from tasks.paper.rubric import save_rubric

    bundle = _ingest(pdf, out.parent / f".{out.stem}.bundle", password, max_pages, json_out)
    settings = _settings(config, json_out) if model else None
    _vision_tables(bundle, pdf, out.parent / f".{out.stem}.bundle", password, settings)
    result = _make_rubric(bundle, model, settings)
    try:
        save_rubric(result.rubric, out)
    except OSError as exc:
        _fail(f"{out}: cannot write the rubric ({exc})", json_out, type(exc).__name__)
    leaves = list(result.rubric.leaves())
    info = {"out": str(out), "source": result.source, "leaves": len(leaves), "problems": result.problems,
            "by_category": {c: sum(leaf.task_category == c for leaf in leaves)
                            for c in ("Code Development", "Code Execution", "Result Analysis")}}
    if json_out:
        return print_json(info)
    console.print(f"rubric ({result.source}) with {len(leaves)} leaves {info['by_category']} written to {out}")


def _decrypted_copy(pdf: Path, password: str, out: Path) -> Path:
    """The run re-ingests its PDF without a password: give it a decrypted copy (never stored in run.json)."""
    from tasks.paper.pdf import open_pdf

    doc = open_pdf(pdf, password=password, max_pages=10**6)
    import pymupdf

    doc.save(out, encryption=pymupdf.mupdf.PDF_ENCRYPT_NONE)
    return out


def _check_startable(settings: Any, image: str, gpu: bool) -> None:
    """A bad image or runs folder fails here, before ingestion and before the model writes a rubric."""
    from orchestrator.config import ConfigError
    from orchestrator.runner import check_startable
    from sandboxes.base import SandboxSpec

    try:
        check_startable(settings, SandboxSpec(image=image, gpu=gpu))
    except ConfigError as exc:
        fail(str(exc))


def reproduce(
    pdf: Path = typer.Argument(..., help="Paper PDF."),
    rubric_file: Path | None = typer.Option(None, "--rubric", help="Reviewed rubric.json (else one is made)."),
    hours: float | None = typer.Option(None, help="Budget: active wall-clock hours."),
    max_iterations: int | None = typer.Option(None, help="Budget: producer-verifier rounds."),
    tokens: int | None = typer.Option(None, help="Budget: total tokens of all model calls."),
    target: float = typer.Option(0.8, help="Weighted rubric score that completes the run."),
    timeout: float = typer.Option(1800.0, help="Time limit of one `bash reproduce.sh` re-run, seconds."),
    image: str = typer.Option("m3lab/default", help="Sandbox image."),
    password: str | None = typer.Option(None, help="Password of an encrypted PDF (the run gets a decrypted copy)."),
    max_pages: int = typer.Option(150, help="Refuse longer PDFs (budget guard)."),
    gpu: bool = typer.Option(False, "--gpu", help="Give the sandboxes the host's GPUs."),
    model_rubric: bool = typer.Option(True, "--model-rubric/--no-model-rubric",
                                      help="Without --rubric: ask the verifier model to refine the rubric."),
    config: ConfigOpt = None,
    cluster: bool = ClusterOpt,  # [issue 15]
) -> None:
    """Reproduce PDF: the producer writes reproduce.sh; each iteration re-runs it in a fresh sandbox and grades it."""
    from tasks.paper.errors import RubricError
    from tasks.paper.rubric import load_rubric, save_rubric
    from tasks.paper.task import PaperTask

    settings = load(config, max_iterations, hours, tokens)
    if not cluster:  # [issue 15] on a cluster, the sandbox image lives on the worker nodes, not here
        _check_startable(settings, image, gpu)
    pdf = pdf.resolve()
    if not pdf.is_file():
        fail(f"{pdf}: no such file")
    inputs = settings.runs_dir.resolve() / "paper-inputs" / hashlib.sha256(pdf.read_bytes()).hexdigest()[:12]
    bundle = _ingest(pdf, inputs / "bundle", password, max_pages)
    if rubric_file is None and model_rubric:  # the tables the rubric's result leaves come from
        _vision_tables(bundle, pdf, inputs / "bundle", password, settings)
    if password:
        pdf = _decrypted_copy(pdf, password, inputs / "paper.pdf")
    elif cluster:  # [issue 15] the worker that drives the run sees runs_dir (a shared mount), not this machine
        shutil.copy2(pdf, inputs / "paper.pdf")
        pdf = inputs / "paper.pdf"
    rubric_path = inputs / "rubric.json"
    if rubric_file is not None:
        try:
            save_rubric(load_rubric(rubric_file), rubric_path)
        except RubricError as exc:
            fail(str(exc))
    else:
        result = _make_rubric(bundle, model_rubric, settings)
        save_rubric(result.rubric, rubric_path)
        console.print(f"rubric ({result.source}) written to {rubric_path}")
    (inputs / "summary.json").write_text(json.dumps(bundle.summary(), indent=1), encoding="utf-8")
    task = PaperTask(pdf=str(pdf), rubric=str(rubric_path), score_target=target, reproduce_timeout_s=timeout,
                     image=image, max_pages=max_pages, gpu=gpu)
    if cluster:  # [issue 15]
        return submit(task, settings)
    launch(task, settings)
