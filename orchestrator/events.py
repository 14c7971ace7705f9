"""The typed schema of a run directory's records: the events of `events.jsonl` (one constructor per kind),
the per-iteration record `iterations/NNNN.json`, and the one way to show an event as a line of text.

Writers build events here and hand them to `RunDir.events.add` (`rundir.EventLog`, which adds `seq` and `ts` and
keeps the file format); readers follow the file with `orchestrator/eventlog.py` and print with `format_event`.
orchestrator/README.md documents the schema from this module. Field order inside each event is the order of the
keyword arguments below: it is the order on disk, unchanged since the first runs."""
from __future__ import annotations

import json
import time
from collections.abc import Mapping
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypedDict, cast

from rich.markup import escape

from tasks.base import CheckReport
from tasks.text import printable, shorten

Kind = Literal["run_started", "run_resumed", "lease_acquired", "plan", "iteration_started", "model_call",
               "tool_call", "exec", "rollback", "commit", "check", "verdict", "decision", "steer", "strategy_change",
               "context_compacted", "repeated_output", "migration", "error", "status", "run_finished"]

ISLAND: ContextVar[int | None] = ContextVar("m3lab_island", default=None)
"""The island whose work is being recorded (a search with `[search] islands` > 1 sets it in each island's worker
thread); None otherwise, so a one-producer run's events never carry the field."""


@dataclass(frozen=True)
class Event:
    """One line of events.jsonl before the log numbers it. `key` makes it idempotent: an event whose key is in
    the log already is not written again (a node rerun after a crash records its side effects once)."""

    kind: Kind
    iteration: int | None
    fields: dict[str, Any] = field(default_factory=dict)
    key: str | None = None
    island: int | None = field(default_factory=ISLAND.get)
    """Set from `ISLAND` where the event is built: written right after `iteration`, only when not None."""


# --- the run -------------------------------------------------------------------------------------------------

def run_started(task_title: str) -> Event:
    return Event("run_started", None, {"task": task_title}, key="run_started")


def run_resumed(iteration: int | None, task_title: str) -> Event:
    return Event("run_resumed", iteration, {"task": task_title})


def lease_acquired(iteration: int | None, owner: str) -> Event:
    """A cluster worker (host:pid:nonce, store/leases.py) took the run."""
    return Event("lease_acquired", iteration, {"owner": owner})


def status(iteration: int | None, new_status: str, reason: str) -> Event:
    """A status change outside the loop: `paused` (with why), `queued` (submitted to a cluster)."""
    return Event("status", iteration, {"status": new_status, "reason": reason})


def error(iteration: int | None, message: str) -> Event:
    return Event("error", iteration, {"message": message[:2000]})


def run_finished(iteration: int | None, final_status: str, stop_reason: str) -> Event:
    return Event("run_finished", iteration, {"status": final_status, "stop_reason": stop_reason})


# --- the loop ------------------------------------------------------------------------------------------------

def plan(path: str = "artifacts/plan.md") -> Event:
    return Event("plan", None, {"path": path}, key="plan")


def iteration_key(iteration: int) -> str:
    """The key of an iteration's `iteration_started` event (its `ts` is the record's `started_at`)."""
    return f"iteration-{iteration}"


def iteration_started(iteration: int) -> Event:
    return Event("iteration_started", iteration, key=iteration_key(iteration))


def steer(iteration: int, index: int, text: str) -> Event:
    """The `index`-th steering request of the run (0-based), shown to the producer in this iteration."""
    return Event("steer", iteration, {"text": text}, key=f"steer-{index}")


def model_call(iteration: int | None, *, role: str, model: str, thinking: bool, temperature: float | None,
               completion_limit: int, finish_reason: str | None, prompt_tokens: int, completion_tokens: int,
               reasoning_tokens: int, total_tokens: int, estimated: bool, latency_s: float,
               tool_calls: int) -> Event:
    return Event("model_call", iteration, {
        "role": role, "model": model, "thinking": thinking, "temperature": temperature,
        "completion_limit": completion_limit, "cut_at_limit": finish_reason == "length",
        "prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens, "reasoning_tokens": reasoning_tokens,
        "total_tokens": total_tokens, "estimated": estimated, "latency_s": round(latency_s, 3),
        "finish_reason": finish_reason, "tool_calls": tool_calls})


