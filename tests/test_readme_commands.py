"""Every command in the README's ```bash blocks, run as written (placeholders filled, budgets short) against the
embedded set-up: it works, or it ends in one line that says what is missing and how to fix it. Never a
traceback. So the README cannot drift from the CLI."""
from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EMBEDDED = ROOT / "examples" / "embedded.toml"
SHORT_ITERATIONS = 1
"""Budgets of README runs are cut to this many iterations (more are added by `resume`)."""
TIMEOUT_S = 900


@dataclass(frozen=True)
class Command:
    line: str
    """As written in the README (comment removed)."""
    args: list[str]

    @property
    def m3lab(self) -> list[str]:
        return self.args[1:] if self.args and self.args[0] == "m3lab" else []


def readme_commands(text: str) -> list[Command]:
    """Each command line of every ```bash block; `[--opt V]` optional parts are kept (they are exercised too)."""
    commands = []
    for block in re.findall(r"^```bash\n(.*?)^```", text, re.DOTALL | re.MULTILINE):
        for line in block.splitlines():
            args = shlex.split(re.sub(r"\[([^\]|]*)\]", r"\1", line), comments=True)
            if args:
                commands.append(Command(line.split("  #")[0].strip(), args))
    return commands


def skip_reason(cmd: Command) -> str | None:
    """Why a README command is not run here (None: it is run)."""
    if cmd.args[0].startswith("./scripts/"):
        return "a set-up command itself: this test runs after it"
    if cmd.m3lab[:1] == ["optimize"] and "cuda" in cmd.args or "--gpus" in cmd.args:
        return "needs a GPU"
    if cmd.m3lab[:2] == ["serve", "stop"]:
        return "would stop the shared embedded server the other tests use"
    if cmd.m3lab[:1] == ["ui"]:
        return "a long-running web server (tests/orchestrator/viewer covers it)"
    return None


def prepared(cmd: Command, run_id: str | None) -> list[str]:
    """The command with placeholders filled and short budgets on the embedded settings."""
    args = [run_id if a == "ID" and run_id else a for a in cmd.args]
    args[0] = str(Path(sys.executable).parent / "m3lab") if args[0] == "m3lab" else args[0]
    if "--max-iterations" in args:
        i = args.index("--max-iterations")
        args[i + 1] = str(min(int(args[i + 1]), SHORT_ITERATIONS + 1))
    if cmd.m3lab[:2] == ["run", "code"] or cmd.m3lab[:1] in (["optimize"], ["reproduce"]):
        args += ["--max-iterations", str(SHORT_ITERATIONS)]
    if cmd.m3lab[:1] in (["run"], ["runs"], ["optimize"], ["reproduce"]) and "--config" not in args:
        args += ["--config", str(EMBEDDED)]
    return args


def assert_works_or_says_why(cmd: Command, proc: subprocess.CompletedProcess) -> None:
    text = proc.stdout + proc.stderr
    # stderr only: stdout may quote a check's output (findings), tracebacks of the producer's code included
    assert "Traceback (most recent call last)" not in proc.stderr, f"{cmd.line}\n{text[-3000:]}"
    if proc.returncode != 0:  # allowed when it says why: an `error:` line, or the m3lab command that fixes it
        errors = [line for line in proc.stderr.splitlines() if line.strip()]
        says_why = (errors and errors[-1].startswith("error:")) or re.search(r"\(m3lab \w+[^)]*\)|`m3lab ", text)
        assert says_why, f"{cmd.line}: exit {proc.returncode}\n{text[-3000:]}"


@pytest.mark.vllm
@pytest.mark.docker
@pytest.mark.slow
def test_every_readme_command(tmp_path: Path, embedded_endpoint: tuple[str, str], sandbox_image: str) -> None:
    commands = readme_commands((ROOT / "README.md").read_text(encoding="utf-8"))
    assert len(commands) >= 10, "the README's command blocks were not found"
    work = tmp_path / "work"  # runs/ lands here, not in the repository
    work.mkdir()
    for folder in ("examples", "tasks"):  # the paths the README's commands name, relative to the repository
        (work / folder).symlink_to(ROOT / folder)
    env = {**os.environ, "COLUMNS": "80", "M3LAB_BASE_URL": embedded_endpoint[0]}
    run_id, skipped = None, []
    for cmd in commands:
        if reason := skip_reason(cmd):
            skipped.append(f"{cmd.line}: {reason}")
            continue
        proc = subprocess.run(prepared(cmd, run_id), cwd=work, env=env, capture_output=True, text=True,
                              timeout=TIMEOUT_S)
        assert_works_or_says_why(cmd, proc)
        if cmd.m3lab[:2] == ["run", "code"]:
            assert proc.returncode == 0, proc.stderr[-3000:]
            run_id = json.loads(subprocess.run(prepared(Command("", ["m3lab", "runs", "list", "--json"]), None),
                                               cwd=work, env=env, capture_output=True, text=True).stdout)[0]["id"]
            assert f"started in {work / 'runs' / run_id}\n" in proc.stderr  # the path on its own line
    print("skipped README commands:\n" + "\n".join(skipped))
    assert run_id is not None, "the README no longer starts a run"


def test_readme_commands_are_parsed_with_placeholders_and_budgets() -> None:
    text = "```bash\nm3lab runs resume ID [--max-iterations 50]   # comment\n./scripts/demo\n```\n"
    resume, demo = readme_commands(text)
    assert prepared(resume, "RUN")[1:] == ["runs", "resume", "RUN", "--max-iterations", "2", "--config",
                                           str(EMBEDDED)]
    assert skip_reason(demo) and skip_reason(resume) is None
