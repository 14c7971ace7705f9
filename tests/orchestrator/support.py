"""Test doubles for driving the real loop: a scripted chat model and a host-subprocess sandbox.

The scripted model answers from a list (or a function of the conversation); the local sandbox runs commands
with subprocess in the workspace folder. Real-Docker and real-vLLM tests live next to these."""
from __future__ import annotations

import subprocess
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage

from sandboxes.base import ExecResult, SandboxSpec


class ScriptedChatModel(GenericFakeChatModel):
    """GenericFakeChatModel that accepts bind_tools (ignored: replies are scripted)."""

    def bind_tools(self, tools: Any, **kwargs: Any) -> ScriptedChatModel:
        return self


def tool_call(name: str, **args: Any) -> AIMessage:
    return AIMessage(content="", tool_calls=[{"name": name, "args": args, "id": f"call_{name}_{time.time_ns()}"}])


class Script:
    """Per-role reply queues; a role whose queue is empty repeats its `default` reply."""

    def __init__(self, producer: Sequence[AIMessage] = (), verifier: Sequence[AIMessage] = (),
                 planner: Sequence[AIMessage] = (), default: Mapping[str, AIMessage] | None = None):
        self.queues = {"producer": list(producer), "verifier": list(verifier), "planner": list(planner)}
        self.default = dict(default or {})
        self.calls: list[str] = []

    def next(self, role: str) -> AIMessage:
        self.calls.append(role)
        queue = self.queues[role]
        if queue:
            return queue.pop(0)
        if role in self.default:
            return self.default[role]
        if role == "planner":
            return AIMessage(content="1. do it\n2. check it")
        if role == "verifier":
            return tool_call("submit_verdict", verdict="pass", findings=[])
        return AIMessage(content="DONE: nothing more to do")

    def factory(self) -> Callable[..., ScriptedChatModel]:
        def make(role: str, endpoint: Any, thinking: bool, max_tokens: int | None = None) -> ScriptedChatModel:
            return ScriptedChatModel(messages=_one(self, role))
        return make


def _one(script: Script, role: str) -> Iterator[AIMessage]:
    yield script.next(role)


class LocalSandbox:
    """Runs commands on the host in the workspace (unit tests of graph logic only)."""

    backend = "local-test"

    def __init__(self, spec: SandboxSpec):
        self.spec = spec

    def exec(self, cmd: str | Sequence[str], timeout_s: float | None = None, env: Mapping[str, str] | None = None,
             workdir: str = "/work") -> ExecResult:
        started = time.monotonic()
        try:
            proc = subprocess.run(cmd if isinstance(cmd, str) else list(cmd), shell=isinstance(cmd, str),
                                  cwd=self.spec.workspace, capture_output=True, text=True,
                                  timeout=timeout_s or self.spec.exec_timeout_s)
            return ExecResult(proc.returncode, proc.stdout, proc.stderr, time.monotonic() - started, "exited")
        except subprocess.TimeoutExpired:
            return ExecResult(-9, "", "", time.monotonic() - started, "timeout")

    def close(self) -> None:
        pass

    def __enter__(self) -> LocalSandbox:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def local_opener(spec: SandboxSpec, backend: str) -> LocalSandbox:
    return LocalSandbox(spec)


def make_code_workspace(root: Path, solved: bool = False) -> Path:
    """A tiny 'make the test pass' workspace."""
    ws = root / "src"
    ws.mkdir(parents=True, exist_ok=True)
    body = "return a + b" if solved else "raise NotImplementedError"
    (ws / "calc.py").write_text(f"def add(a, b):\n    {body}\n")
    (ws / "check.sh").write_text("python3 -c 'from calc import add; assert add(2, 3) == 5; print(\"ok\")'\n")
    return ws


class PolicyChatModel(GenericFakeChatModel):
    """A scripted model whose reply is a function of the conversation (deterministic across resumes)."""

    policy: Any = None

    def bind_tools(self, tools: Any, **kwargs: Any) -> PolicyChatModel:
        return self

    def _generate(self, messages, stop=None, run_manager=None, **kwargs):  # type: ignore[override]
        from langchain_core.outputs import ChatGeneration, ChatResult

        return ChatResult(generations=[ChatGeneration(message=self.policy(messages))])


def fix_after(attempts: int, good: str, bad: str, path: str = "calc.py") -> Callable[[list], AIMessage]:
    """Producer policy: write a wrong file until `attempts` verdicts came back, then the right one; then done."""
    def policy(messages: list) -> AIMessage:
        last = str(messages[-1].content)
        if last.startswith("wrote ") or last.startswith("Observation (write_file)"):
            return tool_call("done", summary="wrote the file")
        seen = sum("Verifier verdict on iteration" in str(m.content) for m in messages)
        content = good if seen >= attempts else f"{bad}# attempt {seen}\n"
        return tool_call("write_file", path=path, content=content)
    return policy
