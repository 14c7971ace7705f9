"""Per-process resources of a run that never go into graph state: the run directory, the task, the settings,
the producer's warm sandbox and open conversation, and how chat models are made (real endpoints, or scripted ones
in tests)."""
from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from langchain_core.messages import AIMessage, BaseMessage

from orchestrator.config import Settings
from orchestrator.conversation import Conversation
from orchestrator.events import model_call
from orchestrator.rundir import RunDir
from orchestrator.store.slots import request_slot
from orchestrator.tokens import Usage, pack, usage_of
from sandboxes.base import Sandbox, SandboxSpec
from serving.client import EndpointUnavailable, ModelEndpoint, context_length, invoke_with_retry, make_chat_model
from tasks.base import Task

DEFAULT_CONTEXT_TOKENS = 32_768


class ModelFactory(Protocol):
    def __call__(self, role: str, endpoint: ModelEndpoint, thinking: bool, max_tokens: int | None = None) -> Any: ...


@runtime_checkable
class KnowsContext(Protocol):
    """A model factory that can say how long a context its models take (None = unknown). A factory without it
    (a scripted model) gets `DEFAULT_CONTEXT_TOKENS`."""

    def context_length(self, endpoint: ModelEndpoint) -> int | None: ...


class EndpointModels:
    """The real factory: a ChatOpenAI on the role's endpoint, whose server says how long its context is."""

    def __call__(self, role: str, endpoint: ModelEndpoint, thinking: bool, max_tokens: int | None = None) -> Any:
        return make_chat_model(endpoint, thinking=thinking, max_tokens=max_tokens)

    def context_length(self, endpoint: ModelEndpoint) -> int | None:
        try:
            return context_length(endpoint)
        except EndpointUnavailable:  # the call itself will retry and pause the run if it stays down
            return None


endpoint_models = EndpointModels()


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
    conversation: Conversation | None = field(default=None, repr=False)
    """The producer's conversation kept open between graph steps (`graph.conversation` reopens it from its file
    when the checkpoint says otherwise)."""
    island: int | None = None
    """The island whose producer this runtime drives (`for_island`); None = the run's one producer."""
    head: str = "HEAD"
    """The commit the producer's workspace holds: what a quota overrun rolls back to and what the verifier's diff
    is taken against (an island's own last commit; HEAD is the run's last, of whichever island)."""
    _islands: dict[int, Runtime] = field(default_factory=dict, repr=False)

    @property
    def workspace(self) -> Path:
        """The producer's files: `workspace/` (island 0 too), `islands/NN/workspace/` for the other islands."""
        if not self.island:
            return self.run.workspace
        return self.run.path / "islands" / f"{self.island:02d}" / "workspace"

    def for_island(self, island: int) -> Runtime:
        """Island `island`'s runtime: the same run, task, settings and models, its own workspace, warm sandbox and
        open conversation (kept between rounds)."""
        if island not in self._islands:
            self._islands[island] = replace(self, island=island, _sandbox=None, conversation=None, _islands={})
        return self._islands[island]

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
        known = self.models.context_length(endpoint) if isinstance(self.models, KnowsContext) else None
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
            spec = dataclasses.replace(self.task.sandbox_spec(self.workspace),
                                       disk_mb=self.settings.loop.workspace_quota_mb)
            self._sandbox = self.fresh_sandbox(spec)
        return self._sandbox

    def close(self) -> None:
        for island in self._islands.values():
            island.close_sandbox()
        self.close_sandbox()
        self.run.close()

    def close_sandbox(self) -> None:
        if self._sandbox is not None:
            self._sandbox.close()
            self._sandbox = None

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
                                  slot=request_slot(endpoint, self.settings.store),
                                  overload_retry_for_s=endpoint.overload_retry_for_s)
        usage = usage_of(reply, prompt)
        finish_reason = finish_reason_of(reply)
        self.run.events.add(model_call(
            iteration, role=role, model=endpoint.model or "(served model)", thinking=thinking,
            temperature=endpoint.temperature, completion_limit=completion_budget, finish_reason=finish_reason,
            prompt_tokens=usage.prompt_tokens, completion_tokens=usage.completion_tokens,
            reasoning_tokens=usage.reasoning_tokens, total_tokens=usage.total, estimated=usage.estimated,
            latency_s=time.monotonic() - started, tool_calls=len(reply.tool_calls or [])))
        return reply, usage


def finish_reason_of(reply: AIMessage) -> str | None:
    """Why the server ended the reply: "stop", "tool_calls", or "length" (cut at the completion limit)."""
    return (reply.response_metadata or {}).get("finish_reason")


def _default_opener(spec: SandboxSpec, backend: str) -> Sandbox:
    from sandboxes import open_sandbox

    return open_sandbox(spec, backend=backend)
