"""The LangGraph loop: plan -> produce (one model turn per step) -> verify -> decide -> (produce | report).

Each node is a function of `(rt, state)`: `rt` holds what never goes into state (run directory, task, settings,
models, sandbox, the open conversation), and `build_graph` binds it. State holds only small numbers, short strings
and bounded lists; conversations, verdicts and evidence live in files of the run directory. Every step is
checkpointed (SQLite), and every side effect that must happen once per iteration (verification, decision, events)
is journaled or keyed, so a resume after `kill -9` neither loses a completed iteration nor repeats one."""
from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from functools import partial
from pathlib import Path
from typing import Any, Literal, TypedDict, get_args, get_type_hints

from langchain_core.messages import HumanMessage
from langgraph.graph import END, START, StateGraph
from langgraph.types import Command, RetryPolicy

from orchestrator import events, prompts
from orchestrator.agents.producer import open_conversation, producer_turn
from orchestrator.agents.verifier import Verdict, verify
from orchestrator.budgets import exhausted, failure_signature, is_stuck, push
from orchestrator.control import read_steers, stop_requested
from orchestrator.conversation import Conversation
from orchestrator.report import iteration_summaries, write_iteration_record, write_report
from orchestrator.rundir import RunDir
from orchestrator.runtime import Runtime
from orchestrator.tokens import Usage
from orchestrator.workspace import commit_tree, stage_tree
from sandboxes.base import SandboxError
from tasks.text import printable, shorten

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
    # a search with islands ([search] islands > 1, orchestrator/islands.py); absent otherwise
    islands: list[dict[str, Any]]  # per island: epoch, conv_len, head, best_score, best_iteration
    round_size: int         # islands in the current round (fewer than K when the iteration budget ends)
    rounds: int             # rounds recorded


def used(state: Mapping[str, Any]) -> dict[str, float]:
    return {"tokens": state_usage(state).total, "elapsed_s": state.get("elapsed_s", 0.0)}


def state_usage(state: Mapping[str, Any]) -> Usage:
    """The run's token counters (state keeps plain ints, so checkpoints stay plain data)."""
    return Usage(state.get("prompt_tokens", 0), state.get("completion_tokens", 0), state.get("reasoning_tokens", 0))


def add_usage(state: LoopState, usage: Usage) -> dict[str, int]:
    """The state update that adds `usage` to the run's token counters."""
    total = state_usage(state) + usage
    return {"prompt_tokens": total.prompt_tokens, "completion_tokens": total.completion_tokens,
            "reasoning_tokens": total.reasoning_tokens}


def timed(state: LoopState, started: float) -> float:
    """The run's elapsed time after a step that started at `started` (time.monotonic)."""
    return state.get("elapsed_s", 0.0) + (time.monotonic() - started)


# --- nodes, in the order the loop runs them ---

def plan(rt: Runtime, state: LoopState) -> Command[Literal["produce"]]:
    """Write artifacts/plan.md once (the planner's plan, or an empty one with `[loop] plan = false`)."""
    if state.get("planned"):  # a finished run that is resumed re-enters here
        return Command(goto="produce", update={"status": "running", "stop_reason": ""})
    started = time.monotonic()
    run = rt.run
    usage = Usage.from_json(run.once("plan", lambda: _write_plan(rt)))
    run.events.add(events.plan())
    return Command(goto="produce", update={**add_usage(state, usage), "elapsed_s": timed(state, started),
                                           "planned": True, "status": "running", "stop_reason": ""})


