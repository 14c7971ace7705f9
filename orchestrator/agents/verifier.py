"""The verifier: the task's structural check in a fresh sandbox, then an adversarial model review.

The verdict is a typed object; nothing unparsable is ever a pass. A pass needs BOTH a passing check and a
passing review (the review can veto, it can never rescue a failed check)."""
from __future__ import annotations

import base64
import json
import re
import shutil
import threading
import traceback
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from langchain_core.messages import HumanMessage, SystemMessage

from orchestrator import prompts
from orchestrator.agents.context import CHARS_PER_TOKEN
from orchestrator.runtime import Runtime
from orchestrator.workspace import diff_tree, export_tree, share_tree
from sandboxes.base import SandboxError
from tasks.base import CheckContext, CheckReport

VerdictKind = Literal["pass", "fail", "error"]

VERDICT_TOOL = {"type": "function", "function": {
    "name": "submit_verdict", "description": "Submit the verdict on the producer's work.",
    "parameters": {"type": "object", "required": ["verdict", "findings"], "properties": {
        "verdict": {"type": "string", "enum": ["pass", "fail"]},
        "score": {"type": "number", "minimum": 0, "maximum": 1},
        "findings": {"type": "array", "items": {"type": "string"}}}}}}

DIFF_CHARS = 60_000


@dataclass
class Review:
    verdict: VerdictKind
    findings: list[str]
    score: float | None = None


@dataclass
class Verdict:
    verdict: VerdictKind
    score: float
    findings: list[str]
    check: CheckReport
    review: Review | None = None
    tokens: dict[str, int] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return self.verdict == "pass"

    def to_json(self) -> dict[str, Any]:
        return {"verdict": self.verdict, "score": self.score, "findings": self.findings,
                "check": self.check.to_json(), "review": asdict(self.review) if self.review else None,
                "tokens": self.tokens}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Verdict:
        review = Review(**d["review"]) if d.get("review") else None
        return cls(d["verdict"], float(d["score"]), list(d["findings"]), CheckReport.from_json(d["check"]),
                   review, dict(d.get("tokens", {})))


def parse_review(tool_calls: list[dict[str, Any]], text: str) -> Review:
    """A review from a submit_verdict call or a JSON object in the text; anything else is an error verdict."""
    data: Any = None
    for call in tool_calls:
        if call.get("name") == "submit_verdict":
            data = call.get("args")
    if data is None:
        for candidate in reversed(re.findall(r"\{.*\}", text, re.DOTALL)):
            try:
                data = json.loads(candidate)
                break
            except json.JSONDecodeError:
                continue
    if not isinstance(data, dict) or data.get("verdict") not in ("pass", "fail"):
        return Review("error", [f"verifier reply could not be parsed as a verdict: {text[:300]!r}"])
    findings = [str(f) for f in data.get("findings") or [] if str(f).strip()]
    score = data.get("score")
    return Review(data["verdict"], findings, float(score) if isinstance(score, (int, float)) else None)


def combine(check: CheckReport, review: Review | None) -> tuple[VerdictKind, list[str]]:
    if not check.passed:
        findings = check.findings or [check.summary]
        return "fail", findings + (review.findings if review else [])
    if review is None:
        return "pass", []
    if review.verdict == "error":
        return "error", review.findings
    if review.verdict == "fail":
        return "fail", review.findings or ["the verifier rejected the work without saying why"]
    return "pass", review.findings


class _TokenMeter:
    """Counts the tokens of judge calls made inside a task's check (a check may call the judge from threads)."""

    def __init__(self) -> None:
        self.prompt = self.completion = self.reasoning = 0
        self._lock = threading.Lock()

    def add(self, usage: Any) -> None:
        with self._lock:
            self.prompt += usage.prompt_tokens
            self.completion += usage.completion_tokens
            self.reasoning += usage.reasoning_tokens


