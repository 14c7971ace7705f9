"""The LangGraph loop: plan -> produce (one model turn per step) -> verify -> decide -> (produce | report).

State holds only small numbers, short strings and bounded lists; conversations, verdicts and evidence live
in files of the run directory. Every step is checkpointed (SQLite), and every side effect that must happen
once per iteration (verification, decision, events) is journaled or keyed, so a resume after `kill -9`
neither loses a completed iteration nor repeats one."""
from __future__ import annotations

import time
from typing import Any, Literal, TypedDict

from langchain_core.messages import HumanMessage
from langgraph.graph import END, START, StateGraph
from langgraph.types import Command, RetryPolicy

from orchestrator import events, prompts
from orchestrator.agents.context import Conversation
from orchestrator.agents.producer import open_conversation, producer_turn
from orchestrator.agents.verifier import Verdict, verify
from orchestrator.budgets import exhausted, failure_signature, is_stuck, push
from orchestrator.control import read_steers, stop_requested
from orchestrator.report import write_iteration_record, write_report
from orchestrator.runtime import Runtime, Usage
from orchestrator.workspace import commit_tree, stage_tree
from sandboxes.base import SandboxError
from tasks.text import shorten

HISTORY = 8
COMPACT_FACTOR = 2
"""Restart the producer's context from a summary once it holds this many contexts' worth of tokens."""
REPEAT_TEMPERATURE_STEP = 0.3
"""Sampling temperature added per repeated producer reply in the run (capped at 1.0): same prompt, same
temperature, same reply; a repeat must change something."""


class LoopState(TypedDict, total=False):
    planned: bool
    completed: int          # iterations finished (verdict + decision); the current one is completed + 1
    turn: int               # producer turns in the current iteration
    idle_turns: int         # consecutive turns without any action
    epoch: int              # producer context epoch (a strategy change starts a new one)
    conv_len: int           # messages of the current epoch committed at this checkpoint
    claim: str              # the producer's done-summary for this iteration
    steer_seen: int
    prompt_tokens: int
    completion_tokens: int
    reasoning_tokens: int
    elapsed_s: float
    consecutive_failures: int
    strategy_changes: int
    repeats: int            # producer replies that repeated the previous one word for word (whole run)
    iteration_repeated: bool
    fail_history: list[str]
    tree_history: list[str]
    best_score: float
    best_iteration: int
    status: str
    stop_reason: str


def used(state: LoopState) -> dict[str, float]:
    tokens = state.get("prompt_tokens", 0) + state.get("completion_tokens", 0)
    return {"tokens": tokens, "elapsed_s": state.get("elapsed_s", 0.0)}


def _tokens(state: LoopState, usage: Usage | dict[str, int]) -> dict[str, int]:
    get = usage.get if isinstance(usage, dict) else (lambda k, d=0: getattr(usage, f"{k}_tokens", d))
    return {"prompt_tokens": state.get("prompt_tokens", 0) + int(get("prompt", 0)),
            "completion_tokens": state.get("completion_tokens", 0) + int(get("completion", 0)),
            "reasoning_tokens": state.get("reasoning_tokens", 0) + int(get("reasoning", 0))}