def produce(rt: Runtime, state: LoopState) -> Command[Literal["produce", "verify", "report"]]:
    """One producer turn: steering first, then the model's reply and its actions. The iteration goes to the
    verifier when the producer says it is done, or runs out of turns, or idles twice in a row."""
    started = time.monotonic()
    run, loop = rt.run, rt.settings.loop
    iteration = state.get("completed", 0) + 1
    if reason := stop_requested(run.path):
        return Command(goto="report", update={"status": "stopped", "stop_reason": f"user: {reason}"})
    over = exhausted(rt.settings.budget, used(state), 0)
    if over:
        return Command(goto="report", update={"status": "stopped", "stop_reason": over})
    run.events.add(events.iteration_started(iteration))
    conv = conversation(rt, state)
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
    update: dict[str, Any] = {**add_usage(state, result.usage), "turn": turn, "idle_turns": idle,
                              "conv_len": len(conv), "steer_seen": steer_seen,
                              "claim": result.claim, "elapsed_s": timed(state, started),
                              "repeats": repeats + int(result.repeated),
                              "iteration_repeated": state.get("iteration_repeated", False) or result.repeated}
    return Command(goto="verify" if finished else "produce", update=update)


def verify_node(rt: Runtime, state: LoopState) -> Command[Literal["decide"]]:
    """Stage the workspace and verify it, both journaled: a rerun (crash, retried sandbox error) replays them."""
    started = time.monotonic()
    run = rt.run
    iteration = state.get("completed", 0) + 1
    tree = run.once(f"tree-{iteration:04d}", lambda: stage_tree(run.git_dir, run.workspace))
    verdict = run.once(f"verdict-{iteration:04d}", lambda: verify(rt, iteration, tree, state.get("claim", "")),
                       Verdict.to_json, Verdict.from_json)
    run.events.add(events.verdict(iteration, verdict.verdict, verdict.score, verdict.findings))
    return Command(goto="decide", update={**add_usage(state, verdict.usage), "elapsed_s": timed(state, started)})


def decide(rt: Runtime, state: LoopState) -> Command[Literal["produce", "report"]]:
    """Tally the verified iteration, choose what comes next (accept / iterate / change strategy / stop), tell the
    producer, and close the iteration."""
    started = time.monotonic()
    iteration = state.get("completed", 0) + 1
    verdict = rt.run.recall(f"verdict-{iteration:04d}", Verdict.from_json)
    tree: str = rt.run.recall(f"tree-{iteration:04d}")
    rt.task.on_iteration_end(rt.run.path, iteration, verdict.check, verdict.passed)
    update: dict[str, Any] = tally_iteration(state, iteration, verdict, tree)
    action, reason = decide_action(rt, {**state, **update, "iteration_repeated": state.get("iteration_repeated", False)},
                               verdict)
    if action == "change":
        update.update(change_strategy(rt, state, iteration, reason))
        action = "iterate"
    elif action == "iterate":
        update.update(tell_producer(rt, state, iteration, verdict, update["best_score"]))
    update["elapsed_s"] = timed(state, started)
    close_iteration(rt, {**state, **update}, tree, verdict, action, reason)
    if action == "iterate":
        return Command(goto="produce", update=update)
    update.update({"status": "succeeded" if action == "accept" else "stopped", "stop_reason": reason})
    return Command(goto="report", update=update)


def finish(rt: Runtime, state: LoopState) -> dict[str, Any]:
    """The run ends (accepted, budget, stuck, user): run.json's final status, report.md, `run_finished`."""
    run = rt.run
    status, reason = state.get("status", "stopped"), state.get("stop_reason", "")
    run.update_meta(status=status, stop_reason=reason, budget=_budget_json(rt, state),
                    best_score=state.get("best_score", 0.0), best_iteration=state.get("best_iteration", 0))
    write_report(rt, state)
    run.events.add(events.run_finished(state.get("completed", 0), status, reason))
    return {}


