"""CLI output a person can use in an 80-column terminal, and --json that is always one JSON document."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from orchestrator.cli import app
from tests.orchestrator.support import Script, tool_call
from tests.orchestrator.test_loop import BAD, run_with


@pytest.fixture()
def two_runs(tmp_path: Path) -> Path:
    """Two real (scripted-model) runs in tmp_path/runs and an m3lab.toml pointing at them."""
    for _ in range(2):
        run_with(tmp_path, Script(producer=[tool_call("write_file", path="calc.py", content=BAD),
                                            tool_call("done", summary="x")]), max_iterations=1)
    config = tmp_path / "m3lab.toml"
    config.write_text(f'runs_dir = "{tmp_path / "runs"}"\n')
    return config


def _cli(*args: str, columns: int = 80) -> tuple[int, str]:
    result = CliRunner().invoke(app, list(args), env={"COLUMNS": str(columns)})
    return result.exit_code, result.stdout


@pytest.mark.parametrize("columns", [80, 60])
def test_runs_list_never_cuts_an_id(two_runs: Path, columns: int) -> None:
    code, out = _cli("runs", "list", "--config", str(two_runs), columns=columns)
    assert code == 0
    ids = [r["id"] for r in json.loads(_cli("runs", "list", "--json", "--config", str(two_runs))[1])]
    lines = out.splitlines()
    assert all(len(line) <= columns for line in lines)
    for run_id in ids:
        assert any(run_id in line for line in lines), (run_id, out)


def test_json_errors_are_one_document_with_nonzero_exit(two_runs: Path) -> None:
    for args in (["runs", "show", "no-such-run"], ["runs", "logs", "no-such-run"],
                 ["kernel", "eval", "softmax", "/no/such/candidate.py"]):
        code, out = _cli(*args, "--json", "--config", str(two_runs)) if args[0] == "runs" else _cli(*args, "--json")
        assert code != 0
        assert list(json.loads(out)) == ["error"], out  # exactly one JSON document, nothing else on stdout


def test_runs_logs_json_is_one_array(two_runs: Path) -> None:
    run_id = json.loads(_cli("runs", "list", "--json", "--config", str(two_runs))[1])[0]["id"]
    code, out = _cli("runs", "logs", run_id, "--json", "--config", str(two_runs))
    events = json.loads(out)
    assert code == 0 and isinstance(events, list) and events[-1]["kind"] == "run_finished"


def test_runs_logs_prints_every_line_of_the_file_once(two_runs: Path) -> None:
    """Text: one `format_event` line per event; --tail N: the last N; --json: the objects as written."""
    from orchestrator.events import format_event

    run_id = json.loads(_cli("runs", "list", "--json", "--config", str(two_runs))[1])[0]["id"]
    lines = (two_runs.parent / "runs" / run_id / "events.jsonl").read_text().splitlines()
    code, out = _cli("runs", "logs", run_id, "--config", str(two_runs))
    assert code == 0 and out.splitlines() == [format_event(json.loads(line)) for line in lines]
    code, out = _cli("runs", "logs", run_id, "--tail", "3", "--config", str(two_runs))
    assert code == 0 and out.splitlines() == [format_event(json.loads(line)) for line in lines[-3:]]
    code, out = _cli("runs", "logs", run_id, "--json", "--config", str(two_runs))
    assert [json.dumps(e) for e in json.loads(out)] == lines


def test_runs_logs_follow_prints_new_events_until_the_run_ends(two_runs: Path) -> None:
    """--follow --json: the events as they are appended (JSON Lines), ending once the run is no longer running."""
    import os
    import threading
    import time

    from orchestrator import events
    from orchestrator.rundir import RunDir

    run_id = json.loads(_cli("runs", "list", "--json", "--config", str(two_runs))[1])[0]["id"]
    run = RunDir(two_runs.parent / "runs" / run_id)
    run.update_meta(status="running", pid=os.getpid())  # a live process: the follower keeps waiting
    before = len((run.path / "events.jsonl").read_text().splitlines())

    def later() -> None:
        time.sleep(1.0)
        run.events.add(events.steer(2, 0, "appended while followed"))
        run.close()
        time.sleep(1.0)
        run.update_meta(status="stopped", pid=None)

    writer = threading.Thread(target=later)
    writer.start()
    code, out = _cli("runs", "logs", run_id, "--follow", "--json", "--config", str(two_runs))
    writer.join()
    followed = [json.loads(line) for line in out.splitlines()]
    assert code == 0 and len(followed) == before + 1 and followed[-1]["text"] == "appended while followed"


def test_runs_show_reads_the_iteration_records(two_runs: Path) -> None:
    run_id = json.loads(_cli("runs", "list", "--json", "--config", str(two_runs))[1])[0]["id"]
    code, out = _cli("runs", "show", run_id, "--json", "--config", str(two_runs))
    detail = json.loads(out)["iterations_detail"]
    assert code == 0 and [(d["iteration"], d["verdict"], d["decision"]) for d in detail] == [(1, "fail", "stop")]
    assert detail[0]["findings"] and detail[0]["score"] == 0.0


def test_console_script_usage_error_under_json_is_one_document(tmp_path: Path) -> None:
    """Through the real entry point (`main`), where click's own usage errors are printed."""
    import os
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-c", "from orchestrator.cli import main; main()", "runs", "show",
                           "--json"], cwd=tmp_path, capture_output=True, text=True, env={**os.environ})
    assert proc.returncode == 2 and json.loads(proc.stdout) == {"error": "Missing argument 'run_id'."}