def build_graph(rt: Runtime, checkpointer: Any) -> Any:
    run, task, loop = rt.run, rt.task, rt.settings.loop
    convs: dict[str, Conversation] = {}

    def conversation(state: LoopState) -> Conversation:
        path = run.path / "conversations" / f"producer-{state.get('epoch', 0):02d}.jsonl"
        cached = convs.get(str(path))
        if cached is None or len(cached) != state.get("conv_len", 0):
            plan_path = run.artifacts / "plan.md"
            plan = plan_path.read_text(encoding="utf-8") if plan_path.exists() else ""
            convs.clear()
            cached = convs[str(path)] = open_conversation(rt, path, state.get("conv_len", 0), plan)
        return cached

    def timed(state: LoopState, started: float) -> float:
        return state.get("elapsed_s", 0.0) + (time.monotonic() - started)

    def plan(state: LoopState) -> Command[Literal["produce"]]:
        started = time.monotonic()

        def make_plan() -> dict[str, Any]:
            if not loop.plan:
                (run.artifacts / "plan.md").write_text("", encoding="utf-8")  # [loop] plan = false
                return {}
            message = HumanMessage(content=prompts.PLANNER_PROMPT.format(brief=task.producer_brief()))
            reply, usage = rt.call_model("planner", [message], True, None)
            text = reply.content if isinstance(reply.content, str) else str(reply.content)
            (run.artifacts / "plan.md").write_text(text, encoding="utf-8")
            return {"prompt": usage.prompt_tokens, "completion": usage.completion_tokens,
                    "reasoning": usage.reasoning_tokens}

        if state.get("planned"):  # a finished run that is resumed re-enters here
            return Command(goto="produce", update={"status": "running", "stop_reason": ""})
        usage = run.once("plan", make_plan)
        run.events.add(events.plan())
        return Command(goto="produce", update={**_tokens(state, usage), "elapsed_s": timed(state, started),
                                               "planned": True, "status": "running", "stop_reason": ""})

    def produce(state: LoopState) -> Command[Literal["produce", "verify", "report"]]:
        started = time.monotonic()
        iteration = state.get("completed", 0) + 1
        if reason := stop_requested(run.path):
            return Command(goto="report", update={"status": "stopped", "stop_reason": f"user: {reason}"})
        over = exhausted(rt.settings.budget, used(state), 0)
        if over:
            return Command(goto="report", update={"status": "stopped", "stop_reason": over})
        run.events.add(events.iteration_started(iteration))
        conv = conversation(state)
        steer_seen = state.get("steer_seen", 0)
        for offset, text in enumerate(read_steers(run.path, steer_seen)):
            conv.add(HumanMessage(content=prompts.STEER_MESSAGE.format(text=text)))
            run.events.add(events.steer(iteration, steer_seen + offset, text))
            steer_seen += 1
        thinking = state.get("consecutive_failures", 0) >= 2 or state.get("strategy_changes", 0) > 0
        repeats = state.get("repeats", 0)
        result = producer_turn(rt, conv, iteration, thinking, REPEAT_TEMPERATURE_STEP * repeats)
        turn = state.get("turn", 0) + 1
        idle = state.get("idle_turns", 0) + 1 if result.idle else 0
        finished = result.done or turn >= loop.max_turns or idle >= 2
        if finished and not result.done:
            conv.add(HumanMessage(content=prompts.TURN_LIMIT_MESSAGE))
        update: dict[str, Any] = {**_tokens(state, result.usage), "turn": turn, "idle_turns": idle,
                                  "conv_len": len(conv), "steer_seen": steer_seen,
                                  "claim": result.claim, "elapsed_s": timed(state, started),
                                  "repeats": repeats + int(result.repeated),
                                  "iteration_repeated": state.get("iteration_repeated", False) or result.repeated}
        return Command(goto="verify" if finished else "produce", update=update)

    def verify_node(state: LoopState) -> Command[Literal["decide"]]:
        started = time.monotonic()
        iteration = state.get("completed", 0) + 1
        tree = run.once(f"tree-{iteration:04d}", lambda: stage_tree(run.git_dir, run.workspace))
        verdict = run.once(f"verdict-{iteration:04d}", lambda: verify(rt, iteration, tree, state.get("claim", "")),
                           Verdict.to_json, Verdict.from_json)
        run.events.add(events.verdict(iteration, verdict.verdict, verdict.score, verdict.findings))
        return Command(goto="decide", update={**_tokens(state, verdict.tokens), "elapsed_s": timed(state, started)})

    def decide(state: LoopState) -> Command[Literal["produce", "report"]]:
        started = time.monotonic()
        iteration = state.get("completed", 0) + 1
        verdict = run.once(f"verdict-{iteration:04d}", lambda: None, Verdict.to_json, Verdict.from_json)
        accepted = verdict.passed
        task.on_iteration_end(run.path, iteration, verdict.check, accepted)
        best_score, best_iteration = state.get("best_score", 0.0), state.get("best_iteration", 0)
        if accepted and (best_iteration == 0 or verdict.score > best_score):
            best_score, best_iteration = verdict.score, iteration
        failures = 0 if accepted else state.get("consecutive_failures", 0) + 1
        fails = push(state.get("fail_history", []), f"pass-{iteration}" if accepted else
                     failure_signature(verdict.verdict, verdict.check.summary, verdict.findings), HISTORY)
        tree = run.once(f"tree-{iteration:04d}", lambda: stage_tree(run.git_dir, run.workspace))
        trees = push(state.get("tree_history", []), tree[:12], HISTORY)
        update: dict[str, Any] = {"completed": iteration, "turn": 0, "idle_turns": 0, "claim": "",
                                  "iteration_repeated": False,
                                  "consecutive_failures": failures, "best_score": best_score,
                                  "best_iteration": best_iteration, "fail_history": fails, "tree_history": trees}
        stats = {**state, **update, "iteration_repeated": state.get("iteration_repeated", False)}
        action, reason = _decision(rt, stats, verdict, accepted)
        if action == "change":
            update.update(_change_strategy(rt, state, iteration, reason))
            action = "iterate"
        elif action == "iterate":
            conv = conversation(state)
            if sum(conv.sizes) > COMPACT_FACTOR * rt.token_limits("producer")[0]:
                conv, compacted = _compact(rt, state, iteration)
                update.update(compacted)
            next_step = (prompts.NEXT_AFTER_PASS.format(score=verdict.score, best=best_score) if accepted
                         else prompts.NEXT_AFTER_FAIL)
            # The findings carry the check's output: its first line is enough here (a small context is precious).
            summary = verdict.check.summary.splitlines()[0] if verdict.findings else verdict.check.summary
            conv.add(HumanMessage(content=prompts.FINDINGS_MESSAGE.format(
                iteration=iteration, verdict=verdict.verdict, summary=summary,
                findings="\n".join(f"- {f}" for f in verdict.findings) or "- (none)", next_step=next_step)))
            update["conv_len"] = len(conv)
        line = f"{verdict.verdict} (score {verdict.score:.4g})" + (f": {shorten(verdict.findings[0], 120)}"
                                                                   if verdict.findings else "")
        sha = commit_tree(run.git_dir, iteration, tree, line)
        run.events.add(events.commit(iteration, sha, f"iteration {iteration}: {line}"))
        write_iteration_record(run, iteration, sha, verdict, action, reason)
        run.events.add(events.decision(iteration, action, reason))
        update["elapsed_s"] = timed(state, started)
        run.update_meta(iteration=iteration, best_score=best_score, best_iteration=best_iteration,
                        budget=_budget_json(rt, {**state, **update}))
        if action == "iterate":
            return Command(goto="produce", update=update)
        update.update({"status": "succeeded" if action == "accept" else "stopped", "stop_reason": reason})
        return Command(goto="report", update=update)

    def finish(state: LoopState) -> dict[str, Any]:
        status, reason = state.get("status", "stopped"), state.get("stop_reason", "")
        run.update_meta(status=status, stop_reason=reason, budget=_budget_json(rt, state),
                        best_score=state.get("best_score", 0.0), best_iteration=state.get("best_iteration", 0))
        write_report(rt, state)
        run.events.add(events.run_finished(state.get("completed", 0), status, reason))
        return {}

    graph = StateGraph(LoopState)
    graph.add_node("plan", plan)
    graph.add_node("produce", produce)
    graph.add_node("verify", verify_node, retry_policy=RetryPolicy(max_attempts=3, retry_on=SandboxError))
    graph.add_node("decide", decide)
    graph.add_node("report", finish)
    graph.add_edge(START, "plan")
    graph.add_edge("report", END)
    return graph.compile(checkpointer=checkpointer)