def build_graph(rt: Runtime, checkpointer: Any) -> Any:
    graph = StateGraph(LoopState)
    graph.add_node("plan", partial(plan, rt), destinations=routes(plan))
    if rt.settings.search.islands > 1:  # plan -> produce (K islands, each through its verdict) -> decide
        from orchestrator import islands  # it builds on this module's nodes

        graph.add_node("produce", partial(islands.produce_round, rt), destinations=routes(islands.produce_round),
                       retry_policy=RetryPolicy(max_attempts=3, retry_on=SandboxError))
        graph.add_node("decide", partial(islands.decide_round, rt), destinations=routes(islands.decide_round))
    else:
        graph.add_node("produce", partial(produce, rt), destinations=routes(produce))
        graph.add_node("verify", partial(verify_node, rt), destinations=routes(verify_node),
                       retry_policy=RetryPolicy(max_attempts=3, retry_on=SandboxError))
        graph.add_node("decide", partial(decide, rt), destinations=routes(decide))
    graph.add_node("report", partial(finish, rt))
    graph.add_edge(START, "plan")
    graph.add_edge("report", END)
    return graph.compile(checkpointer=checkpointer)


def routes(node: Callable[..., Any]) -> tuple[str, ...]:
    """Where `node` may go, read from its `Command[Literal[...]]` return type (LangGraph reads it from a plain
    function, not through the `partial` that binds the runtime)."""
    return get_args(get_args(get_type_hints(node)["return"])[0])


# --- what the nodes share ---

def conversation(rt: Runtime, state: LoopState) -> Conversation:
    """The producer's conversation at this checkpoint: the one this process keeps open, or else reopened from its
    file (a resume, or a step replayed after a crash: messages past the checkpoint are dropped)."""
    path = conversation_path(rt, state.get("epoch", 0))
    committed = state.get("conv_len", 0)
    conv = rt.conversation
    if conv is None or conv.path != path or len(conv) != committed:
        conv = rt.conversation = open_conversation(rt, path, committed, _plan_text(rt.run))
    return conv


def conversation_path(rt: Runtime, epoch: int) -> Path:
    """conversations/producer-EE.jsonl; an island's: conversations/island-NN/producer-EE.jsonl."""
    folder = rt.run.path / "conversations"
    if rt.island is not None:
        folder = folder / f"island-{rt.island:02d}"
    return folder / f"producer-{epoch:02d}.jsonl"


def _write_plan(rt: Runtime) -> dict[str, int]:
    """artifacts/plan.md from the planner model; returns the call's usage as the journal keeps it."""
    if not rt.settings.loop.plan:
        (rt.run.artifacts / "plan.md").write_text("", encoding="utf-8")  # [loop] plan = false
        return {}
    message = HumanMessage(content=prompts.PLANNER_PROMPT.format(brief=rt.task.producer_brief()))
    reply, usage = rt.call_model("planner", [message], True, None)
    text = reply.content if isinstance(reply.content, str) else str(reply.content)
    (rt.run.artifacts / "plan.md").write_text(text, encoding="utf-8")
    return usage.to_json()


def _plan_text(run: RunDir) -> str:
    path = run.artifacts / "plan.md"
    return path.read_text(encoding="utf-8") if path.exists() else ""


# --- decide: the tally, the decision, what the producer hears next ---

def tally_iteration(state: LoopState, iteration: int, verdict: Verdict, tree: str) -> dict[str, Any]:
    """The state update of a finished iteration: counters reset, best result, failure and tree histories."""
    accepted = verdict.passed
    best_score, best_iteration = state.get("best_score", 0.0), state.get("best_iteration", 0)
    if accepted and (best_iteration == 0 or verdict.score > best_score):
        best_score, best_iteration = verdict.score, iteration
    fails = push(state.get("fail_history", []), f"pass-{iteration}" if accepted else
                 failure_signature(verdict.verdict, verdict.check.summary, verdict.findings), HISTORY)
    return {"completed": iteration, "turn": 0, "idle_turns": 0, "claim": "", "iteration_repeated": False,
            "consecutive_failures": 0 if accepted else state.get("consecutive_failures", 0) + 1,
            "best_score": best_score, "best_iteration": best_iteration, "fail_history": fails,
            "tree_history": push(state.get("tree_history", []), tree[:12], HISTORY)}


def decide_action(rt: Runtime, stats: dict[str, Any], verdict: Verdict) -> tuple[str, str]:
    """accept / iterate / change (strategy) / stop, with the reason."""
    accepted = verdict.passed
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


