"""Issue 12 for the kernel task: a candidate (or a helper next to it) that is a symbolic link to a host file, made
inside the producer's real Docker sandbox and run through the real loop, is never copied by the host into the
run's artifacts or the evaluation folder."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from orchestrator.config import BudgetLimits, LoopSettings, Settings
from tasks.kernel.runner import EvalFailed, EvalOptions, evaluate_candidate
from tasks.kernel.targets import TARGETS_DIR
from tasks.kernel.task import KernelTask
from tests.orchestrator.support import Script, tool_call

SECRET = "HOST-ONLY-7f3a91"


def _secret(tmp: Path) -> Path:
    path = tmp / "host_secret.py"
    path.write_text(f"# {SECRET}\nclass ModelNew:\n    pass\n")
    return path


def test_a_linked_candidate_or_helper_is_refused(tmp_path: Path) -> None:
    secret = _secret(tmp_path)
    folder = tmp_path / "ws"
    folder.mkdir()
    (folder / "candidate.py").symlink_to(secret)
    with pytest.raises(FileNotFoundError, match="not a regular file"):
        evaluate_candidate(TARGETS_DIR / "softmax.py", folder / "candidate.py", EvalOptions(isolation="subprocess"),
                           tmp_path / "eval")
    (folder / "candidate.py").unlink()
    (folder / "candidate.py").write_text((TARGETS_DIR / "candidates" / "softmax_torch.py").read_text())
    (folder / "helper.py").symlink_to(secret)
    verdict = evaluate_candidate(TARGETS_DIR / "softmax.py", folder / "candidate.py",
                                 EvalOptions(isolation="subprocess", timing=False), tmp_path / "eval")
    assert verdict.correct and not (tmp_path / "eval" / "cand" / "helper.py").exists()


@pytest.mark.docker
@pytest.mark.timeout(600)
def test_linked_candidate_from_the_sandbox_never_reaches_artifacts(tmp_path: Path, torch_image: str) -> None:
    from orchestrator.runner import start_run

    secret = _secret(tmp_path)
    attack = (f"rm candidate.py && ln -s {secret} candidate.py && ln -s {secret} helper.py "
              f"&& ln -s ../../../../../../../..{secret} util.py && ls -la")
    script = Script(producer=[tool_call("run", command=attack), tool_call("done", summary="linked")])
    settings = Settings(runs_dir=tmp_path / "runs", budget=BudgetLimits(max_iterations=1),
                        loop=LoopSettings(max_turns=3), sandbox_backend="docker")
    task = KernelTask(target="softmax", isolation="sandbox", options=EvalOptions(iters=2, warmup=1))
    run = start_run(task, settings, models=script.factory())
    record = json.loads((run / "iterations" / "0001.json").read_text())
    assert not record["check"]["passed"]
    text = json.dumps(record)
    assert "symbolic link candidate.py" in text and "not a regular file" in text, text
    for path in run.rglob("*"):
        if path.is_file() and not path.is_symlink() and path.relative_to(run).parts[0] != "git":
            assert SECRET.encode() not in path.read_bytes(), path


def test_an_evaluation_folder_filled_past_its_quota_fails_and_is_emptied(tmp_path: Path) -> None:
    honest = (TARGETS_DIR / "candidates" / "softmax_torch.py").read_text()
    filler = tmp_path / "ws" / "candidate.py"
    filler.parent.mkdir()
    filler.write_text("import os\n_here = os.path.dirname(os.path.abspath(__file__))\n"
                      "with open(os.path.join(_here, 'fill.bin'), 'wb') as _f:\n    _f.write(b'0' * (24 << 20))\n"
                      + honest)
    # Static checks off: they would refuse the file write before the candidate ever ran.
    opts = EvalOptions(isolation="subprocess", timing=False, static=False, disk_mb=16)
    with pytest.raises(EvalFailed, match="disk quota of 16 MB"):
        evaluate_candidate(TARGETS_DIR / "softmax.py", filler, opts, tmp_path / "eval")
    assert [p.name for p in (tmp_path / "eval").iterdir()] == ["evaluator.log"]
    # Positive control: the same candidate under a larger quota is evaluated normally.
    roomy = EvalOptions(isolation="subprocess", timing=False, static=False, disk_mb=64)
    verdict = evaluate_candidate(TARGETS_DIR / "softmax.py", filler, roomy, tmp_path / "eval2")
    assert verdict.correct, verdict.to_json()
    assert (tmp_path / "eval2" / "cand" / "fill.bin").stat().st_size == 24 << 20


def test_an_evaluation_folder_nested_past_what_the_host_reads_fails_and_is_emptied(tmp_path: Path) -> None:
    """A candidate nesting 300 folders: the host cannot measure the folder (hostfs.MAX_DEPTH), so it counts as over
    its quota, and it is removed at any depth (shutil.rmtree would recurse once per level)."""
    honest = (TARGETS_DIR / "candidates" / "softmax_torch.py").read_text()
    nester = tmp_path / "ws" / "candidate.py"
    nester.parent.mkdir()
    nester.write_text("import os\n_here = os.path.dirname(os.path.abspath(__file__))\n"
                      "os.makedirs(os.path.join(_here, *['d'] * 300))\n" + honest)
    opts = EvalOptions(isolation="subprocess", timing=False, static=False)
    with pytest.raises(EvalFailed, match="cannot be measured"):
        evaluate_candidate(TARGETS_DIR / "softmax.py", nester, opts, tmp_path / "eval")
    assert [p.name for p in (tmp_path / "eval").iterdir()] == ["evaluator.log"]
