"""Per-iteration records and the run's report.md (written whenever a run ends, for any reason)."""
from __future__ import annotations

import json
import time
from collections.abc import Mapping
from typing import Any, cast

from orchestrator.agents.verifier import Verdict
from orchestrator.events import Decision, IterationRecord, VerdictJSON, iteration_key, read_record
from orchestrator.rundir import RunDir, atomic_write_json
from tasks.text import md_fenced, md_inline, shorten


def write_iteration_record(run: RunDir, iteration: int, sha: str, verdict: Verdict, action: str, reason: str,
                           island: int | None = None) -> None:
    record = IterationRecord(iteration=iteration, commit=sha, check=verdict.check,
                             verdict=cast(VerdictJSON, verdict.to_json()), decision=Decision(action, reason),
                             started_at=run.events.time_of(iteration_key(iteration)), ended_at=time.time(),
                             island=island)
    atomic_write_json(run.iteration_path(iteration), record.to_json())


def iteration_records(run: RunDir, last: int | None = None) -> list[IterationRecord]:
    paths = sorted((run.path / "iterations").glob("*.json"))
    if last is not None:
        paths = paths[-last:]
    return [read_record(p) for p in paths]


def iteration_summaries(run: RunDir, last: int = 10) -> str:
    """A few lines per recent iteration: what the verifier said (used to restart the producer's context)."""
    lines = []
    for rec in iteration_records(run, last):
        lines.append(f"- iteration {rec.iteration}: {rec.verdict_kind} (score {rec.score:.4g}); "
                     f"check: {shorten(rec.check.summary, 300)}")
        lines += [f"    - {shorten(f, 300)}" for f in rec.findings[:3]]
    return "\n".join(lines) or "(no finished iteration)"


def write_report(rt: Any, state: Mapping[str, Any]) -> None:
    run = rt.run
    meta = run.read_meta()
    budget = meta.get("budget", {})
    used, limits = budget.get("used", {}), budget.get("limits", {})
    lines = [
        f"# Run {run.id}", "",
        f"- task: {meta['task']['kind']} — {meta['task'].get('title', '')}",
        f"- status: **{state.get('status')}** ({state.get('stop_reason', '')})",
        f"- iterations: {used.get('iterations', 0)} / {limits.get('max_iterations')}",
        f"- tokens: {used.get('tokens', 0)} / {limits.get('max_tokens')} "
        f"(prompt {used.get('prompt_tokens', 0)}, completion {used.get('completion_tokens', 0)}, "
        f"reasoning {used.get('reasoning_tokens', 0)})",
        f"- active time: {used.get('elapsed_s', 0) / 60:.1f} min / {limits.get('max_hours')} h",
        f"- best score: {state.get('best_score', 0.0):.4g} (iteration {state.get('best_iteration', 0) or '-'})",
        f"- model: {model_behaviour(model_call_counts(run))}",
        "", "## Iterations", "",
    ]
    islands = rt.settings.search.islands > 1  # a search with islands: which island made each candidate
    lines += ["| iteration |" + (" island |" if islands else "") + " verdict | score | decision | first finding |",
              "|---|" + ("---|" if islands else "") + "---|---|---|---|"]
    for rec in iteration_records(run):
        first = md_inline(rec.findings[0] if rec.findings else "", 160)  # model and sandbox text: never markup
        island = f" {rec.island} |" if islands else ""
        lines.append(f"| {rec.iteration} |{island} {rec.verdict_kind} | {rec.score:.4g} | {rec.decision.action} | "
                     f"{first} |")
    lines += _last_findings(run)
    lines += ["", "## Task", "", rt.task.report_section(run.path), "",
              f"Inspect: `m3lab runs show {run.id}`, `m3lab runs logs {run.id}`, `m3lab runs diff {run.id} N`."]
    (run.path / "report.md").write_text("\n".join(lines) + "\n", encoding="utf-8")


def _last_findings(run: RunDir) -> list[str]:
    """The last verdict's findings in full (the text the producer was sent and the viewer shows)."""
    records = iteration_records(run, last=1)
    if not records or not records[0].findings:
        return []
    lines = ["", f"## Findings of iteration {records[0].iteration}"]
    for finding in records[0].findings:
        lines += ["", *md_fenced(finding)]
    return lines


def model_call_counts(run: RunDir) -> dict[str, int]:
    """How the model behaved over the run: calls, replies cut at the completion limit, repeated replies.
    (Only the lines of those two event kinds are parsed: a long run's log stays cheap to read.)"""
    counts = {"model_calls": 0, "cut_at_limit": 0, "repeated_replies": 0}
    path = run.path / "events.jsonl"
    if not path.exists():
        return counts
    with open(path, encoding="utf-8") as f:
        for line in f:
            if '"model_call"' in line:
                event = json.loads(line)
                counts["model_calls"] += 1
                counts["cut_at_limit"] += bool(event.get("cut_at_limit"))
            elif '"repeated_output"' in line:
                counts["repeated_replies"] += 1
    return counts


def model_behaviour(counts: dict[str, int]) -> str:
    """One line a person reads to tell "the model is too weak" from "the system did nothing"."""
    return (f"{counts['model_calls']} calls; {counts['cut_at_limit']} cut at the completion limit; "
            f"{counts['repeated_replies']} repeated word for word")