def _decision(rt: Runtime, stats: dict[str, Any], verdict: Verdict, accepted: bool) -> tuple[str, str]:
    """accept / iterate / change (strategy) / stop, with the reason."""
    if accepted and rt.task.is_complete(verdict.check):
        return "accept", "accepted: the verifier passed the work and the task is complete"
    if reason := stop_requested(rt.run.path):
        return "stop", f"user: {reason}"
    if over := exhausted(rt.settings.budget, used(stats), stats["completed"]):
        return "stop", over
    patience = rt.settings.loop.stuck_patience
    same_fail = is_stuck(stats["fail_history"], patience)
    same_tree = is_stuck(stats["tree_history"], patience)
    repeated = not accepted and stats.get("iteration_repeated", False)
    if same_fail or same_tree or repeated:
        if repeated:  # a model that repeats itself is stuck now, not after `patience` iterations
            why = "the producer repeated its previous reply word for word"
        else:
            why = "the same failure" if same_fail else "no change in the workspace"
            why += f" over {patience} iterations"
        if stats.get("strategy_changes", 0) >= 1:
            return "stop", f"stuck: {why}, also after a strategy change"
        return "change", why
    return "iterate", "not accepted yet" if not accepted else "accepted; searching for a better result"


def _new_epoch(rt: Runtime, state: LoopState, reason: str, advice: str) -> tuple[Conversation, dict[str, Any]]:
    """A fresh producer context: system prompt, task, and a summary of the attempts so far."""
    from orchestrator.report import iteration_summaries

    epoch = state.get("epoch", 0) + 1
    path = rt.run.path / "conversations" / f"producer-{epoch:02d}.jsonl"
    path.unlink(missing_ok=True)  # left by a step that crashed before its checkpoint
    plan_path = rt.run.artifacts / "plan.md"
    conv = open_conversation(rt, path, 0, plan_path.read_text(encoding="utf-8") if plan_path.exists() else "")
    conv.add(HumanMessage(content=prompts.RESTART_SUMMARY.format(
        reason=reason, summary=iteration_summaries(rt.run, last=10), advice=advice)))
    return conv, {"epoch": epoch, "conv_len": len(conv)}


