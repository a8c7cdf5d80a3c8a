"""The dataset overview in a real browser: it renders, tiling runs from a click, the slide browser draws."""

from __future__ import annotations

import time

from tests.e2e.conftest import assert_no_exception, screenshot, wait_for_app


def test_overview_renders_charts_without_exception(page, app_url):
    page.goto(app_url)
    wait_for_app(page)
    page.get_by_text("Dataset overview").first.wait_for()
    assert page.locator("[data-testid='stMetric']").count() >= 5
    page.locator("[data-testid='stPlotlyChart']").first.wait_for(timeout=30_000)
    assert page.locator(".js-plotly-plot").count() >= 2  # per-tissue bars + demographics drew
    assert_no_exception(page)
    screenshot(page, "overview")


def test_tiling_launched_from_the_page_fills_the_qc_tab(page, app_url):
    page.goto(app_url)
    wait_for_app(page)
    button = page.get_by_role("button", name="Tile the slides (QC + balanced sampling)")
    if button.count():
        button.click()
    # The job panel refreshes itself; when the worker ends the page reruns with the new index.
    tiles_metric = page.locator("[data-testid='stMetric']", has_text="Tiles after QC")
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
