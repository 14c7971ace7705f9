"""Model client for any OpenAI-compatible chat-completions endpoint (vLLM, MiniMax's API).

One place knows how to talk to a model server: build a LangChain chat model for an endpoint, ask the server
what it serves and how long a context it takes, and call it with retries so that a dead endpoint becomes one
named exception (`EndpointUnavailable`) the run spine turns into a paused run.
"""
from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import httpx

DEFAULT_BASE_URL = "http://127.0.0.1:8000/v1"


class EndpointUnavailable(RuntimeError):
    """The model endpoint did not answer (connection refused, timeouts, 5xx) after all retries."""


@dataclass(frozen=True)
class ModelEndpoint:
    """Where a role's model lives and how to call it."""

    base_url: str = DEFAULT_BASE_URL
    """OpenAI-compatible base URL, ending in /v1."""
    model: str | None = None
    """Served model name; None = the single model the server lists."""
    api_key: str = "EMPTY"
    """Bearer token (vLLM ignores it unless started with --api-key)."""
    temperature: float = 0.2
    """Sampling temperature."""
    max_tokens: int = 16384
    """Completion budget of one call (reasoning included); capped at a quarter of a small server's context."""
    timeout_s: float = 600.0
    """Time one request may take before it counts as a failure."""
    retry_for_s: float = 60.0
    """How long connection errors / 5xx are retried (exponential backoff) before the endpoint is declared down."""
    vision: bool = False
    """The model accepts images (M3 does; the embedded SmolLM2 does not)."""
    thinking_toggle: bool = True
    """Send chat_template_kwargs.enable_thinking (templates that do not know it ignore it)."""
    frequency_penalty: float = 0.0
    """OpenAI's penalty on tokens already generated (0 = off): a tiny model otherwise loops on one sentence."""
    stop: tuple[str, ...] = ()
    """Stop sequences, kept in the reply (vLLM's include_stop_str_in_output): a small model's reply can end at
    its first complete action (a closing code fence) instead of rambling on to the completion limit."""
    max_concurrency: int = 0
    """Requests sent to the endpoint at once (0 = no limit): by this process, or, with a PostgreSQL run store, by
    every process that shares the store (a whole cluster; orchestrator/store/slots.py). Many runs sharing one
    server queue here instead of piling onto its waiting queue."""
    overload_retry_for_s: float = 1800.0
    """How long 429 (overloaded) answers are retried: the server is alive, only busy."""

    def describe(self) -> dict[str, Any]:
        """JSON-able description without the secret."""
        return {"base_url": self.base_url, "model": self.model, "vision": self.vision}


def _headers(endpoint: ModelEndpoint) -> dict[str, str]:
    return {"Authorization": f"Bearer {endpoint.api_key}"}


def list_models(endpoint: ModelEndpoint, timeout_s: float = 5.0) -> list[dict[str, Any]]:
    """The server's /v1/models entries; raises EndpointUnavailable when it does not answer."""
    url = endpoint.base_url.rstrip("/") + "/models"
    try:
        response = httpx.get(url, headers=_headers(endpoint), timeout=timeout_s)
        response.raise_for_status()
    except httpx.HTTPError as exc:
        raise EndpointUnavailable(f"model endpoint {endpoint.base_url} is not answering ({exc}); "
                                  "start it with `m3lab serve --embedded` or set M3LAB_BASE_URL") from exc
    return list(response.json().get("data", []))


@lru_cache(maxsize=32)
def _resolved_model_and_length(endpoint: ModelEndpoint) -> tuple[str, int | None]:
    models = list_models(endpoint)
    if endpoint.model is not None:
        entry = next((m for m in models if m.get("id") == endpoint.model), None)
        if entry is None and models:
            # A hosted API may not list every model it serves: trust the configured name.
            return endpoint.model, None
        return endpoint.model, (entry or {}).get("max_model_len")
    if len(models) != 1:
        names = [m.get("id") for m in models]
        raise EndpointUnavailable(f"{endpoint.base_url} serves {names}: set the model name (M3LAB_MODEL or m3lab.toml)")
    return str(models[0]["id"]), models[0].get("max_model_len")


def resolve_model(endpoint: ModelEndpoint) -> str:
    """The model name to send: the configured one, else the single model the server lists."""
    return _resolved_model_and_length(endpoint)[0]


def context_length(endpoint: ModelEndpoint) -> int | None:
    """The server's maximum model length in tokens (vLLM reports max_model_len), None if unknown."""
    return _resolved_model_and_length(endpoint)[1]


