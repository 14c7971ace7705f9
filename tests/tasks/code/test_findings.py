"""Findings of a failed check: real pytest output (pytest run on the bundled slugify task and broken variants of
it) must become failing test names with their first error line and location, then a tail cut on whole lines."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tasks.code.findings import PYTEST_ENV, failed_tests, failure_finding
from tasks.text import clip_tail, shorten

SLUGIFY = Path(__file__).resolve().parents[3] / "examples" / "code" / "slugify"

WRONG = 'import re\ndef slugify(title):\n    return re.sub(r"[^a-z0-9]+", "-", title.lower())\n'


def _pytest_output(tmp_path: Path, main: str | None) -> str:
    """pytest's real output on the slugify task with `main` as slugify.py (None: the shipped stub)."""
    work = tmp_path / "work"
    shutil.copytree(SLUGIFY, work)
    if main is not None:
        (work / "slugify.py").write_text(main)
    env = {**os.environ, **PYTEST_ENV}
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"], cwd=work, env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0
    return proc.stdout + proc.stderr


def test_stub_names_every_failing_test_with_error_and_location(tmp_path: Path) -> None:
    tests = failed_tests(_pytest_output(tmp_path, None))
    assert [t.name for t in tests] == ["test_lowercase_and_hyphens", "test_punctuation_is_dropped",
                                       "test_runs_of_separators_collapse_and_ends_are_trimmed", "test_empty"]
    assert all(t.error == "NotImplementedError" and t.location == "slugify.py:3" for t in tests)


def test_wrong_answer_shows_the_assertion_at_the_test_line(tmp_path: Path) -> None:
    tests = {t.name: t for t in failed_tests(_pytest_output(tmp_path, WRONG))}
    assert "test_lowercase_and_hyphens" not in tests  # that one passes
    empty = tests["test_empty"]
    assert empty.error == "AssertionError: assert '-' == ''"
    assert empty.location == "test_slugify.py:17"


def test_syntax_error_points_at_the_broken_file(tmp_path: Path) -> None:
    (only,) = failed_tests(_pytest_output(tmp_path, "def slugify(:\n"))
    assert only.name == "ERROR collecting test_slugify.py"
    assert only.error == "SyntaxError: invalid syntax"
    assert only.location.rsplit("/", 1)[-1] == "slugify.py:1"  # the broken file, not the test importing it


def test_finding_lists_tests_first_then_a_tail_of_whole_lines(tmp_path: Path) -> None:
    output = _pytest_output(tmp_path, None)
    finding = failure_finding("python3 -m pytest -q", "exit 1", output, tail_chars=300)
    head, _, tail = finding.partition("Output tail:\n")
    assert head.startswith("`python3 -m pytest -q` failed (exit 1): 4 failed in ")
    assert "- test_empty: NotImplementedError (at slugify.py:3)" in head
    assert output.rstrip().endswith(tail) and len(tail) <= 300
    assert all(line in output.splitlines() for line in tail.splitlines())  # whole lines only


def test_non_pytest_output_is_headline_and_tail() -> None:
    finding = failure_finding("make check", "timed out", "building\nstep 1\nstep 2 hangs")
    assert finding == "`make check` failed (timed out)\nOutput tail:\nbuilding\nstep 1\nstep 2 hangs"


@pytest.mark.parametrize("width", [30, 37, 80])
def test_shorten_never_cuts_a_word(width: int) -> None:
    text = "st_lowercase_and_hyphens failed because slugify raised NotImplementedError at slugify.py:3"
    short = shorten(text, width)
    assert len(short) <= width
    words = set(text.split())
    assert all(w in words for w in short.removesuffix(" …").split())


def test_clip_tail_keeps_whole_lines() -> None:
    text = "first line\nsecond line\nthird line"
    assert clip_tail(text, 22) == "third line"
    assert clip_tail(text, 23) == "second line\nthird line"
    assert clip_tail("one very long line of words", 12) == "one very …"
