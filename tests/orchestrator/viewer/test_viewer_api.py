"""The viewer's HTTP API against a real server over run directories built to the contract."""
from __future__ import annotations

import json
import socket
import threading
import time
from pathlib import Path

import httpx
import pytest

from orchestrator import control
from orchestrator.viewer.server import PortBusy, ViewerServer

from .builder import RunBuilder, paper_artifacts


def test_runs_list_has_every_run(viewer: ViewerServer, sample_runs: dict[str, RunBuilder]) -> None:
    listed = httpx.get(f"{viewer.url}/api/runs").json()["runs"]
    assert [r["id"] for r in listed] == ["20261126-paper-c3", "20261126-kernel-b2", "20261126-code-a1"]  # newest first
    rows = {r["id"]: r for r in listed}
    kernel = rows["20261126-kernel-b2"]
    assert (kernel["kind"], kernel["status"], kernel["stop_reason"], kernel["iteration"]) == ("kernel", "stopped", "budget", 3)
    assert kernel["best_score"] == 1.4  # iteration 2 (1.6) failed review, so it is not the best
    assert kernel["budget"]["used"]["tokens"] == 3 * 1800


def test_run_detail_timeline_events_and_task_views(viewer: ViewerServer, sample_runs: dict[str, RunBuilder]) -> None:
    detail = httpx.get(f"{viewer.url}/api/runs/20261126-code-a1").json()
    assert [(r["iteration"], r["verdict"], r["action"]) for r in detail["timeline"]] == [(1, "fail", "iterate"), (2, "pass", "accept")]
    assert detail["events"]["events"][-1]["kind"] == "run_finished"
    assert detail["task"] is None
    kernel = httpx.get(f"{viewer.url}/api/runs/20261126-kernel-b2").json()["task"]
    assert kernel["plot"] == "artifacts/kernel/best_speedup.png"
    cheats = kernel["candidates"]["columns"].index("cheats")
    assert [row[cheats] for row in kernel["candidates"]["rows"]] == ["", "timing_hijack", ""]
    assert "best_kernel_marker" in kernel["best"][0]["code"]
    paper = httpx.get(f"{viewer.url}/api/runs/20261126-paper-c3").json()["task"]
    assert paper["rubric"]["children"][0]["children"][0]["score"] == 1.0
    pair = next(p for p in paper["pairs"] if p["name"] == "tables/table_1")
    assert pair["paper"]["table"]["rows"][1] == ["ours", "91.2"]
    assert pair["reproduced"]["table"]["rows"][1] == ["ours", "88.7"]
    assert [o["path"] for o in pair["other"]] == ["artifacts/paper/tables/table_1.deviation.csv"]
    assert {p["name"] for p in paper["pairs"]} == {"tables/table_1", "figures/figure_1", "figures/figure_2"}


def test_timeline_pages_backwards(viewer: ViewerServer, sample_runs: dict[str, RunBuilder]) -> None:
    url = f"{viewer.url}/api/runs/20261126-kernel-b2"
    assert httpx.get(url).json()["iterations_total"] == 3
    page = httpx.get(f"{url}/timeline?before=3&limit=1").json()
    assert [r["iteration"] for r in page["timeline"]] == [2] and page["remaining"] == 1
    assert httpx.get(f"{url}/timeline?before=-1").status_code == 400


def test_iteration_has_diff_verdict_events_and_logs(viewer: ViewerServer, sample_runs: dict[str, RunBuilder]) -> None:
    d = httpx.get(f"{viewer.url}/api/runs/20261126-code-a1/iterations/2").json()
    assert "-    return 1" in d["diff"]["patch"] and "+    return 2" in d["diff"]["patch"]
    assert d["diff"]["message"] == "iteration 2: pass"
    assert d["iteration"]["verdict"]["verdict"] == "pass"
    assert {e["iteration"] for e in d["events"]} == {2}
    assert "exec" in [e["kind"] for e in d["events"]]
    assert d["logs"] == ["logs/0002-check.log", "logs/check-0002-crash.txt"]
    log = httpx.get(f"{viewer.url}/api/runs/20261126-code-a1/files/logs/0002-check.log")
    assert "full check log of iteration 2" in log.text
    assert httpx.get(f"{viewer.url}/api/runs/20261126-code-a1/iterations/9").status_code == 404
    k = httpx.get(f"{viewer.url}/api/runs/20261126-kernel-b2/iterations/2").json()
    assert k["artifacts"] == ["artifacts/kernel/sources/0002.py", "artifacts/kernel/verdicts/0002.json"]


def test_files_cannot_escape_the_run(viewer: ViewerServer, sample_runs: dict[str, RunBuilder], runs_dir: Path) -> None:
    (runs_dir.parent / "secret.txt").write_text("TOP-SECRET-CONTENT")
    for path in ("..%2F..%2Fsecret.txt", "%2E%2E/%2E%2E/secret.txt"):
        r = httpx.get(f"{viewer.url}/api/runs/20261126-code-a1/files/{path}")
        assert r.status_code in (400, 404) and "TOP-SECRET-CONTENT" not in r.text
    assert httpx.get(f"{viewer.url}/api/runs/..%2F/events").status_code == 404


