"""Many runs on one endpoint, against a real HTTP server speaking the OpenAI chat API (a small threaded server
in this process): the client-side concurrency limit holds, 429 answers are waited out (Retry-After honoured)
instead of pausing the run, and the queue depth is read from a Prometheus /metrics page as vLLM exports it."""
from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from langchain_core.messages import HumanMessage

from serving.client import ModelEndpoint, endpoint_slot, invoke_with_retry, make_chat_model
from serving.probe import queue_depth

METRICS = """# HELP vllm:num_requests_waiting Number of requests waiting to be processed.
# TYPE vllm:num_requests_waiting gauge
vllm:num_requests_waiting{engine="0",model_name="m3"} 7.0
# HELP vllm:num_requests_running Number of requests in model execution batches.
# TYPE vllm:num_requests_running gauge
vllm:num_requests_running{engine="0",model_name="m3"} 3.0
"""


class Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.lock = threading.Lock()
        self.in_flight = self.max_in_flight = self.calls = 0
        self.reject_first = 0  # answer this many chat requests with 429 + Retry-After


class Handler(BaseHTTPRequestHandler):
    server: Server

    def log_message(self, *args: object) -> None:
        pass

    def _send(self, code: int, body: bytes, ctype: str = "application/json", extra: dict | None = None) -> None:
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for k, v in (extra or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        if self.path == "/v1/models":
            self._send(200, json.dumps({"data": [{"id": "m3", "max_model_len": 4096}]}).encode())
        elif self.path == "/metrics":
            self._send(200, METRICS.encode(), "text/plain; version=0.0.4")
        else:
            self._send(404, b"{}")

    def do_POST(self) -> None:  # noqa: N802
        self.rfile.read(int(self.headers["Content-Length"]))
        s = self.server
        with s.lock:
            s.calls += 1
            if s.reject_first > 0:
                s.reject_first -= 1
                reject = True
            else:
                reject = False
                s.in_flight += 1
                s.max_in_flight = max(s.max_in_flight, s.in_flight)
        if reject:
            return self._send(429, b'{"error": {"message": "overloaded"}}', extra={"Retry-After": "1"})
        time.sleep(0.3)
        with s.lock:
            s.in_flight -= 1
        reply = {"id": "x", "object": "chat.completion", "created": 0, "model": "m3",
                 "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"}, "finish_reason": "stop"}],
                 "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4}}
        self._send(200, json.dumps(reply).encode())


@pytest.fixture()
def server() -> Iterator[Server]:
    srv = Server()
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield srv
    srv.shutdown()


def _endpoint(srv: Server, **kw: object) -> ModelEndpoint:
    return ModelEndpoint(base_url=f"http://127.0.0.1:{srv.server_address[1]}/v1", retry_for_s=0.5, **kw)


def _call(endpoint: ModelEndpoint) -> str:
    reply = invoke_with_retry(lambda: make_chat_model(endpoint), [HumanMessage("hi")], endpoint.retry_for_s,
                              slot=endpoint_slot(endpoint), overload_retry_for_s=endpoint.overload_retry_for_s)
    return str(reply.content)


def test_concurrency_limit_per_endpoint(server: Server) -> None:
    endpoint = _endpoint(server, max_concurrency=2)
    results: list[str] = []
    threads = [threading.Thread(target=lambda: results.append(_call(endpoint))) for _ in range(6)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    assert results == ["ok"] * 6 and server.max_in_flight == 2


def test_without_a_limit_requests_overlap(server: Server) -> None:
    endpoint = _endpoint(server)
    threads = [threading.Thread(target=_call, args=(endpoint,)) for _ in range(4)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    assert server.max_in_flight > 2  # the control: the limit above is what held requests back


def test_429_is_waited_out_beyond_the_outage_window(server: Server) -> None:
    server.reject_first = 3  # ~1 + 2 + 4 s of back-off: longer than retry_for_s=0.5
    assert _call(_endpoint(server, overload_retry_for_s=60)) == "ok"
    assert server.calls == 4


def test_429_for_too_long_pauses_the_run(server: Server) -> None:
    from serving.client import EndpointUnavailable

    server.reject_first = 100
    with pytest.raises(EndpointUnavailable):
        _call(_endpoint(server, overload_retry_for_s=2))


def test_queue_depth_from_vllm_metrics(server: Server) -> None:
    assert queue_depth(_endpoint(server).base_url) == {"waiting": 7.0, "running": 3.0}
    assert queue_depth("http://127.0.0.1:9/v1") is None


@pytest.mark.vllm
def test_queue_depth_of_the_real_vllm_server(embedded_endpoint: tuple[str, str]) -> None:
    base_url, _ = embedded_endpoint
    depth = queue_depth(base_url)
    assert depth is not None and depth["waiting"] >= 0 and depth["running"] >= 0
