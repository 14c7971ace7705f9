"""A population search: `[search] islands = K` producers in flight (islands, as OpenEvolve and AlphaEvolve run
them), their candidates verified at the same time, one node recording them all.

With K > 1 the graph is plan -> produce -> decide -> (produce | report), where one pass is a ROUND:
- `produce_round` runs one worker per island in a thread pool. Island k has its own conversation
  (`conversations/island-NN/`), workspace (`workspace/` for island 0, `islands/NN/workspace/` for the others) and
  warm sandbox; its worker runs the producer's turns to the end of its iteration, stages its workspace and
  verifies it (on a cluster the evaluation is a Ray task: K evaluations in flight). Island k's candidate is
  iteration `completed + 1 + k`, so every per-iteration file, event key and program-database row keeps its meaning:
  an iteration is one evaluated candidate. Each worker journals its result per iteration (`produced-N`, `tree-N`,
  `verdict-N`): a rerun of the node (kill -9, a retried sandbox error) replays the islands that finished and redoes
  only the others, so no island's verdict is lost or repeated.
- `decide_round` is the one writer: in iteration order it records each verdict (the task's program database,
  the commit, iterations/NNNN.json, the events), keeps the best across islands, decides for the round as the
  one-producer loop does (accept / iterate / change strategy / stop), tells each island's producer its findings,
  and every `migrate_every` rounds copies the best candidate so far into the islands whose own best is worse.

Why a pool inside one node rather than LangGraph `Send` branches: islands take different numbers of producer turns,
so per-turn `Send` branches would need a deferred barrier node, and every shared counter (tokens, elapsed time,
histories; plain totals in state today) would need a reducer, changing the one-producer loop's state. One node
per round keeps the state plain, the one-producer graph untouched, and resume exact through the journal; the price
is that a crash mid-round redoes the unfinished islands' producer turns (not their verdicts)."""
from __future__ import annotations

import os
import shutil
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any, Literal, TypedDict

from langchain_core.messages import HumanMessage
from langgraph.types import Command

from orchestrator import events, prompts
from orchestrator.agents.producer import producer_turn
from orchestrator.agents.verifier import Verdict, verify
from orchestrator.budgets import exhausted, push
from orchestrator.control import read_steers, stop_requested
from orchestrator.events import read_record
from orchestrator.graph import (
    HISTORY,
    REPEAT_TEMPERATURE_STEP,
    LoopState,
    add_usage,
    change_strategy,
    close_iteration,
    conversation,
    decide_action,
    tally_iteration,
    tell_producer,
    timed,
    used,
)
from orchestrator.runtime import Runtime
from orchestrator.safegit import git_text
from orchestrator.tokens import Usage
from orchestrator.workspace import restore_tree, stage_tree


class IslandState(TypedDict):
    epoch: int          # the island producer's context epoch
    conv_len: int       # messages of that epoch committed at this checkpoint
    head: str           # the commit its workspace holds (its last iteration's, or a migrated one)
    best_score: float   # its best accepted score (a migrated candidate counts as its own)
    best_iteration: int
    head_iteration: int  # the iteration whose commit `head` is (0: the starting files): the next one's parent


class _Stopped(Exception):
    """A stop request arrived during a round: the unfinished islands leave their work unjournaled."""


@contextmanager
def on_island(island: int | None) -> Iterator[None]:
    """Events built inside the block carry `island` (events.ISLAND)."""
    token = events.ISLAND.set(island)
    try:
        yield
    finally:
        events.ISLAND.reset(token)


def produce_round(rt: Runtime, state: LoopState) -> Command[Literal["decide", "report"]]:
    """One candidate per island, produced and verified concurrently (see the module's docstring)."""
    started = time.monotonic()
    run = rt.run
    if reason := stop_requested(run.path):
        return Command(goto="report", update={"status": "stopped", "stop_reason": f"user: {reason}"})
    if over := exhausted(rt.settings.budget, used(state), 0):
        return Command(goto="report", update={"status": "stopped", "stop_reason": over})
    first = state.get("completed", 0) + 1
    size = max(1, min(rt.settings.search.islands, rt.settings.budget.max_iterations - first + 1))
    islands = island_states(rt, state)
    steer_seen = state.get("steer_seen", 0)
    steers = read_steers(run.path, steer_seen)
    for offset, text in enumerate(steers):  # every island hears the user
        run.events.add(events.steer(first, steer_seen + offset, text))
    thinking = state.get("consecutive_failures", 0) >= 2 or state.get("strategy_changes", 0) > 0
    temperature = REPEAT_TEMPERATURE_STEP * state.get("repeats", 0)

    runtimes = [rt.for_island(k) for k in range(size)]

    def work(k: int) -> tuple[dict[str, Any], Verdict]:
        return _island_iteration(runtimes[k], islands[k], first + k, steers, thinking, temperature)

    try:
        with ThreadPoolExecutor(max_workers=size, thread_name_prefix="m3lab-island") as pool:
            results = list(pool.map(work, range(size)))
    except _Stopped:
        return Command(goto="report", update={"status": "stopped",
                                              "stop_reason": f"user: {stop_requested(run.path) or 'stop'}"})
    usage = sum((Usage.from_json(p["usage"]) + v.usage for p, v in results), Usage())
    for k, (produced, _) in enumerate(results):
        islands[k] = {**islands[k], "conv_len": produced["conv_len"]}
    repeated = [bool(p["repeated"]) for p, _ in results]
    return Command(goto="decide", update={
        **add_usage(state, usage), "elapsed_s": timed(state, started), "steer_seen": steer_seen + len(steers),
        "repeats": state.get("repeats", 0) + sum(repeated), "iteration_repeated": all(repeated),
        "islands": islands, "round_size": size, "claim": ""})


