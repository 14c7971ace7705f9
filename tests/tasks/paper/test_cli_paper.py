"""The paper CLI commands' input handling (no model, no run): rubric writing and clear refusals."""
from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from orchestrator.cli import app
from tasks.paper.rubric import load_rubric
from tasks.paper.task import PaperTask
from tasks.registry import build_task

from .synthetic_pdfs import write_corrupt


def _flat(text: str) -> str:
    """Rich wraps long error lines at the terminal width."""
    return " ".join(text.split())


def test_rubric_command_writes_a_valid_rubric(paper_pdf: Path, tmp_path: Path) -> None:
    out = tmp_path / "rubric.json"
    result = CliRunner().invoke(app, ["paper", "rubric", str(paper_pdf), "--out", str(out), "--no-model", "--json"])
    assert result.exit_code == 0, result.output
    info = json.loads(result.stdout)
    assert info["source"] == "fallback" and info["by_category"]["Result Analysis"] == 9
    assert len(list(load_rubric(out).leaves())) == info["leaves"]


def test_reproduce_refuses_bad_inputs_before_starting(paper_pdf: Path, tmp_path: Path) -> None:
    config = tmp_path / "m3lab.toml"
    config.write_text(f'runs_dir = "{tmp_path / "runs"}"\n')
    bad_rubric = tmp_path / "bad.json"
    bad_rubric.write_text(json.dumps({"id": "root", "requirements": "r", "sub_tasks": [{"id": "x"}]}))
    result = CliRunner().invoke(app, ["reproduce", str(paper_pdf), "--rubric", str(bad_rubric), "--config",
                                      str(config)])
    assert result.exit_code == 2 and "invalid rubric" in _flat(result.output)
    result = CliRunner().invoke(app, ["reproduce", str(write_corrupt(tmp_path / "c.pdf")), "--config", str(config)])
    assert result.exit_code == 2 and "no readable pages" in _flat(result.output)
    assert not list((tmp_path / "runs").glob("2*")), "no run may start on bad input"


def test_reproduce_gives_the_run_a_decrypted_copy(tmp_path: Path, monkeypatch) -> None:
    from orchestrator.cli import paper as paper_cli
    from tasks.paper.pdf import open_pdf

    from .synthetic_pdfs import write_encrypted

    launched = {}
    monkeypatch.setattr(paper_cli, "launch", lambda task, settings: launched.setdefault("task", task))
    config = tmp_path / "m3lab.toml"
    config.write_text(f'runs_dir = "{tmp_path / "runs"}"\n')
    pdf = write_encrypted(tmp_path / "enc.pdf")
    result = CliRunner().invoke(app, ["reproduce", str(pdf), "--password", "user", "--no-model-rubric",
                                      "--config", str(config)])
    assert result.exit_code == 0, result.output
    task = launched["task"]
    assert task.pdf != str(pdf) and not open_pdf(Path(task.pdf)).needs_pass
    assert "password" not in task.params() and "enc.pdf" not in task.pdf
    assert len(list(load_rubric(Path(task.rubric)).leaves())) > 0


def test_task_rebuilds_from_params(paper_pdf: Path) -> None:
    task = PaperTask(pdf=str(paper_pdf), rubric=None, score_target=0.7)
    rebuilt = build_task("paper", json.loads(json.dumps(task.params())))
    assert rebuilt == task and rebuilt.title() == "reproduce synthetic.pdf"


def test_json_errors_are_one_json_object(tmp_path: Path) -> None:
    """`--json` prints exactly one JSON object on stdout for bad input too, with a non-zero exit."""
    for bad in (write_corrupt(tmp_path / "c.pdf"), tmp_path / "missing.pdf"):
        for command in (["paper", "ingest", str(bad), "--out", str(tmp_path / "o"), "--json"],
                        ["paper", "rubric", str(bad), "--out", str(tmp_path / "r.json"), "--no-model", "--json"]):
            result = CliRunner().invoke(app, command)
            assert result.exit_code == 2, result.output
            info = json.loads(result.stdout)
            assert set(info) == {"error", "kind"} and str(bad) in info["error"]


def test_reproduce_on_the_cluster_gives_the_run_a_copy_in_the_shared_runs_dir(paper_pdf: Path, tmp_path: Path,
                                                                              monkeypatch) -> None:
    """`--cluster`: the worker that drives the run sees runs_dir (a shared mount), not the submitter's files.
    The submission itself is stubbed here; tests/orchestrator/cluster submits real runs to a real Ray cluster."""
    from orchestrator.cli import paper as paper_cli

    submitted = {}
    monkeypatch.setattr(paper_cli, "submit", lambda task, settings: submitted.setdefault("task", task))
    config = tmp_path / "m3lab.toml"
    config.write_text(f'runs_dir = "{tmp_path / "runs"}"\n')
    result = CliRunner().invoke(app, ["reproduce", str(paper_pdf), "--no-model-rubric", "--cluster",
                                      "--config", str(config)])
    assert result.exit_code == 0, result.output
    task = submitted["task"]
    assert Path(task.pdf).is_relative_to((tmp_path / "runs").resolve())
    assert Path(task.pdf).read_bytes() == paper_pdf.read_bytes() and Path(task.rubric).is_file()
