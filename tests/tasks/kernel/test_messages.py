"""Kernel evaluation says what happened: where a candidate timed out (import / forward), a memory kill as
"out of memory (limit ...)" (real Docker sandbox), the candidate's own traceback once, and a syntax error found
on the host before any sandbox or worker starts."""
from __future__ import annotations

from pathlib import Path

import pytest

from tasks.kernel.harness.procs import candidate_traceback, exit_text
from tasks.kernel.harness.static_checks import syntax_error
from tasks.kernel.runner import EvalOptions, evaluate_candidate
from tests.tasks.kernel.support import evaluate, target

HEAD = "import torch\n\n\nclass ModelNew(torch.nn.Module):\n    def __init__(self, *args, **kwargs):\n" \
       "        super().__init__()\n\n"


def write(tmp: Path, name: str, text: str) -> Path:
    path = tmp / name
    path.write_text(text)
    return path


def test_syntax_error_is_found_before_any_sandbox(tmp_path: Path) -> None:
    bad = write(tmp_path, "cand.py", "import torch\nclass ModelNew(torch.nn.Module)\n    pass\n")

    def no_sandbox(spec):  # noqa: ANN001, ANN202
        raise AssertionError("a sandbox was opened for a candidate that does not parse")

    verdict = evaluate_candidate(target("softmax"), bad, EvalOptions(), tmp_path / "eval", opener=no_sandbox)
    assert not verdict.accepted and verdict.stage == "import"
    assert verdict.errors == ["SyntaxError: cand.py line 2, column 32: expected ':': "
                              "class ModelNew(torch.nn.Module)"]
    assert syntax_error("x = (1,\n") is not None and syntax_error("x = 1\n") is None
    assert "null bytes" in (syntax_error("x = 1\0\n") or "")


def test_endless_forward_and_import_say_where_they_timed_out(tmp_path: Path) -> None:
    forever = write(tmp_path, "forever.py", HEAD + "    def forward(self, x):\n        while True:\n            pass\n")
    verdict = evaluate(tmp_path, "softmax", forever, timing=False, call_timeout_s=3)
    assert verdict.errors == ["ModelNew timed out after 3 s in forward"], verdict.errors
    at_import = write(tmp_path, "at_import.py", "import torch\nwhile True:\n    pass\n")
    verdict = evaluate(tmp_path, "softmax", at_import, timing=False, start_timeout_s=8)
    assert verdict.errors == ["ModelNew timed out after 8 s at import"], verdict.errors


def test_candidate_traceback_once_with_its_own_frames(tmp_path: Path) -> None:
    raising = write(tmp_path, "raising.py", "import torch\n\n\ndef helper():\n    return 1 / 0\n\n\nhelper()\n")
    verdict = evaluate(tmp_path, "softmax", raising, timing=False)
    [error] = verdict.errors
    first, *rest = error.splitlines()
    assert first == "ModelNew raised at import: ZeroDivisionError: division by zero"
    assert rest[0] == "Traceback (most recent call last):" and rest[-1] == "ZeroDivisionError: division by zero"
    frames = [line for line in rest if line.startswith('  File "')]
    assert len(frames) == 2 and all("/cand/candidate.py" in f for f in frames)  # no harness frames
    assert verdict.summary().count("ZeroDivisionError") == 1  # the summary is the first line only


def test_words_for_exit_codes_and_tracebacks() -> None:
    assert exit_text(3, None) == "exited with code 3"
    assert exit_text(-11, None) == "killed by SIGSEGV"
    assert exit_text(-9, None) == "killed by SIGKILL"
    tb = ('Traceback (most recent call last):\n  File "/e/harness/worker.py", line 1, in main\n    x()\n'
          '  File "/e/cand/candidate.py", line 2, in f\n    1/0\nZeroDivisionError: division by zero')
    assert candidate_traceback(tb, Path("/e/cand/candidate.py")) == (
        'Traceback (most recent call last):\n  File "/e/cand/candidate.py", line 2, in f\n    1/0\n'
        'ZeroDivisionError: division by zero')


@pytest.mark.docker
@pytest.mark.slow
def test_memory_kill_is_out_of_memory_with_the_limit(tmp_path: Path, torch_image: str) -> None:
    hog = write(tmp_path, "hog.py", HEAD + "    def forward(self, x):\n"
                "        keep = [torch.ones(1 << 28) for _ in range(16)]  # 16 GiB\n        return x\n")
    eval_dir = tmp_path / "e"
    eval_dir.mkdir()
    eval_dir.chmod(0o755)
    verdict = evaluate_candidate(target("softmax"), hog, EvalOptions(memory_mb=1536, timing=False, call_timeout_s=60),
                                 eval_dir / "eval")
    assert verdict.errors == ["ModelNew killed: out of memory (limit 1.5 GiB) in forward"], verdict.errors