def decide_round(rt: Runtime, state: LoopState) -> Command[Literal["produce", "report"]]:
    """The one writer of the round: record the islands' verdicts in iteration order, decide, tell the producers,
    migrate the best candidate (see the module's docstring)."""
    started = time.monotonic()
    run = rt.run
    first, size = state.get("completed", 0) + 1, state["round_size"]
    islands: list[IslandState] = [IslandState(**i) for i in state["islands"]]  # type: ignore[typeddict-item]
    tally: dict[str, Any] = dict(state)
    update: dict[str, Any] = {}
    closed: list[tuple[int, str, Verdict, dict[str, Any]]] = []
    signatures: list[str] = []
    trees: list[str] = []
    for k in range(size):
        iteration = first + k
        verdict = run.recall(f"verdict-{iteration:04d}", Verdict.from_json)
        tree: str = run.recall(f"tree-{iteration:04d}")
        # The program database; a checkpoint from before head_iteration was kept gives the old parent rule.
        rt.task.on_iteration_end(run.path, iteration, verdict.check, verdict.passed, islands[k].get("head_iteration"))
        update.update(tally_iteration(tally, iteration, verdict, tree))  # type: ignore[arg-type]
        tally.update(update)
        signatures.append(update["fail_history"][-1])
        trees.append(update["tree_history"][-1])
        if verdict.passed and (islands[k]["best_iteration"] == 0 or verdict.score > islands[k]["best_score"]):
            islands[k]["best_score"], islands[k]["best_iteration"] = verdict.score, iteration
        closed.append((iteration, tree, verdict, dict(tally)))
    # The stuck rules count rounds: one history entry per round holds every island's, so "the same failure" or
    # "no change" over `stuck_patience` entries means every island is stuck, not K islands in one round.
    update.update(fail_history=push(state.get("fail_history", []), " | ".join(signatures), HISTORY),
                  tree_history=push(state.get("tree_history", []), " ".join(trees), HISTORY))
    tally.update(update)
    action, reason = decide_action(rt, {**tally, "iteration_repeated": state.get("iteration_repeated", False)},
                               _deciding(rt, [c[2] for c in closed]))
    if action == "change":
        for k, (iteration, _, _, _) in enumerate(closed):
            with on_island(k):
                changed = change_strategy(rt.for_island(k), {**tally, **islands[k]}, iteration, reason)  # type: ignore
            islands[k]["epoch"], islands[k]["conv_len"] = changed["epoch"], changed["conv_len"]
        update.update(strategy_changes=state.get("strategy_changes", 0) + 1, fail_history=[], tree_history=[])
        action = "iterate"
    elif action == "iterate":
        for k, (iteration, _, verdict, _) in enumerate(closed):
            with on_island(k):
                told = tell_producer(rt.for_island(k), {**tally, **islands[k]}, iteration, verdict,  # type: ignore
                                      tally["best_score"])
            islands[k]["epoch"] = told.get("epoch", islands[k]["epoch"])
            islands[k]["conv_len"] = told["conv_len"]
    update["elapsed_s"] = timed(state, started)
    for k, (iteration, tree, verdict, after) in enumerate(closed):
        with on_island(k):
            sha = close_iteration(rt.for_island(k), {**after, "elapsed_s": update["elapsed_s"]}, tree, verdict,
                                  action, reason)
        islands[k]["head"], islands[k]["head_iteration"] = sha, iteration
    rounds = state.get("rounds", 0) + 1
    if action == "iterate":
        migrate(rt, islands, rounds, {**tally, **update})
    update.update(islands=islands, rounds=rounds)
    if action == "iterate":
        return Command(goto="produce", update=update)
    update.update({"status": "succeeded" if action == "accept" else "stopped", "stop_reason": reason})
    return Command(goto="report", update=update)


