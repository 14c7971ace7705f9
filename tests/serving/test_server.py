"""Server lifecycle without a model: busy port, dead endpoint, start-up failures, stop of an unknown server.

The start-up tests use a real child process with a test-double command (a Python one-liner standing in for vLLM);
the real vLLM paths are in test_embedded_server.py.
"""
from __future__ import annotations

import socket
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from sandboxes.engine import pid_alive
from serving.client import EndpointUnavailable, ModelEndpoint, make_chat_model
from serving.config import ServingConfig
from serving.launch import LaunchPlan
from serving.probe import served_models
from serving.server import (
    PortInUse,
    ServerNotRunning,
    ServerStartError,
    read_state,
    start_server,
    state_path,
    stop_server,
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _plan(port: int, argv: list[str], model: str = "m") -> LaunchPlan:
    return LaunchPlan(argv=tuple(argv), env={}, model="org/" + model, served_model_name=model, host="127.0.0.1", port=port,
                      device="cpu", tensor_parallel=1, expert_parallel=1)


@pytest.fixture()
def config(tmp_path: Path) -> ServingConfig:
    return ServingConfig(vllm_venv=tmp_path / "venv", models_dir=tmp_path / "models", state_dir=tmp_path / "state")


def test_busy_port_with_another_program(config):
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        with pytest.raises(PortInUse, match=rf"port {port} .* another program.*--port"):
            start_server(_plan(port, [sys.executable, "-c", "pass"]), config, profile="t", timeout_s=5)
    assert read_state(config, port) is None


def test_dead_endpoint_gives_a_clear_error():
    base = f"http://127.0.0.1:{_free_port()}/v1"
    with pytest.raises(EndpointUnavailable, match="not answering.*m3lab serve --embedded"):
        served_models(base)
    with pytest.raises(EndpointUnavailable, match="not answering"):
        make_chat_model(ModelEndpoint(base_url=base))


def test_status_of_a_dead_endpoint_exits_1():
    from orchestrator.cli import app

    result = CliRunner().invoke(app, ["serve", "status", "--port", str(_free_port()), "--json"])
    assert result.exit_code == 1 and '"up": false' in result.stdout and "not answering" in result.stdout


def test_process_exiting_during_startup_shows_the_log_tail(config):
    argv = [sys.executable, "-c", "import sys; print('engine init failed: no memory'); sys.exit(3)"]
    port = _free_port()
    with pytest.raises(ServerStartError, match="exited during start-up(.|\n)*engine init failed: no memory"):
        start_server(_plan(port, argv), config, profile="t", timeout_s=30)
    assert not state_path(config, port).exists()


def test_readiness_timeout_stops_the_process(config):
    argv = [sys.executable, "-c", "import time; print('loading weights...', flush=True); time.sleep(60)"]
    port = _free_port()
    with pytest.raises(ServerStartError, match="did not become ready within 2 s(.|\n)*loading weights") as info:
        start_server(_plan(port, argv), config, profile="t", timeout_s=2)
    pid = int(str(info.value).split("(pid ")[1].split(")")[0])
    assert not pid_alive(pid) and not state_path(config, port).exists()


def test_missing_install_is_reported(config):
    plan = _plan(_free_port(), [str(config.vllm_python), "-m", "vllm"])
    with pytest.raises(ServerStartError, match="scripts/setup/vllm.sh"):
        start_server(plan, config, profile="t", timeout_s=2)


def test_stop_unknown_server(config):
    with pytest.raises(ServerNotRunning, match="no m3lab server known"):
        stop_server(config, _free_port())


def test_missing_model_folder_is_reported(config, tmp_path):
    config.vllm_python.parent.mkdir(parents=True)
    config.vllm_python.write_text("")  # stands in for an installed venv; the model check comes first
    plan = _plan(_free_port(), [str(config.vllm_python), "-m", "vllm"])
    plan = LaunchPlan(**{**plan.__dict__, "model": str(tmp_path / "no-model")})
    with pytest.raises(ServerStartError, match="model folder .*no-model is missing"):
        start_server(plan, config, profile="t", timeout_s=2)


def test_missing_service_fails_in_ci_and_skips_elsewhere(monkeypatch):
    from tests.fixtures.vllm_server import service_missing

    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI=true"):
        service_missing("no vLLM venv")
    monkeypatch.delenv("CI")
    with pytest.raises(pytest.skip.Exception):
        service_missing("no vLLM venv")


# A stand-in for vLLM: lists one model on /v1/models, answers completions, and (like vLLM's engine core) keeps
# a child process in its group, so a stop must take the whole group down.
FAKE_SERVER = r"""
import json, subprocess, sys
from http.server import BaseHTTPRequestHandler, HTTPServer
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
print("child", child.pid, flush=True)
class H(BaseHTTPRequestHandler):
    def _send(self, body):
        data = json.dumps(body).encode()
        self.send_response(200); self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data))); self.end_headers(); self.wfile.write(data)
    def do_GET(self):
        self._send({"data": [{"id": "fake-model", "max_model_len": 1234}]})
    def do_POST(self):
        self.rfile.read(int(self.headers["Content-Length"]))
        self._send({"choices": [{"text": "x"}]})
    def log_message(self, *args):
        pass
HTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
"""


def test_cli_status_and_stop_of_a_started_server(config, tmp_path):
    from orchestrator.cli import app

    port = _free_port()
    result = start_server(_plan(port, [sys.executable, "-c", FAKE_SERVER, str(port)], model="fake-model"),
                          config, profile="fake", timeout_s=30)
    assert not result.reused and result.state is not None
    child = int(Path(result.state.log_path).read_text().split("child ")[1].split()[0])
    cfg = tmp_path / "m3lab.toml"
    cfg.write_text(f'[serving]\nstate_dir = "{config.state_dir}"\nport = {port}\n')
    status = CliRunner().invoke(app, ["serve", "status", "--json", "--config", str(cfg)])
    assert status.exit_code == 0, status.output
    assert '"id": "fake-model"' in status.stdout and '"max_model_len": 1234' in status.stdout
    again = start_server(_plan(port, [sys.executable, "-c", "pass"], model="fake-model"), config, "fake", 5)
    assert again.reused and again.state.pid == result.state.pid
    stop = CliRunner().invoke(app, ["serve", "stop", "--config", str(cfg)])
    assert stop.exit_code == 0 and "stopped fake-model" in stop.stdout
    assert not pid_alive(result.state.pid) and read_state(config, port) is None
    deadline = time.monotonic() + 10  # the SIGKILLed child may take a moment to go on a loaded machine
    while pid_alive(child) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not pid_alive(child)


def test_two_simultaneous_starts_share_one_server(config):
    from concurrent.futures import ThreadPoolExecutor

    port = _free_port()
    plan = _plan(port, [sys.executable, "-c", FAKE_SERVER, str(port)], model="fake-model")
    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(lambda _: start_server(plan, config, "fake", 30), range(2)))
    try:
        assert sorted(r.reused for r in results) == [False, True]
        assert results[0].state.pid == results[1].state.pid
    finally:
        stop_server(config, port)
