"""Ask a running OpenAI-compatible server what it serves and how fast it answers one token."""
from __future__ import annotations

import socket
import time
from dataclasses import dataclass

import httpx

from serving.client import EndpointUnavailable, ModelEndpoint, list_models


@dataclass(frozen=True)
class ServedModel:
    id: str
    max_model_len: int | None


@dataclass(frozen=True)
class EndpointInfo:
    """What `m3lab serve status` reports about one endpoint."""

    base_url: str
    models: tuple[ServedModel, ...]
    latency_s: float | None
    """Wall time of a one-token completion of the first model; None when it was not measured."""


def port_open(host: str, port: int, timeout_s: float = 1.0) -> bool:
    """True when something accepts TCP connections on host:port."""
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return True
    except OSError:
        return False


def served_models(base_url: str, timeout_s: float = 5.0) -> tuple[ServedModel, ...]:
    """The models a server lists; raises `EndpointUnavailable` (with a hint) when it does not answer."""
    entries = list_models(ModelEndpoint(base_url=base_url), timeout_s=timeout_s)
    return tuple(ServedModel(str(m.get("id")), m.get("max_model_len")) for m in entries)


def one_token_latency(base_url: str, model: str, timeout_s: float = 60.0) -> float:
    """Seconds for a one-token completion: the round trip a client pays before any real work."""
    started = time.perf_counter()
    try:
        response = httpx.post(f"{base_url.rstrip('/')}/completions", timeout=timeout_s,
                              json={"model": model, "prompt": "Hello", "max_tokens": 1, "temperature": 0})
        response.raise_for_status()
    except httpx.HTTPError as exc:
        raise EndpointUnavailable(f"{base_url} did not answer a one-token completion for {model!r}: {exc}") from exc
    return time.perf_counter() - started


def endpoint_info(base_url: str, measure_latency: bool = True) -> EndpointInfo:
    models = served_models(base_url)
    latency = one_token_latency(base_url, models[0].id) if measure_latency and models else None
    return EndpointInfo(base_url=base_url, models=models, latency_s=latency)


def queue_depth(base_url: str, timeout_s: float = 5.0) -> dict[str, float] | None:
    """Requests waiting and running on a vLLM server, summed over its models (from its Prometheus /metrics:
    `vllm:num_requests_waiting`, `vllm:num_requests_running`); None when the server exports no such metrics
    (a hosted API, another server)."""
    from prometheus_client.parser import text_string_to_metric_families

    root = base_url.rstrip("/").removesuffix("/v1")
    try:
        response = httpx.get(f"{root}/metrics", timeout=timeout_s)
        response.raise_for_status()
    except httpx.HTTPError:
        return None
    wanted = {"vllm:num_requests_waiting": "waiting", "vllm:num_requests_running": "running"}
    found: dict[str, float] = {}
    try:
        for family in text_string_to_metric_families(response.text):
            if family.name in wanted:
                found[wanted[family.name]] = sum(sample.value for sample in family.samples)
    except ValueError:  # not a Prometheus page (a server that answers every path with something else)
        return None
    return found or None