def _change_strategy(rt: Runtime, state: LoopState, iteration: int, reason: str) -> dict[str, Any]:
    """Summarise the attempts so far and restart the producer's context (deep thinking from now on)."""
    conv, update = _new_epoch(rt, state, f"strategy change: {reason}", prompts.ADVICE_STRATEGY)
    rt.run.events.add(events.strategy_change(iteration, reason,
                                             "new producer context with a summary; deep thinking on"))
    return {**update, "strategy_changes": state.get("strategy_changes", 0) + 1, "fail_history": [],
            "tree_history": []}


def _compact(rt: Runtime, state: LoopState, iteration: int) -> tuple[Conversation, dict[str, Any]]:
    """The conversation outgrew the context several times over: restart it from a summary, so a run of
    thousands of iterations costs the same per step as a short one."""
    conv, update = _new_epoch(rt, state, "the conversation outgrew the model's context", prompts.ADVICE_COMPACT)
    rt.run.events.add(events.context_compacted(iteration, update["epoch"]))
    return conv, update


def _budget_json(rt: Runtime, state: dict[str, Any]) -> dict[str, Any]:
    limits = rt.settings.budget
    return {"limits": {"max_iterations": limits.max_iterations, "max_hours": limits.max_hours,
                       "max_tokens": limits.max_tokens},
            "used": {"iterations": state.get("completed", 0), "elapsed_s": round(state.get("elapsed_s", 0.0), 1),
                     "tokens": int(used(state)["tokens"]), "prompt_tokens": state.get("prompt_tokens", 0),
                     "completion_tokens": state.get("completion_tokens", 0),
                     "reasoning_tokens": state.get("reasoning_tokens", 0)}}
