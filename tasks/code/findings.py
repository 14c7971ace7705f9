"""Findings a model and a person can act on, from a failed check's output.

For pytest (the usual check) the failing tests come first, each with its first error line and the place it was
raised, read from pytest's `--tb=short` sections; then the output's tail, cut on line boundaries only."""
from __future__ import annotations

import re
from dataclasses import dataclass

from tasks.text import clip_tail

PYTEST_ENV = {"PYTEST_ADDOPTS": "-rA --tb=short"}
"""Added to the check's environment: short tracebacks and a summary line per test (only pytest reads it; a
check command's own options come later on pytest's command line and win)."""

MAX_LISTED = 10
"""Failing tests named one by one; the rest are counted."""

_SECTION = re.compile(r"^_{3,} (.+?) _{3,}$", re.MULTILINE)
_BANNER = re.compile(r"^={3,} .* ={3,}$", re.MULTILINE)
_FRAME = re.compile(r"^(\S+?):(\d+): in (\S+)")
_FILE_LINE = re.compile(r'File "(?:/work/)?([^"]+)", line (\d+)')
_EXCEPTION = re.compile(r"^[A-Za-z_][\w.]*(Error|Exception|Failed|Exit|Interrupt|Warning)\b")
_COUNTS = re.compile(r"^(?:=+ )?(\d+ (?:failed|passed|error|errors)\b.*? in [\d.]+s)", re.MULTILINE)


@dataclass(frozen=True)
class FailedTest:
    name: str
    """The test (or `ERROR collecting FILE`) as pytest's section header names it."""
    error: str
    """The first line that says what went wrong (the exception and its message)."""
    location: str
    """file:line where it was raised (the innermost frame shown), or '' when pytest showed none."""

    def line(self) -> str:
        where = f" (at {self.location})" if self.location else ""
        return f"{self.name}: {self.error}{where}"


def failed_tests(output: str) -> list[FailedTest]:
    """Every failure/error section of pytest's output with `--tb=short`, in order."""
    tests = []
    headers = list(_SECTION.finditer(output))
    for i, header in enumerate(headers):
        end = headers[i + 1].start() if i + 1 < len(headers) else len(output)
        body = output[header.end():end]
        if banner := _BANNER.search(body):  # the last section ends at the next ==== banner
            body = body[:banner.start()]
        tests.append(_parse_section(header.group(1).strip(), body))
    return [t for t in tests if t.error]


def _parse_section(name: str, body: str) -> FailedTest:
    errors = [line[1:].strip() for line in body.splitlines() if line.startswith("E ")]
    errors = [e for e in errors if e]
    error = next((e for e in errors if _EXCEPTION.match(e)), errors[0] if errors else "")
    location = ""
    for line in body.splitlines():
        if line.startswith("E "):
            break
        if frame := _FRAME.match(line):
            location = f"{frame.group(1)}:{frame.group(2)}"
    if file_line := next((m for e in errors if (m := _FILE_LINE.search(e))), None):
        location = f"{file_line.group(1)}:{file_line.group(2)}"  # a SyntaxError names the file it is in
    return FailedTest(name, error, location)


def failure_finding(command: str, why: str, output: str, tail_chars: int = 2500) -> str:
    """The finding of a failed check: the headline, the failing tests (pytest), then the output's tail."""
    tests = failed_tests(output)
    counts = _COUNTS.findall(output)
    headline = f"`{command}` failed ({why})"
    if counts:
        headline += f": {counts[-1]}"
    parts = [headline]
    if tests:
        listed = [f"- {t.line()}" for t in tests[:MAX_LISTED]]
        if len(tests) > MAX_LISTED:
            listed.append(f"- ... and {len(tests) - MAX_LISTED} more")
        parts.append("Failing tests:\n" + "\n".join(listed))
    parts.append("Output tail:\n" + clip_tail(output, tail_chars))
    return "\n".join(parts)
