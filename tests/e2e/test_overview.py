"""The dataset overview in a real browser: it renders, tiling runs from a click, the slide browser draws."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.conftest import assert_no_exception, running_app, screenshot, wait_for_app, workspace_with_demo


def test_overview_renders_charts_without_exception(page, app_url):
    page.goto(app_url)
    wait_for_app(page)
    page.get_by_text("Dataset overview").first.wait_for()
    assert page.locator("[data-testid='stMetric']").count() >= 5
    page.locator("[data-testid='stPlotlyChart']").first.wait_for(timeout=30_000)
    assert page.locator(".js-plotly-plot").count() >= 2  # per-tissue bars + demographics drew
    assert_no_exception(page)
    screenshot(page, "overview")


@pytest.fixture
def untiled_app_url(e2e_demo: Path, tmp_path: Path) -> Iterator[str]:
    """A server on a fresh workspace holding only the demo cohort (hard-linked from the run's), so the
    page must offer tiling whatever the other browser tests tiled or trained before."""
    with running_app(workspace_with_demo(e2e_demo, tmp_path / "workspace")) as url:
        yield url


def test_tiling_launched_from_the_page_fills_the_qc_tab(page, untiled_app_url):
    page.goto(untiled_app_url)
    wait_for_app(page)
    tiles_metric = page.locator("[data-testid='stMetric']", has_text="Tiles after QC")
    assert "—" in tiles_metric.inner_text(), "the fresh workspace must start untiled"
    button = page.get_by_role("button", name="Tile the slides (QC + balanced sampling)")
    button.click(timeout=30_000)  # must be offered: no tile index yet
    # The job panel refreshes itself; when the worker ends the page reruns with the new index.
    deadline = time.time() + 400
    while time.time() < deadline and "—" in tiles_metric.inner_text():
        time.sleep(2)
    assert "—" not in tiles_metric.inner_text(), "tiling did not finish"
    wait_for_app(page)
    page.get_by_role("tab", name="Tiles and QC").click()
    page.get_by_text("Example tiles of").wait_for(timeout=30_000)
    wait_for_app(page)
    assert page.get_by_text("Passed", exact=False).count() >= 1
    assert page.locator("[data-testid='stImage'] img").count() >= 2
    assert_no_exception(page)
    screenshot(page, "overview-tiles")


def test_slide_browser_shows_thumbnail_with_tile_grid(page, app_url):
    page.goto(app_url)
    wait_for_app(page)
    page.get_by_role("tab", name="Slide browser").click()
    page.get_by_text("Tissue mask and tile grid").wait_for(timeout=60_000)
    assert_no_exception(page)
    screenshot(page, "overview-slide-browser")