def tell_producer(rt: Runtime, state: LoopState, iteration: int, verdict: Verdict,
                   best_score: float) -> dict[str, Any]:
    """The verdict and what to do next, added to the producer's conversation (compacted first when it outgrew
    the context)."""
    update: dict[str, Any] = {}
    conv = conversation(rt, state)
    if sum(conv.sizes) > COMPACT_FACTOR * rt.token_limits("producer")[0]:
        conv, update = _compact(rt, state, iteration)
    next_step = (prompts.NEXT_AFTER_PASS.format(score=verdict.score, best=best_score) if verdict.passed
                 else prompts.NEXT_AFTER_FAIL)
    # The findings carry the check's output: its first line is enough here (a small context is precious).
    summary = verdict.check.summary.splitlines()[0] if verdict.findings else verdict.check.summary
    conv.add(HumanMessage(content=prompts.FINDINGS_MESSAGE.format(
        iteration=iteration, verdict=verdict.verdict, summary=summary,
        findings="\n".join(f"- {f}" for f in verdict.findings) or "- (none)", next_step=next_step)))
    return {**update, "conv_len": len(conv)}


def _new_epoch(rt: Runtime, state: LoopState, reason: str, advice: str) -> tuple[Conversation, dict[str, Any]]:
    """A fresh producer context: system prompt, task, and a summary of the attempts so far."""
    epoch = state.get("epoch", 0) + 1
    path = conversation_path(rt, epoch)
    path.unlink(missing_ok=True)  # left by a step that crashed before its checkpoint
    conv = open_conversation(rt, path, 0, _plan_text(rt.run))
    conv.add(HumanMessage(content=prompts.RESTART_SUMMARY.format(
        reason=reason, summary=iteration_summaries(rt.run, last=10), advice=advice)))
    return conv, {"epoch": epoch, "conv_len": len(conv)}


def change_strategy(rt: Runtime, state: LoopState, iteration: int, reason: str) -> dict[str, Any]:
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


# --- closing an iteration ---

def close_iteration(rt: Runtime, after: dict[str, Any], tree: str, verdict: Verdict, action: str,
                    reason: str) -> str:
    """The finished iteration's bookkeeping, each part once across crashes (keyed events, a commit per
    iteration): its commit, the `commit` event, iterations/NNNN.json, the `decision` event and run.json.
    `after` is the loop state the iteration leaves. Returns the commit. An island's runtime (`rt.island`) journals
    its commit too: a round closes several iterations, and only the last one is HEAD after a crash."""
    run, iteration = rt.run, after["completed"]
    line = f"{verdict.verdict} (score {verdict.score:.4g})" + (f": {printable(shorten(verdict.findings[0], 120))}"
                                                               if verdict.findings else "")  # a NUL cannot be in argv
    if rt.island is None:
        sha = commit_tree(run.git_dir, iteration, tree, line)
    else:
        sha = run.once(f"commit-{iteration:04d}", lambda: commit_tree(run.git_dir, iteration, tree, line))
    run.events.add(events.commit(iteration, sha, f"iteration {iteration}: {line}"))
    write_iteration_record(run, iteration, sha, verdict, action, reason, rt.island)
    run.events.add(events.decision(iteration, action, reason))
    run.update_meta(iteration=iteration, best_score=after["best_score"], best_iteration=after["best_iteration"],
                    budget=_budget_json(rt, after))
    return sha


def _budget_json(rt: Runtime, state: Mapping[str, Any]) -> dict[str, Any]:
    limits = rt.settings.budget
    return {"limits": {"max_iterations": limits.max_iterations, "max_hours": limits.max_hours,
                       "max_tokens": limits.max_tokens},
            "used": {"iterations": state.get("completed", 0), "elapsed_s": round(state.get("elapsed_s", 0.0), 1),
                     "tokens": int(used(state)["tokens"]), "prompt_tokens": state.get("prompt_tokens", 0),
                     "completion_tokens": state.get("completion_tokens", 0),
                     "reasoning_tokens": state.get("reasoning_tokens", 0)}}