def _judge(rt: Runtime, iteration: int, meter: _TokenMeter):
    def judge(prompt: str, images: Sequence[Path] = ()) -> str:
        content: Any = prompt
        if images and rt.endpoint("verifier").vision:
            content = [{"type": "text", "text": prompt}] + [
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,"
                                                   + base64.b64encode(Path(p).read_bytes()).decode()}}
                for p in images]
        reply, usage = rt.call_model("verifier", [HumanMessage(content=content)], True, iteration)
        meter.add(usage)
        return reply.content if isinstance(reply.content, str) else json.dumps(reply.content)
    return judge


def run_check(rt: Runtime, iteration: int, tree: str, meter: _TokenMeter) -> CheckReport:
    """Export the staged tree to a fresh folder and run the task's check on it in fresh sandboxes."""
    exported = export_tree(rt.run.git_dir, tree, rt.run.path / "checks" / f"{iteration:04d}" / "workspace")
    export = exported.path
    share_tree(export)
    ctx = CheckContext(workspace=export, run_dir=rt.run.path, iteration=iteration, open_sandbox=rt.fresh_sandbox,
                       record=lambda e: rt.run.events.append(iteration=iteration, **dict(e)),
                       judge=_judge(rt, iteration, meter),
                       judge_prompt_chars=int(rt.token_limits("verifier")[0] * CHARS_PER_TOKEN), offload=rt.offload)
    try:
        return _with_dropped(rt.task.check(ctx), exported.dropped)
    except SandboxError:
        raise  # infrastructure, not the producer's fault: retried by the graph, then the run fails resumably
    except Exception as exc:  # noqa: BLE001 - a crashing check is a failed check, with its traceback kept
        log = rt.run.write_log(f"check-{iteration:04d}-crash.txt", traceback.format_exc())
        return CheckReport(False, 0.0, f"the check itself failed: {exc!r}", findings=[f"check crashed: {exc!r}"],
                           evidence_path=str(log))
    finally:
        shutil.rmtree(export, ignore_errors=True)


def _with_dropped(report: CheckReport, dropped: list[str]) -> CheckReport:
    """Links left out of the export are findings the producer sees (in the summary too, which it always reads)."""
    if dropped:
        report.findings = [*dropped, *report.findings]
        report.summary = "\n".join([*dropped, report.summary])
    return report


def review(rt: Runtime, iteration: int, tree: str, claim: str, check: CheckReport, meter: _TokenMeter) -> Review:
    diff = diff_tree(rt.run.git_dir, tree, max_chars=DIFF_CHARS)
    text = prompts.VERIFIER_PROMPT.format(
        brief=rt.task.producer_brief(), verifier_brief=rt.task.verifier_brief(), iteration=iteration,
        claim=claim or "(no claim: the producer ran out of turns)", passed=check.passed, score=check.score,
        check_summary=check.summary, metrics=json.dumps(check.metrics), check_findings=json.dumps(check.findings),
        diff=diff)
    messages = [SystemMessage(content=prompts.VERIFIER_SYSTEM), HumanMessage(content=text)]
    try:
        reply, usage = rt.call_model("verifier", messages, True, iteration, tools=[VERDICT_TOOL],
                                     tool_choice="submit_verdict")
    except Exception as exc:  # noqa: BLE001 - some servers reject forced tool choice: ask for JSON text
        if type(exc).__name__ == "EndpointUnavailable":
            raise
        reply, usage = rt.call_model("verifier", messages, True, iteration)
    meter.add(usage)
    content = reply.content if isinstance(reply.content, str) else json.dumps(reply.content)
    return parse_review(reply.tool_calls or [], content)


def verify(rt: Runtime, iteration: int, tree: str, claim: str) -> Verdict:
    """Check the staged tree `tree` of this iteration, then review it."""
    meter = _TokenMeter()
    check = run_check(rt, iteration, tree, meter)
    rt.run.events.append("check", iteration, passed=check.passed, score=check.score, summary=check.summary[:2000],
                         metrics=check.metrics)
    rev = review(rt, iteration, tree, claim, check, meter) if (check.passed or rt.settings.loop.review_on_failure) else None
    kind, findings = combine(check, rev)
    return Verdict(kind, check.score if kind == "pass" else 0.0, findings, check, rev,
                   {"prompt": meter.prompt, "completion": meter.completion, "reasoning": meter.reasoning})
