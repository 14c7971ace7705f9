"""Fixtures of the viewer tests: run directories built to the contract, a real viewer server on a free
loopback port, and headless Debian Chromium driven by Playwright (never a downloaded browser)."""
from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from orchestrator.viewer.server import ViewerServer

from .builder import RunBuilder, kernel_artifacts, paper_artifacts

CHROMIUM = os.environ.get("M3LAB_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
ARTIFACTS = Path(__file__).resolve().parents[3] / "test-artifacts" / "viewer"


def _missing(reason: str) -> None:
    """Fail in CI (the service must be there), skip elsewhere."""
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason} (CI=true: browser tests must run)")
    pytest.skip(reason)


@pytest.fixture()
def runs_dir(tmp_path: Path) -> Path:
    path = tmp_path / "runs"
    path.mkdir()
    return path


@pytest.fixture()
def sample_runs(runs_dir: Path) -> dict[str, RunBuilder]:
    """A finished code run, a stopped kernel run and a running paper run."""
    code = RunBuilder(runs_dir, "20261126-code-a1", "code", "fix the parser bug")
    code.iteration(1, {"solution.py": "def f():\n    return 1\n"}, verdict="fail", score=0.2,
                   findings=["test_edge fails: f() returns 1, expected 2"], stdout="1 failed, 3 passed")
    code.iteration(2, {"solution.py": "def f():\n    return 2\n"}, verdict="pass", score=1.0,
                   action="accept", stdout="4 passed")
    code.finish("succeeded")
    kernel = RunBuilder(runs_dir, "20261126-kernel-b2", "kernel", "MSA decode kernel")
    for n, s in enumerate([1.1, 1.6, 1.4], 1):
        kernel.iteration(n, {"kernel.py": f"SPEEDUP = {s}\n"}, verdict="pass" if n != 2 else "fail", score=s)
    kernel_artifacts(kernel, [1.1, 1.6, 1.4])
    kernel.finish("stopped", "budget")
    paper = RunBuilder(runs_dir, "20261126-paper-c3", "paper", "reproduce MSA paper")
    paper.iteration(1, {"reproduce.sh": "python train.py\n"}, verdict="fail", score=0.5)
    paper_artifacts(paper)
    return {"code": code, "kernel": kernel, "paper": paper}


@pytest.fixture()
def viewer(runs_dir: Path) -> Iterator[ViewerServer]:
    server = ViewerServer(runs_dir, port=0).start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def browser() -> Iterator[object]:
    if not Path(CHROMIUM).exists():
        _missing(f"no Chromium at {CHROMIUM} (apt-get install chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _missing("playwright is not installed (pip install playwright)")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture()
def page(browser: object) -> Iterator[object]:
    context = browser.new_context(viewport={"width": 1400, "height": 1000})  # type: ignore[attr-defined]
    page = context.new_page()
    page.set_default_timeout(10_000)
    yield page
    context.close()


@pytest.fixture()
def shot(page: object) -> Callable[[str], Path]:
    """Saves a full-page screenshot under test-artifacts/viewer/<name>.png (git-ignored; CI keeps it)."""

    def save(name: str) -> Path:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        path = ARTIFACTS / f"{name}.png"
        page.screenshot(path=str(path), full_page=True)  # type: ignore[attr-defined]
        return path

    return save

