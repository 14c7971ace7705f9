"""`m3lab kernel eval` with a Docker engine but no evaluation image: one line that says how to build it."""
from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

import sandboxes
import sandboxes.engine
import sandboxes.images
from orchestrator.cli import app
from tasks.kernel.targets import TARGETS_DIR


def test_missing_image_says_how_to_build_it(monkeypatch, tmp_path: Path) -> None:  # noqa: ANN001
    monkeypatch.setattr(sandboxes, "default_backend", lambda: "docker")
    monkeypatch.setattr(sandboxes.engine, "connect", lambda timeout_s=10.0: object())
    monkeypatch.setattr(sandboxes.images, "image_label", lambda client, tag: None)
    res = CliRunner().invoke(app, ["kernel", "eval", "softmax", str(TARGETS_DIR / "candidates" / "softmax_cpp.py"),
                                   "--eval-dir", str(tmp_path / "e")])
    assert res.exit_code == 2, res.output
    text = " ".join(res.output.split())  # (the console wraps the one line at the terminal width)
    assert text.startswith("error: sandbox image m3lab/torch-cpu") and text.count("error:") == 1
    assert "m3lab sandbox build --image torch-cpu" in text and "--build-image" in text
    assert "Traceback" not in res.output
    assert not (tmp_path / "e").exists()  # nothing ran
