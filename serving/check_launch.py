"""Check launch commands against the installed vLLM, without starting anything.

Runs inside the vLLM venv (`python -m serving.check_launch < argvs.json`): reads a JSON list of argument lists
(the part after `-m vllm.entrypoints.openai.api_server`), parses each with vLLM's own serve parser, runs its
pre-load validation, checks the tool-call / reasoning parser names against vLLM's registries and our plugin's
section of `--additional-config`. Prints a JSON list
of `{"ok": bool, "problems": [...]}`. This is how `m3lab serve --dry-run --check` proves a profile matches the vLLM
version it will run on.
"""
from __future__ import annotations

import contextlib
import io
import json
import sys
from typing import Any


def _parser() -> Any:
    from vllm.entrypoints.launchers.cli_args import make_arg_parser
    from vllm.utils.argparse_utils import FlexibleArgumentParser

    return make_arg_parser(FlexibleArgumentParser(prog="vllm-api-server"))


def check_args(parser: Any, args: list[str]) -> dict[str, Any]:
    from vllm.entrypoints.launchers.cli_args import validate_parsed_serve_args
    from vllm.reasoning import ReasoningParserManager
    from vllm.tool_parsers import ToolParserManager

    from serving.plugin.options import PluginOptionError, plugin_options

    problems: list[str] = []
    stderr = io.StringIO()
    try:
        with contextlib.redirect_stderr(stderr):  # argparse prints usage before exiting on bad flags
            parsed = parser.parse_args(args)
    except SystemExit:
        return {"ok": False, "problems": [stderr.getvalue().strip().splitlines()[-1]]}
    try:
        validate_parsed_serve_args(parsed)
    except (TypeError, ValueError) as exc:
        problems.append(str(exc))
    tool = getattr(parsed, "tool_call_parser", None)
    if tool and tool not in ToolParserManager.list_registered():
        problems.append(f"unknown --tool-call-parser {tool!r}")
    reasoning = getattr(parsed, "reasoning_parser", None)
    if reasoning and reasoning not in ReasoningParserManager.list_registered():
        problems.append(f"unknown --reasoning-parser {reasoning!r}")
    try:  # our plugin's section of --additional-config (the plugin would refuse it at model load)
        plugin_options(getattr(parsed, "additional_config", None))
    except PluginOptionError as exc:
        problems.append(str(exc))
    return {"ok": not problems, "problems": problems}


def main() -> None:
    argvs = json.load(sys.stdin)
    parser = _parser()
    print(json.dumps([check_args(parser, [str(a) for a in argv]) for argv in argvs]))


if __name__ == "__main__":
    main()