def tool_call(iteration: int, role: str, tool: str, args: Mapping[str, Any], ok: bool, output: str) -> Event:
    """`args` and `output` already shortened by the caller (the full output is the observation)."""
    return Event("tool_call", iteration, {"role": role, "tool": tool, "args": dict(args), "ok": ok,
                                          "output": output})


def exec_event(iteration: int, fields: Mapping[str, Any]) -> Event:
    """A command run in a sandbox; `fields` from `tasks.base.exec_fields`, the one builder the checks use too."""
    return Event("exec", iteration, {k: v for k, v in fields.items() if k != "kind"})


def rollback(iteration: int, reason: str = "quota", to: str = "HEAD") -> Event:
    return Event("rollback", iteration, {"reason": reason, "to": to})


def repeated_output(iteration: int, role: str, action: str) -> Event:
    return Event("repeated_output", iteration, {"role": role, "action": action})


def check(iteration: int, report: CheckReport) -> Event:
    return Event("check", iteration, {"passed": report.passed, "score": report.score,
                                      "summary": report.summary[:2000], "metrics": report.metrics})


def verdict(iteration: int, kind: str, score: float, findings: list[str]) -> Event:
    return Event("verdict", iteration, {"verdict": kind, "score": score, "findings": findings},
                 key=f"verdict-{iteration}")


def commit(iteration: int, sha: str, message: str) -> Event:
    return Event("commit", iteration, {"sha": sha, "message": message}, key=f"commit-{iteration}")


def decision(iteration: int, action: str, reason: str) -> Event:
    return Event("decision", iteration, {"action": action, "reason": reason}, key=f"decision-{iteration}")


def strategy_change(iteration: int, reason: str, action: str) -> Event:
    return Event("strategy_change", iteration, {"reason": reason, "action": action}, key=f"strategy-{iteration}")


def context_compacted(iteration: int, epoch: int) -> Event:
    return Event("context_compacted", iteration, {"epoch": epoch}, key=f"compact-{iteration}")


def migration(iteration: int, round_no: int, source_island: int, score: float, to: list[int]) -> Event:
    """The best candidate so far (iteration `iteration`, on `source_island`) was copied into the workspaces of
    the islands `to` after round `round_no` (islands search, `[search] migrate_every`)."""
    return Event("migration", iteration, {"round": round_no, "source_island": source_island, "score": score,
                                          "to": to}, key=f"migration-{round_no}")


def from_task(iteration: int, fields: Mapping[str, Any]) -> Event:
    """An event a task's check recorded through `CheckContext.record` (tasks never import this module)."""
    if fields.get("kind") != "exec":
        raise ValueError(f"a check may record only `exec` events, not {fields.get('kind')!r}")
    return exec_event(iteration, fields)


# --- iterations/NNNN.json ------------------------------------------------------------------------------------

class VerdictJSON(TypedDict, total=False):
    """`agents.verifier.Verdict.to_json()`: kept as its JSON in the record, so that readers of a run (CLI,
    viewer) need not load the model stack the verifier imports; `Verdict.from_json` gives the object back."""

    verdict: str  # pass / fail / error
    score: float
    findings: list[str]
    check: dict[str, Any]
    review: dict[str, Any] | None
    tokens: dict[str, int]


@dataclass(frozen=True)
class Decision:
    action: str
    """accept / iterate / stop."""
    reason: str