def test_steer_and_stop_use_the_control_files(viewer: ViewerServer, sample_runs: dict[str, RunBuilder]) -> None:
    run_dir = sample_runs["paper"].dir
    url = f"{viewer.url}/api/runs/{run_dir.name}"
    assert httpx.post(f"{url}/steer", json={"text": "use the paper's learning rate"}).json() == {"ok": True}
    assert control.read_steers(run_dir) == ["use the paper's learning rate"]
    assert httpx.post(f"{url}/steer", json={"text": "  "}).status_code == 400
    # A cross-site form post (not JSON) is refused.
    assert httpx.post(f"{url}/stop", data={"reason": "user"}).status_code == 400
    assert control.stop_requested(run_dir) is None
    assert httpx.post(f"{url}/stop", json={}).json()["stop_requested"] == "user"
    assert control.stop_requested(run_dir) == "user"


def test_loopback_viewer_refuses_foreign_host_names(viewer: ViewerServer, sample_runs: dict[str, RunBuilder]) -> None:
    # DNS rebinding: a page of evil.example resolved to 127.0.0.1 sends its own name as Host.
    url = f"{viewer.url}/api/runs/{sample_runs['paper'].dir.name}/stop"
    assert httpx.post(url, json={}, headers={"Host": "evil.example"}).status_code == 400
    assert control.stop_requested(sample_runs["paper"].dir) is None
    assert httpx.get(f"http://localhost:{viewer.port}/api/runs").status_code == 200


def test_stream_follows_appended_events(viewer: ViewerServer, sample_runs: dict[str, RunBuilder]) -> None:
    run = sample_runs["paper"]
    end = httpx.get(f"{viewer.url}/api/runs/{run.dir.name}").json()["events"]["end"]
    got: list[dict] = []

    def listen() -> None:
        with httpx.stream("GET", f"{viewer.url}/api/runs/{run.dir.name}/stream?offset={end}", timeout=10) as r:
            kind = None
            for line in r.iter_lines():
                if line.startswith("event: "):
                    kind = line[7:]
                elif line.startswith("data: ") and kind == "events":
                    got.extend(json.loads(line[6:])["events"])
                    if any(e["kind"] == "steer" for e in got):
                        return

    t = threading.Thread(target=listen, daemon=True)
    t.start()
    time.sleep(0.5)
    run.event("steer", text="live event")
    t.join(timeout=10)
    assert [e["text"] for e in got if e["kind"] == "steer"] == ["live event"]


def test_busy_port_gives_a_clear_error(runs_dir: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        with pytest.raises(PortBusy, match=f"port {port} .* in use; choose another with --port"):
            ViewerServer(runs_dir, port=port)


def test_listening_socket_is_loopback_and_nodelay(viewer: ViewerServer) -> None:
    assert viewer.sock.getsockname()[0] == "127.0.0.1"
    assert viewer.sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0  # no 40 ms delayed-ACK stalls


def test_unknown_run_is_404(viewer: ViewerServer) -> None:
    r = httpx.get(f"{viewer.url}/api/runs/nope")
    assert r.status_code == 404 and "nope" in r.json()["error"]
    assert httpx.get(f"{viewer.url}/api/runs").json()["runs"] == []


def test_benchmark_run_opens(tmp_path: Path) -> None:
    """The benchmark's synthetic run follows the contract the viewer reads (smoke test, not timed)."""
    from benchmarks.viewer_bench import build_run

    build_run(tmp_path, iterations=20, events=400)
    with ViewerServer(tmp_path, port=0) as server:
        detail = httpx.get(f"{server.url}/api/runs/bench-run").json()
        assert detail["iterations_total"] == 20 and len(detail["events"]["events"]) == 200
        it = httpx.get(f"{server.url}/api/runs/bench-run/iterations/7").json()
        assert it["diff"]["message"] == "iteration 7: pass"
        assert {e["iteration"] for e in it["events"]} == {7} and len(it["events"]) == 20


def test_a_reproduced_table_that_is_no_csv_leaves_the_run_page_working(runs_dir: Path) -> None:
    """The paper task rewrites the re-run's table with pandas, which keeps a 200 KB cell; Python's csv module
    refuses it (a 500 for the whole run page before)."""
    run = RunBuilder(runs_dir, "20261126-paper-big", "paper", "big cell")
    paper_artifacts(run)
    (run.dir / "artifacts" / "paper" / "tables" / "table_1.reproduced.csv").write_text(f"a,b\n{'x' * 200_000},1\n")
    with ViewerServer(runs_dir, port=0) as viewer:
        response = httpx.get(f"{viewer.url}/api/runs/{run.dir.name}")
    assert response.status_code == 200, response.text[:300]
    pair = next(p for p in response.json()["task"]["pairs"] if p["name"] == "tables/table_1")
    assert pair["reproduced"]["table"]["columns"] == ["unreadable"]
