"""The viewer in headless Debian Chromium (Playwright): runs page, live run page, iteration detail, steer and
stop, kernel and paper views. Screenshots go to test-artifacts/viewer/."""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from orchestrator import control
from orchestrator.viewer.server import ViewerServer

from .builder import RunBuilder

pytestmark = pytest.mark.browser

Shot = Callable[[str], Path]


def _rows(page: Any) -> list[str]:
    return page.eval_on_selector_all("tr.run-row", "rows => rows.map(r => r.dataset.runId)")


def test_runs_page_lists_filters_and_refreshes(page: Any, viewer: ViewerServer, sample_runs: dict[str, RunBuilder],
                                               runs_dir: Path, shot: Shot) -> None:
    page.goto(viewer.url)
    page.wait_for_selector("tr.run-row")
    assert sorted(_rows(page)) == ["20261126-code-a1", "20261126-kernel-b2", "20261126-paper-c3"]
    kernel_row = page.locator('tr.run-row[data-run-id="20261126-kernel-b2"]')
    assert "stopped" in kernel_row.inner_text() and "1.40×" in kernel_row.inner_text()
    shot("runs")
    page.select_option("#filter-status", "stopped")
    assert _rows(page) == ["20261126-kernel-b2"]
    page.select_option("#filter-status", "")
    page.select_option("#filter-kind", "paper")
    assert _rows(page) == ["20261126-paper-c3"]
    page.select_option("#filter-kind", "")
    # A run that starts while the page is open appears without a reload.
    RunBuilder(runs_dir, "20261126-code-new", "code", "a new run")
    page.wait_for_selector('tr.run-row[data-run-id="20261126-code-new"]', timeout=8000)


def test_live_run_page_shows_appended_events(page: Any, viewer: ViewerServer, sample_runs: dict[str, RunBuilder],
                                             shot: Shot) -> None:
    run = sample_runs["paper"]
    page.goto(f"{viewer.url}/#/run/{run.dir.name}")
    page.wait_for_selector("#events .ev")
    page.wait_for_function("document.getElementById('live').classList.contains('on')")
    run.event("iteration_started", 2)
    run.model_call(2, "producer", tokens=4321)
    page.wait_for_selector("#events .ev.model_call >> text=4321", timeout=8000)
    # A finished iteration shows up in the timeline and the budget gauges move.
    run.iteration(2, {"reproduce.sh": "python train.py --lr 3e-4\n"}, verdict="pass", score=0.8, action="accept")
    page.wait_for_selector('#timeline .it[data-iteration="2"]', timeout=8000)
    page.wait_for_selector("#run-header >> text=iteration 2", timeout=8000)
    assert page.locator("#events .ev.decision").last.inner_text().find("accept") >= 0
    page.select_option("#event-kind", "verdict")
    run.event("verdict", 2, verdict="pass", score=0.8, findings=[])
    run.event("exec", 2, where="producer", cmd="ls", exit_code=0, reason="exited", duration_s=0.1)
    page.wait_for_function("document.querySelector('#events').lastElementChild.classList.contains('exec')")
    visible = page.eval_on_selector_all("#events .ev", "rows => rows.filter(r => !r.hidden).map(r => r.classList[1])")
    assert visible == ["verdict", "verdict", "verdict"]
    page.select_option("#event-kind", "")
    shot("run-live")


def test_iteration_opens_diff_verdict_and_logs(page: Any, viewer: ViewerServer, sample_runs: dict[str, RunBuilder],
                                               shot: Shot) -> None:
    page.goto(f"{viewer.url}/#/run/20261126-code-a1")
    page.click('#timeline .it[data-iteration="1"]')
    page.wait_for_selector("#verdict >> text=fail")
    assert "test_edge fails" in page.inner_text("#findings")
    assert "+    return 1" in page.inner_text('[data-testid="diff"]')
    assert "1 failed, 3 passed" in page.inner_text("#logs")
    page.click('#timeline .it[data-iteration="2"]')
    page.wait_for_selector("#verdict >> text=pass")
    diff = page.inner_text('[data-testid="diff"]')
    assert "-    return 1" in diff and "+    return 2" in diff
    assert page.locator("#logs a", has_text="logs/0002-check.log").count() == 1
    shot("iteration")


def test_steer_and_stop_buttons(page: Any, viewer: ViewerServer, sample_runs: dict[str, RunBuilder]) -> None:
    run_dir = sample_runs["paper"].dir
    page.goto(f"{viewer.url}/#/run/{run_dir.name}")
    page.fill("#steer-text", "compare against table 2 as well")
    page.click("#steer-btn")
    page.wait_for_selector("#control-note >> text=steer sent")
    assert control.read_steers(run_dir) == ["compare against table 2 as well"]
    page.once("dialog", lambda dialog: dialog.dismiss())
    page.click("#stop-btn")
    assert control.stop_requested(run_dir) is None  # cancelled in the confirmation dialog
    page.once("dialog", lambda dialog: dialog.accept())
    page.click("#stop-btn")
    page.wait_for_selector("#stop-flag")
    assert control.stop_requested(run_dir) == "user"


def test_kernel_and_paper_views(page: Any, viewer: ViewerServer, sample_runs: dict[str, RunBuilder],
                                shot: Shot) -> None:
    page.goto(f"{viewer.url}/#/run/20261126-kernel-b2")
    page.wait_for_selector("#kernel-view img")
    page.wait_for_function("document.querySelector('#kernel-view img').naturalWidth > 0")
    assert page.locator("#candidates td.cheat").inner_text() == "timing_hijack"
    assert page.locator("#candidates tbody tr").count() == 3
    assert "best_kernel_marker" in page.inner_text("#best-code")
    page.click('#timeline .it[data-iteration="3"]')
    page.wait_for_selector('[data-testid="diff"] >> text=SPEEDUP = 1.4')
    shot("kernel")
    page.goto(f"{viewer.url}/#/run/20261126-paper-c3")
    page.wait_for_selector("#rubric")
    rubric = page.inner_text("#rubric")
    assert "Sparse attention selection implemented" in rubric and "0.75" in rubric
    table = page.locator('[data-pair="tables/table_1"]').inner_text()
    assert "91.2" in table and "88.7" in table
    page.wait_for_function(
        "[...document.querySelectorAll('[data-pair=\"figures/figure_2\"] img')].every(i => i.naturalWidth > 0)")
    assert page.locator('[data-pair="figures/figure_2"] img').count() == 2
    assert page.locator("#report-link").count() == 1
    shot("paper")