def make_chat_model(endpoint: ModelEndpoint, thinking: bool = False, max_tokens: int | None = None) -> Any:
    """A LangChain ChatOpenAI on the chat-completions API for this endpoint.

    Retries are ours (`invoke_with_retry`), so the client's own are off: one policy, one place."""
    from langchain_openai import ChatOpenAI

    extra_body: dict[str, Any] = {}
    if endpoint.thinking_toggle:
        extra_body["chat_template_kwargs"] = {"enable_thinking": thinking}
    if endpoint.stop:
        extra_body["include_stop_str_in_output"] = True
    return ChatOpenAI(
        base_url=endpoint.base_url,
        api_key=endpoint.api_key,
        model=resolve_model(endpoint),
        temperature=endpoint.temperature,
        max_tokens=max_tokens or endpoint.max_tokens,
        timeout=endpoint.timeout_s,
        max_retries=0,
        stop=list(endpoint.stop) or None,
        frequency_penalty=endpoint.frequency_penalty or None,
        use_responses_api=False,
        extra_body=extra_body or None,
    )


_slots: dict[tuple[str, int], threading.BoundedSemaphore] = {}
_slots_guard = threading.Lock()


def endpoint_slot(endpoint: ModelEndpoint) -> AbstractContextManager[Any]:
    """Hold one of the endpoint's `max_concurrency` request slots (shared by every run of this process)."""
    if endpoint.max_concurrency <= 0:
        return nullcontext()
    key = (endpoint.base_url, endpoint.max_concurrency)
    with _slots_guard:
        slot = _slots.setdefault(key, threading.BoundedSemaphore(endpoint.max_concurrency))
    return slot


def _overloaded(exc: BaseException) -> float | None:
    """Seconds to wait when the server said it is overloaded (429, or 503 with Retry-After), else None."""
    import openai

    if not isinstance(exc, openai.APIStatusError) or exc.status_code not in (429, 503):
        return None
    raw = exc.response.headers.get("retry-after") if exc.response is not None else None
    if exc.status_code == 503 and raw is None:
        return None  # a plain 503 is a server error: the normal retry window applies
    try:
        return max(0.0, float(raw)) if raw is not None else 0.0
    except ValueError:
        return 0.0  # an HTTP-date Retry-After: fall back to our own back-off


def _is_transient(exc: BaseException) -> bool:
    """Connection problems, timeouts and server errors are worth retrying; 4xx are not."""
    import openai

    if isinstance(exc, (openai.APIConnectionError, openai.APITimeoutError, httpx.TransportError)):
        return True
    if isinstance(exc, openai.APIStatusError):
        return exc.status_code >= 500 or exc.status_code == 429
    return False


def invoke_with_retry(build: Callable[[], Any], messages: Sequence[Any], retry_for_s: float,
                      tools: Sequence[Any] = (), slot: AbstractContextManager[Any] | None = None,
                      overload_retry_for_s: float | None = None) -> Any:
    """Build the chat model (`build` may ask the server which model it serves) and call it (optionally with
    tools bound); return its AIMessage. Transient failures of either step are retried with exponential backoff
    for `retry_for_s` seconds, then raised as EndpointUnavailable; overload answers (429) are retried for
    `overload_retry_for_s` (honouring Retry-After); other errors propagate. `slot` (endpoint_slot) is held
    during each request, not during the waits."""
    started = time.monotonic()
    deadline = started + retry_for_s
    delay = 1.0
    while True:
        try:
            with slot or nullcontext():
                model = build()
                runnable = model.bind_tools(list(tools)) if tools else model
                return runnable.invoke(list(messages))
        except Exception as exc:  # noqa: BLE001 - classified right below
            if not (_is_transient(exc) or isinstance(exc, EndpointUnavailable)):
                raise
            wait = _overloaded(exc)
            if wait is not None and overload_retry_for_s is not None:
                if time.monotonic() + max(wait, delay) <= started + overload_retry_for_s:
                    time.sleep(max(wait, delay))
                    delay = min(delay * 2, 30.0)
                    continue
            if time.monotonic() + delay > deadline:
                if isinstance(exc, EndpointUnavailable):
                    raise
                raise EndpointUnavailable(f"model endpoint failed for {retry_for_s:.0f} s: {exc}") from exc
            time.sleep(delay)
            delay = min(delay * 2, 30.0)