@dataclass(frozen=True)
class IterationRecord:
    """One finished iteration, written once by the loop (`report.write_iteration_record`)."""

    iteration: int
    commit: str | None
    """The iteration's commit in the run's git directory."""
    check: CheckReport
    verdict: VerdictJSON
    decision: Decision
    started_at: float | None
    """Unix seconds of the iteration's `iteration_started` event (None in runs recorded before it was kept)."""
    ended_at: float | None
    island: int | None = None
    """The island that produced it (searches with `[search] islands` > 1; absent from the file otherwise)."""

    @property
    def verdict_kind(self) -> str:
        return str(self.verdict.get("verdict"))

    @property
    def score(self) -> float:
        return float(self.verdict.get("score") or 0.0)

    @property
    def findings(self) -> list[str]:
        return list(self.verdict.get("findings") or [])

    def to_json(self) -> dict[str, Any]:
        return {"iteration": self.iteration, "commit": self.commit, "check": self.check.to_json(),
                "verdict": dict(self.verdict), "decision": {"action": self.decision.action,
                                                            "reason": self.decision.reason},
                "started_at": self.started_at, "ended_at": self.ended_at,
                **({"island": self.island} if self.island is not None else {})}

    @classmethod
    def from_json(cls, data: Any) -> IterationRecord:
        """The record; `ValueError` with the reason when `data` is not one (a reader shows it as unreadable)."""
        try:
            verdict, decision = data["verdict"], data["decision"]
            if not isinstance(verdict, dict) or not isinstance(decision, dict):
                raise TypeError("verdict and decision must be objects")
            if not isinstance(verdict["verdict"], str) or not isinstance(verdict.get("findings", []), list):
                raise TypeError("the verdict needs its kind and a list of findings")
            float(verdict["score"])
            return cls(iteration=int(data["iteration"]), commit=data.get("commit"),
                       check=CheckReport.from_json(data["check"]), verdict=cast(VerdictJSON, verdict),
                       decision=Decision(str(decision["action"]), str(decision.get("reason", ""))),
                       started_at=data.get("started_at"), ended_at=data.get("ended_at"),
                       island=data.get("island"))
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"not an iteration record ({exc!r})") from None


def read_record(path: Path) -> IterationRecord:
    """iterations/NNNN.json; OSError when it cannot be read, ValueError when it is not a record."""
    return IterationRecord.from_json(json.loads(path.read_text(encoding="utf-8")))


# --- one line of text per event ------------------------------------------------------------------------------

def _shown(value: Any, width: int | None = None) -> str:
    """A field of an event as rich text: what a sandbox or a model wrote is never markup nor a terminal control."""
    text = str(value)
    return escape(printable(shorten(text, width) if width else text))


def _summary(e: Mapping[str, Any]) -> str | None:
    """The live line of the events worth showing while a run is in the foreground (rich markup), else None."""
    it, kind = e.get("iteration"), e.get("kind")
    if kind == "iteration_started":
        return f"[bold]iteration {it}[/bold]" + (f" (island {e['island']})" if e.get("island") is not None else "")
    if kind == "model_call":
        mode = "thinking" if e.get("thinking") else "fast"
        cut = f", cut at the {e.get('completion_limit')}-token limit" if e.get("cut_at_limit") else ""
        return f"  {_shown(e['role'])}: {e['total_tokens']} tokens ({mode}, {e['latency_s']:.1f} s{cut})"
    if kind == "tool_call":
        args = ", ".join(f"{_shown(k)}={_shown(repr(str(v)[:60]))}" for k, v in (e.get("args") or {}).items()
                         if k != "content")
        return f"  {_shown(e['tool'])}({args}) -> {'ok' if e.get('ok') else 'failed'}"
    if kind == "check":
        return f"  check: {'passed' if e['passed'] else 'failed'} (score {e['score']:.4g})"
    if kind == "verdict":
        return f"  verdict: [bold]{_shown(e['verdict'])}[/bold] {_shown((e.get('findings') or [''])[0], 160)}"
    if kind == "repeated_output":
        return f"  {_shown(e.get('role'))} repeated its previous reply word for word: {_shown(e.get('action', ''))}"
    if kind == "migration":
        return f"  migration: iteration {it} (island {e.get('source_island')}) -> islands {e.get('to')}"
    if kind in ("decision", "strategy_change", "steer", "error", "status"):
        rest = e.get("reason") or e.get("text") or e.get("message") or ""
        return f"  {kind}: {_shown(e.get('action', ''))} — {_shown(rest, 160)}"
    return None


_HEADER = ("seq", "ts", "kind", "iteration", "island", "key")


def format_event(e: Mapping[str, Any], live: bool = False) -> str | None:
    """An event as one line of text. `live`: the short line a foreground run prints (None for the kinds it
    leaves out); otherwise the full line of `m3lab runs logs`: time, seq, iteration, kind and every field."""
    if live:
        return _summary(e)
    stamp = time.strftime("%H:%M:%S", time.localtime(e.get("ts") or 0))
    fields = " ".join(f"{k}={json.dumps(v)[:160]}" for k, v in e.items() if k not in _HEADER and k[0] != "_")
    where = f"it {e.get('iteration')}" + (f" island {e['island']}" if e.get("island") is not None else "")
    return printable(f"{stamp} #{e.get('seq')} [{where}] {e.get('kind')}: {fields}")
