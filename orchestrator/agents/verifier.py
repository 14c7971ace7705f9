"""The verifier: the task's structural check in a fresh sandbox, then an adversarial model review.

The verdict is a typed object; nothing unparsable is ever a pass. A pass needs BOTH a passing check and a
passing review (the review can veto, it can never rescue a failed check)."""
from __future__ import annotations

import base64
import json
import re
import traceback
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from langchain_core.messages import HumanMessage, SystemMessage

from orchestrator import events, prompts
from orchestrator.runtime import Runtime
from orchestrator.tokens import CHARS_PER_TOKEN, Usage
from orchestrator.workspace import diff_tree, export_tree, share_tree
from sandboxes import hostfs
from sandboxes.base import SandboxError
from serving.client import EndpointUnavailable
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
    usage: Usage = field(default_factory=Usage)
    """Tokens of the verifier's model calls (the check's judge and the review)."""

    @property
    def passed(self) -> bool:
        return self.verdict == "pass"

    def to_json(self) -> dict[str, Any]:
        return {"verdict": self.verdict, "score": self.score, "findings": self.findings,
                "check": self.check.to_json(), "review": asdict(self.review) if self.review else None,
                "tokens": self.usage.to_json()}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Verdict:
        review = Review(**d["review"]) if d.get("review") else None
        return cls(d["verdict"], float(d["score"]), list(d["findings"]), CheckReport.from_json(d["check"]),
                   review, Usage.from_json(d.get("tokens", {})))


def parse_review(tool_calls: Sequence[Mapping[str, Any]], text: str) -> Review:
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


def _judge(rt: Runtime, iteration: int, usages: list[Usage]):
    """The check's judge: each call's usage is appended to `usages` (a check may call it from threads; a list
    append is atomic)."""
    def judge(prompt: str, images: Sequence[Path] = ()) -> str:
        content: Any = prompt
        if images and rt.endpoint("verifier").vision:
            content = [{"type": "text", "text": prompt}] + [
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,"
                                                   + base64.b64encode(Path(p).read_bytes()).decode()}}
                for p in images]
        reply, usage = rt.call_model("verifier", [HumanMessage(content=content)], True, iteration)
        usages.append(usage)
        return reply.content if isinstance(reply.content, str) else json.dumps(reply.content)
    return judge


def run_check(rt: Runtime, iteration: int, tree: str, usages: list[Usage]) -> CheckReport:
    """Export the staged tree to a fresh folder and run the task's check on it in fresh sandboxes."""
    exported = export_tree(rt.run.git_dir, tree, rt.run.path / "checks" / f"{iteration:04d}" / "workspace")
    export = exported.path
    share_tree(export)
    ctx = CheckContext(workspace=export, run_dir=rt.run.path, iteration=iteration, open_sandbox=rt.fresh_sandbox,
                       record=lambda fields: rt.run.events.add(events.from_task(iteration, fields)),
                       judge=_judge(rt, iteration, usages),
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
        try:
            hostfs.remove_tree(export)  # the check sandbox wrote in it: nested however deep
        except OSError:
            pass


def _with_dropped(report: CheckReport, dropped: list[str]) -> CheckReport:
    """Links left out of the export are findings the producer sees (in the summary too, which it always reads)."""
    if dropped:
        report.findings = [*dropped, *report.findings]
        report.summary = "\n".join([*dropped, report.summary])
    return report


def review(rt: Runtime, iteration: int, tree: str, claim: str, check: CheckReport) -> tuple[Review, Usage]:
    diff = diff_tree(rt.run.git_dir, tree, max_chars=DIFF_CHARS, base=rt.head)
    text = prompts.VERIFIER_PROMPT.format(
        brief=rt.task.producer_brief(), verifier_brief=rt.task.verifier_brief(), iteration=iteration,
        claim=claim or "(no claim: the producer ran out of turns)", passed=check.passed, score=check.score,
        check_summary=check.summary, metrics=json.dumps(check.metrics), check_findings=json.dumps(check.findings),
        diff=diff)
    messages = [SystemMessage(content=prompts.VERIFIER_SYSTEM), HumanMessage(content=text)]
    try:
        reply, usage = rt.call_model("verifier", messages, True, iteration, tools=[VERDICT_TOOL],
                                     tool_choice="submit_verdict")
    except EndpointUnavailable:
        raise
    except Exception:  # noqa: BLE001 - some servers reject forced tool choice: ask for JSON text
        reply, usage = rt.call_model("verifier", messages, True, iteration)
    content = reply.content if isinstance(reply.content, str) else json.dumps(reply.content)
    return parse_review(reply.tool_calls or [], content), usage


def verify(rt: Runtime, iteration: int, tree: str, claim: str) -> Verdict:
    """Check the staged tree `tree` of this iteration, then review it."""
    usages: list[Usage] = []
    check = run_check(rt, iteration, tree, usages)
    rt.run.events.add(events.check(iteration, check))
    rev = None
    if check.passed or rt.settings.loop.review_on_failure:
        rev, usage = review(rt, iteration, tree, claim, check)
        usages.append(usage)
    kind, findings = combine(check, rev)
    return Verdict(kind, check.score if kind == "pass" else 0.0, findings, check, rev, sum(usages, Usage()))
