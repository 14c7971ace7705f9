"""Per-process resources of a run that never go into graph state: the run directory, the task, the settings,
the producer's warm sandbox, and how chat models are made (real endpoints, or scripted ones in tests)."""
from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from langchain_core.messages import AIMessage, BaseMessage

from orchestrator.agents.context import estimate_tokens, pack
from orchestrator.config import Settings
from orchestrator.rundir import RunDir
from sandboxes.base import Sandbox, SandboxSpec
from serving.client import (
    EndpointUnavailable,
    ModelEndpoint,
    context_length,
    endpoint_slot,
    invoke_with_retry,
    make_chat_model,
)
from tasks.base import Task

DEFAULT_CONTEXT_TOKENS = 32_768


class ModelFactory(Protocol):
    def __call__(self, role: str, endpoint: ModelEndpoint, thinking: bool, max_tokens: int | None = None) -> Any: ...


def endpoint_models(role: str, endpoint: ModelEndpoint, thinking: bool, max_tokens: int | None = None) -> Any:
    """The real factory: a ChatOpenAI on the role's endpoint."""
    return make_chat_model(endpoint, thinking=thinking, max_tokens=max_tokens)


@dataclass(frozen=True)
class Usage:
    prompt_tokens: int
    completion_tokens: int
    reasoning_tokens: int
    estimated: bool

    @property
    def total(self) -> int:
        return self.prompt_tokens + self.completion_tokens


def usage_of(reply: AIMessage, prompt: Sequence[BaseMessage]) -> Usage:
    """Token use reported by the server; estimated from text when a server (or a test double) reports none."""
    meta = getattr(reply, "usage_metadata", None)
    if meta:
        details = meta.get("output_token_details") or {}
        return Usage(int(meta.get("input_tokens", 0)), int(meta.get("output_tokens", 0)),
                     int(details.get("reasoning", 0) or 0), False)
    return Usage(estimate_tokens(prompt), estimate_tokens([reply]), 0, True)


@dataclass
class Runtime:
    run: RunDir
    task: Task
    settings: Settings
    models: ModelFactory = endpoint_models
    open_sandbox: Callable[[SandboxSpec, str], Sandbox] | None = None
    offload: Callable[..., Any] | None = None
    """[issue 15] Runs a task's heavy work elsewhere (kernel evaluations as Ray tasks); None = in this process."""
    _sandbox: Sandbox | None = field(default=None, repr=False)

    def endpoint(self, role: str, extra_temperature: float = 0.0) -> ModelEndpoint:
        """The role's endpoint; `extra_temperature` raises its sampling temperature (at most to 1.0) to get a
        different reply from a model that repeats itself."""
        endpoint = self.settings.verifier if role in ("verifier", "planner") else self.settings.producer
        if extra_temperature > 0:
            endpoint = replace(endpoint, temperature=round(min(1.0, endpoint.temperature + extra_temperature), 3))
        return endpoint

    def token_limits(self, role: str) -> tuple[int, int]:
        """(prompt budget, completion budget) for this role's server: a small-context server (the embedded
        model serves 4K) gets at most a quarter of its context for the completion."""
        endpoint = self.endpoint(role)
        known = None
        if self.models is endpoint_models:
            try:
                known = context_length(endpoint)
            except EndpointUnavailable:  # the call itself will retry and pause the run if it stays down
                known = None
        context = known or DEFAULT_CONTEXT_TOKENS
        completion = min(endpoint.max_tokens, context // 4)
        return context - completion - 256, completion

    def fresh_sandbox(self, spec: SandboxSpec) -> Sandbox:
        """A NEW sandbox (verifier checks never reuse the producer's), labelled with this run's id. It is a
        one-off: it ends when its user closes it and leaves nothing warm behind (its workspace is a
        per-iteration folder no later sandbox shares)."""
        opener = self.open_sandbox or _default_opener
        return opener(dataclasses.replace(spec, run_id=self.run.id), self.settings.sandbox_backend)

    def producer_sandbox(self) -> Sandbox:
        if self._sandbox is None:
            spec = dataclasses.replace(self.task.sandbox_spec(self.run.workspace),
                                       disk_mb=self.settings.loop.workspace_quota_mb)
            self._sandbox = self.fresh_sandbox(spec)
        return self._sandbox

    def close(self) -> None:
        if self._sandbox is not None:
            self._sandbox.close()
            self._sandbox = None
        self.run.close()

    def call_model(self, role: str, messages: list[BaseMessage], thinking: bool, iteration: int | None,
                   tools: Sequence[Any] = (), tool_choice: str | None = None,
                   sizes: Sequence[int] | None = None, extra_temperature: float = 0.0) -> tuple[AIMessage, Usage]:
        """One model call, packed to the context, retried on transient errors, recorded as a `model_call` event
        (`cut_at_limit` when the reply hit the completion limit: finish_reason "length")."""
        endpoint = self.endpoint(role, extra_temperature)

        prompt_budget, completion_budget = self.token_limits(role)

        def build() -> Any:
            model = self.models(role, endpoint, thinking, completion_budget)
            return model.bind_tools(list(tools), tool_choice=tool_choice) if tools and tool_choice else model

        prompt = pack(messages, prompt_budget, sizes)
        started = time.monotonic()
        reply = invoke_with_retry(build, prompt, endpoint.retry_for_s, () if tool_choice else tools,
                                  slot=endpoint_slot(endpoint), overload_retry_for_s=endpoint.overload_retry_for_s)
        usage = usage_of(reply, prompt)
        finish_reason = finish_reason_of(reply)
        self.run.events.append(
            "model_call", iteration, role=role, model=endpoint.model or "(served model)", thinking=thinking,
            temperature=endpoint.temperature, completion_limit=completion_budget,
            cut_at_limit=finish_reason == "length",
            prompt_tokens=usage.prompt_tokens, completion_tokens=usage.completion_tokens,
            reasoning_tokens=usage.reasoning_tokens, total_tokens=usage.total, estimated=usage.estimated,
            latency_s=round(time.monotonic() - started, 3),
            finish_reason=finish_reason,
            tool_calls=len(reply.tool_calls or []),
        )
        return reply, usage


def finish_reason_of(reply: AIMessage) -> str | None:
    """Why the server ended the reply: "stop", "tool_calls", or "length" (cut at the completion limit)."""
    return (reply.response_metadata or {}).get("finish_reason")


def _default_opener(spec: SandboxSpec, backend: str) -> Sandbox:
    from sandboxes import open_sandbox

    return open_sandbox(spec, backend=backend)
