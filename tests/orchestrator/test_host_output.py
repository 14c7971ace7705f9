"""Issue 12, what the user sees: text a sandbox or a model wrote reaches the terminal (`m3lab runs show|diff|logs|
list`, a foreground run's progress), report.md and the viewer as text, never as terminal controls, rich markup,
Markdown or a broken page. The real loop writes the run (scripted models, the local test sandbox); the readers
are the real CLI, report and viewer."""
from __future__ import annotations

import io
import json
import re
from pathlib import Path

import httpx
import pytest
from markdown_it import MarkdownIt
from rich.console import Console
from typer.testing import CliRunner

from orchestrator.cli import app
from orchestrator.events import format_event
from orchestrator.viewer.server import ViewerServer
from tests.orchestrator.support import Script, tool_call
from tests.orchestrator.test_loop import GOOD, run_with

PAYLOAD = ("\x1b]52;c;cHduZWQ=\x07\x1b]0;PWNED-TITLE\x1b\\[link=https://evil.example]click[/link] "
           "\x1b[2K\x1b[1A\x1b[8mhidden\u202e\r\n~~~\n# Injected heading\n"
           "![t](https://evil.example/t.png) <img src=x onerror=alert(1)> [b](javascript:alert(1))\n")
"""Clipboard write (OSC 52), title (OSC 0), a rich link, line erase and cursor up, invisible text, a bidi override,
a carriage return; then a line that would close a report's fence, a heading, an image, raw HTML, a script link."""
CONTROLS = ("\x1b]", "\x1b[2K", "\x1b[1A", "\x1b[8m", "\u202e", "\r")


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One iteration: the producer leaves PAYLOAD in a file and in a tool call (with a lone surrogate, as a
    model's JSON can carry); the check passes; the review fails it with PAYLOAD as its finding and a NaN score."""
    tmp = tmp_path_factory.mktemp("output")
    producer = [tool_call("write_file", path="calc.py", content=GOOD), tool_call("write_file", path="notes.txt",
                                                                              content=PAYLOAD),
                tool_call("read_file", path="[link=https://evil.example]x[/link]\x1b]0;T\x07\ud800"),
                tool_call("done", summary=PAYLOAD)]
    review = tool_call("submit_verdict", verdict="fail", score=float("nan"), findings=[PAYLOAD])
    path = run_with(tmp, Script(producer=producer, verifier=[review]), max_iterations=1)
    (tmp / "m3lab.toml").write_text(f'runs_dir = "{tmp / "runs"}"\n')
    return path


def _cli(run: Path, *args: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """The command's output as a terminal gets it (rich writes colours and links only to a terminal)."""
    from orchestrator.cli import runs

    monkeypatch.setattr(runs, "console", Console(force_terminal=True, width=200))
    result = CliRunner().invoke(app, [*args, "--config", str(run.parent.parent / "m3lab.toml")])
    assert result.exit_code == 0, result.output
    return result.stdout


def _no_controls(text: str) -> None:
    for control in CONTROLS:
        assert control not in text, (control, text)


@pytest.mark.parametrize("command", [["runs", "show", "{id}"], ["runs", "diff", "{id}", "1"], ["runs", "logs", "{id}"],
                                     ["runs", "list"]])
def test_the_cli_prints_sandbox_and_model_text_as_text(run: Path, command: list[str],
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    out = _cli(run, *(part.replace("{id}", run.name) for part in command), monkeypatch=monkeypatch)
    _no_controls(out)
    if command[1] in ("show", "diff"):
        assert "[link=https://evil.example]click[/link]" in out  # shown as written, not made a link
        assert "\\x1b]52;c;cHduZWQ=" in out


def test_a_foreground_runs_progress_prints_them_as_text(run: Path) -> None:
    screen = io.StringIO()
    console = Console(file=screen, force_terminal=True, width=200)
    for line in (run / "events.jsonl").read_text().splitlines():
        text = format_event(json.loads(line), live=True)
        if text:
            console.print(text, highlight=False)
    _no_controls(screen.getvalue())
    assert "[link=https://evil.example]" in screen.getvalue()


def test_report_md_keeps_findings_in_their_block(run: Path) -> None:
    report = (run / "report.md").read_text()
    _no_controls(report)
    html = MarkdownIt("commonmark").enable("table").render(report)
    assert "Injected heading" in html and "<h1>Injected" not in html
    assert "<img" not in html and "<a " not in html and "href=" not in html  # text, not an image or a link


def test_the_viewer_shows_every_page_of_the_run(run: Path) -> None:
    with ViewerServer(run.parent, port=0) as viewer:
        detail = httpx.get(f"{viewer.url}/api/runs/{run.name}")
        page = httpx.get(f"{viewer.url}/api/runs/{run.name}/iterations/1")
    assert detail.status_code == 200 and page.status_code == 200, (detail.text[:300], page.text[:300])
    assert page.json()["iteration"]["verdict"]["review"]["score"] is None  # NaN: no number, but the page shows
    assert any("\ud800" in json.dumps(e) or "\\ud800" in json.dumps(e) for e in detail.json()["events"]["events"])


NOT_TEXT = {
    "sandbox": Script(producer=[
        tool_call("run", command="python3 -c \"import os; os.symlink('/etc', bytes([255, 254]))\""),  # not UTF-8
        tool_call("write_file", path="calc.py", content="import sys\nsys.stdout.write('\\0' * 8)\n"
                                                         "def add(a, b):\n    return a - b\n"),  # NUL bytes out
        tool_call("done", summary="x")]),
    "model": Script(producer=[tool_call("write_file", path="calc.py", content=GOOD), tool_call("done", summary="x")],
                    verifier=[tool_call("submit_verdict", verdict="fail", findings=["nul \x00 and \ud800 lone"])]),
}


@pytest.mark.parametrize("source", sorted(NOT_TEXT))
def test_findings_that_are_not_text_never_end_the_run(tmp_path: Path, source: str,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """A NUL cannot go into a commit message's argv, a lone surrogate (a file name that is not UTF-8, a model's
    `\\ud800` escape) cannot be encoded: either ended the run with an error at its commit or its stuck check."""
    run = run_with(tmp_path, NOT_TEXT[source], max_iterations=1)
    assert json.loads((run / "run.json").read_text())["status"] == "stopped"
    (tmp_path / "m3lab.toml").write_text(f'runs_dir = "{tmp_path / "runs"}"\n')
    for command in (["runs", "show", run.name], ["runs", "diff", run.name, "1"]):
        _no_controls(_cli(run, *command, monkeypatch=monkeypatch))
    assert "\\x00" in (run / "report.md").read_text()


def test_kernel_eval_prints_the_candidates_messages_as_text(capsys: pytest.CaptureFixture[str],
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """`m3lab kernel eval` prints what the candidate's code raised (the candidate is model-written)."""
    from orchestrator.cli.kernel import _print_verdict
    from tasks.kernel.harness.verdict import Verdict

    monkeypatch.setenv("FORCE_COLOR", "1")  # a terminal: rich writes links and colours
    monkeypatch.setenv("COLUMNS", "400")
    _print_verdict(Verdict(errors=[PAYLOAD], failures=[PAYLOAD]), Path("/tmp/eval"))
    out = capsys.readouterr().out
    _no_controls(out)
    assert "[link=https://evil.example]click[/link]" in re.sub(r"\x1b\[[0-9;]*m", "", out)  # rich's own colours
