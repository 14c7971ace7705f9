"""The producer: one model turn at a time (each turn is a checkpointed graph step)."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from langchain_core.messages import AIMessage, HumanMessage, ToolMessage

from orchestrator import events, prompts
from orchestrator.agents.actions import TOOL_SCHEMAS, parse_reply
from orchestrator.agents.tools import clip, execute
from orchestrator.conversation import Conversation, system_and_task
from orchestrator.runtime import Runtime, finish_reason_of
from orchestrator.tokens import Usage
from orchestrator.workspace import restore_tree
from tasks.base import exec_fields

ARG_PREVIEW = 300


@dataclass(frozen=True)
class TurnResult:
    done: bool
    claim: str
    usage: Usage
    idle: bool
    """The reply contained no action at all."""
    repeated: bool = False
    """The reply was word for word the previous reply of this context (a stuck signal)."""


def system_prompt(rt: Runtime) -> str:
    main_file = rt.task.main_file()
    rule = prompts.MAIN_FILE_RULE.format(main_file=main_file) if main_file else ""
    return prompts.PRODUCER_SYSTEM.format(main_file_rule=rule)


def task_message(rt: Runtime, plan: str) -> str:
    if not plan.strip():  # no planner ([loop] plan = false): the task alone
        return prompts.TASK_MESSAGE.split("# Task\n", 1)[1].format(brief=rt.task.producer_brief())
    return prompts.TASK_MESSAGE.format(brief=rt.task.producer_brief(), plan=plan)


def open_conversation(rt: Runtime, path: Path, committed: int, plan: str) -> Conversation:
    conv = Conversation(path, committed)
    if len(conv) == 0:
        conv.add(*system_and_task(system_prompt(rt), task_message(rt, plan)))
    return conv


def producer_turn(rt: Runtime, conv: Conversation, iteration: int, thinking: bool,
                  extra_temperature: float = 0.0) -> TurnResult:
    """Ask the model once, carry out every action it asked for, append all of it to the conversation.
    A reply cut at the completion limit, or repeating an earlier one, is recorded and said to the model."""
    reply, usage = rt.call_model("producer", conv.messages, thinking, iteration, tools=TOOL_SCHEMAS,
                                 sizes=conv.sizes, extra_temperature=extra_temperature)
    repeated = _repeats_earlier_reply(conv, reply)
    conv.add(reply)
    actions = parse_reply(reply.tool_calls or [], _text(reply), rt.task.main_file())
    done, claim = False, ""
    loop = rt.settings.loop
    for action in actions:
        if done:
            break
        obs, result = execute(action, rt.workspace, rt.producer_sandbox, loop.exec_timeout_s,
                              loop.observation_chars, lambda: _roll_back(rt, iteration))
        _record(rt, iteration, action.tool, action.args, obs.ok, obs.text, result)
        if action.call_id is not None:
            conv.add(ToolMessage(content=obs.text, tool_call_id=action.call_id))
        else:
            conv.add(HumanMessage(content=f"Observation ({action.tool}):\n{obs.text}"))
        if obs.done:
            done, claim = True, str(action.args.get("summary", ""))
    answered = {a.call_id for a in actions}
    for call in reply.tool_calls or []:  # every native call needs an answer, even after done
        if call.get("id") not in answered:
            conv.add(ToolMessage(content="not run: work was already submitted", tool_call_id=call["id"]))
    notes = []
    if finish_reason_of(reply) == "length":
        limit = rt.token_limits("producer")[1]
        notes.append(prompts.CUT_AT_LIMIT_MESSAGE.format(limit=limit, acted="" if actions else prompts.CUT_NO_ACTION))
    elif not actions:
        notes.append(prompts.NO_ACTION_MESSAGE)
    if repeated:
        rt.run.events.add(events.repeated_output(
            iteration, "producer", "sampling temperature raised; a failed iteration changes strategy at once"))
        notes.append(prompts.REPEATED_MESSAGE)
    if notes:
        conv.add(HumanMessage(content="\n\n".join(notes)))
    return TurnResult(done, claim, usage, idle=not actions, repeated=repeated)


def _repeats_earlier_reply(conv: Conversation, reply: AIMessage) -> bool:
    """Word for word the same text and tool calls as the previous reply of this context, whatever came back in
    between (an observation, findings). Only the previous one: a capable model that edits, runs the tests, edits
    and runs them again is not repeating itself."""
    previous = next((m for m in reversed(conv.messages) if isinstance(m, AIMessage)), None)
    key = _reply_key(reply)
    return previous is not None and bool(key.strip()) and _reply_key(previous) == key


def _reply_key(reply: AIMessage) -> str:
    calls = [(c.get("name"), json.dumps(c.get("args"), sort_keys=True)) for c in reply.tool_calls or []]
    return _text(reply).strip() + (json.dumps(calls) if calls else "")


def _text(reply: AIMessage) -> str:
    if isinstance(reply.content, str):
        return reply.content
    return "\n".join(p.get("text", "") for p in reply.content if isinstance(p, dict))


def _record(rt: Runtime, iteration: int, tool: str, args: dict, ok: bool, output: str, result) -> None:
    preview = {k: (v if len(str(v)) <= ARG_PREVIEW else str(v)[:ARG_PREVIEW] + "...") for k, v in args.items()}
    run = rt.run
    run.events.add(events.tool_call(iteration, "producer", tool, preview, ok, clip(output, 2000)))
    if result is not None:
        log = run.write_log(f"exec/{iteration:04d}-{run.events.last_seq + 1:07d}.json",
                            json.dumps({"cmd": args.get("command"), "stdout": result.stdout, "stderr": result.stderr}))
        run.events.add(events.exec_event(iteration, exec_fields(
            "producer", str(args.get("command")), result.exit_code, result.reason, result.duration_s,
            result.stdout, result.stderr, log=str(log))))


def _roll_back(rt: Runtime, iteration: int) -> str:
    """After a quota overrun: the workspace goes back to the last committed tree (this iteration's changes so far
    are lost, and the bytes that filled the disk with them)."""
    restore_tree(rt.run.git_dir, rt.head, rt.workspace)
    rt.run.events.add(events.rollback(iteration, "quota", "HEAD"))
    return ("The workspace went over its disk quota and was rolled back to the last committed state (your "
            "changes of this iteration are gone). Keep large outputs out of /work.")