def migrate(rt: Runtime, islands: list[IslandState], rounds: int, after: dict[str, Any]) -> None:
    """Every `migrate_every` rounds: the best candidate so far (its commit) replaces the workspace of every other
    island whose own best is worse, and their producers are told; those islands then count it as their best, so
    they are not reset again until something better appears elsewhere."""
    every, best_iteration = rt.settings.search.migrate_every, after.get("best_iteration", 0)
    if not every or rounds % every or not best_iteration:
        return
    best_score = after["best_score"]
    best = read_record(rt.run.iteration_path(best_iteration))
    source, sha = best.island, best.commit
    if source is None or not sha:
        raise ValueError(f"iteration {best_iteration} of run {rt.run.id} has no island or no commit")
    targets = [k for k, i in enumerate(islands)
               if k != source and (i["best_iteration"] == 0 or i["best_score"] < best_score)]
    for k in targets:
        irt = rt.for_island(k)
        ensure_workspace(irt, sha)
        restore_tree(rt.run.git_dir, sha, irt.workspace)
        conv = conversation(irt, islands[k])  # type: ignore[arg-type]
        conv.add(HumanMessage(content=prompts.MIGRATION_MESSAGE.format(source=source, score=best_score,
                                                                       iteration=best_iteration)))
        islands[k]["head"], islands[k]["head_iteration"], islands[k]["conv_len"] = sha, best_iteration, len(conv)
        islands[k]["best_score"], islands[k]["best_iteration"] = best_score, best_iteration
    if targets:
        rt.run.events.add(events.migration(best_iteration, rounds, source, best_score, targets))


def island_states(rt: Runtime, state: LoopState) -> list[IslandState]:
    """The islands of the checkpoint; at the first round, K fresh ones whose workspaces hold the run's last
    commit (the starting files)."""
    known: list[IslandState] = [IslandState(**i) for i in state.get("islands", [])]  # type: ignore[typeddict-item]
    if len(known) < rt.settings.search.islands:
        head = git_text(rt.run.git_dir, "rev-parse", "--verify", "HEAD^{commit}").strip()
        known += [IslandState(epoch=0, conv_len=0, head=head, best_score=0.0, best_iteration=0, head_iteration=0)
                  for _ in range(rt.settings.search.islands - len(known))]
    return known


def ensure_workspace(irt: Runtime, head: str) -> None:
    """An island's workspace, made whole the first time it is needed (filled beside it, then renamed into place,
    so a crash never leaves a half-filled one)."""
    if irt.workspace.exists():
        return
    fresh = irt.workspace.with_name(irt.workspace.name + ".new")
    shutil.rmtree(fresh, ignore_errors=True)
    fresh.mkdir(parents=True)
    restore_tree(irt.run.git_dir, head, fresh)
    os.replace(fresh, irt.workspace)


def _island_iteration(irt: Runtime, island: IslandState, iteration: int, steers: list[str], thinking: bool,
                      temperature: float) -> tuple[dict[str, Any], Verdict]:
    """One island's iteration in its worker thread, each part journaled under the iteration's keys."""
    run = irt.run
    irt.head = island["head"]
    with on_island(irt.island):
        ensure_workspace(irt, island["head"])
        run.events.add(events.iteration_started(iteration))
        produced = run.once(f"produced-{iteration:04d}",
                            lambda: _produce(irt, island, iteration, steers, thinking, temperature))
        tree = run.once(f"tree-{iteration:04d}", lambda: stage_tree(run.git_dir, irt.workspace))
        verdict = run.once(f"verdict-{iteration:04d}", lambda: verify(irt, iteration, tree, produced["claim"]),
                           Verdict.to_json, Verdict.from_json)
        run.events.add(events.verdict(iteration, verdict.verdict, verdict.score, verdict.findings))
    return produced, verdict


def _produce(irt: Runtime, island: IslandState, iteration: int, steers: list[str], thinking: bool,
             temperature: float) -> dict[str, Any]:
    """The island producer's turns until it is done, runs out of turns or idles twice in a row (the same rule as
    the one-producer loop). Returns what the journal keeps: conversation length, claim, usage, repeated."""
    loop = irt.settings.loop
    conv = conversation(irt, island)  # type: ignore[arg-type]
    for text in steers:
        conv.add(HumanMessage(content=prompts.STEER_MESSAGE.format(text=text)))
    turn = idle = 0
    usage, repeated = Usage(), False
    while True:
        if stop_requested(irt.run.path):
            raise _Stopped
        result = producer_turn(irt, conv, iteration, thinking, temperature)
        usage, turn = usage + result.usage, turn + 1
        idle = idle + 1 if result.idle else 0
        repeated = repeated or result.repeated
        if result.done or turn >= loop.max_turns or idle >= 2:
            if not result.done:
                conv.add(HumanMessage(content=prompts.TURN_LIMIT_MESSAGE))
            return {"conv_len": len(conv), "claim": result.claim, "usage": usage.to_json(), "repeated": repeated}


def _deciding(rt: Runtime, verdicts: list[Verdict]) -> Verdict:
    """The verdict the round's decision rests on: one that completes the task, else the best accepted one, else
    the last."""
    complete = [v for v in verdicts if v.passed and rt.task.is_complete(v.check)]
    if complete:
        return complete[0]
    accepted = [v for v in verdicts if v.passed]
    return max(accepted, key=lambda v: v.score) if accepted else verdicts[-1]
