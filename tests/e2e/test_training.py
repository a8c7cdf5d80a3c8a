"""Training in a real browser: launch from the form, watch the curve gain points, cancel."""

from __future__ import annotations

import time

from tests.e2e.conftest import assert_no_exception, screenshot, wait_for_app

BATCH_POINTS_JS = """() => {
  // Plotly sends numpy data base64-encoded; calcdata holds the points as drawn.
  const plots = [...document.querySelectorAll('.js-plotly-plot')];
  const plot = plots.find(p => (p.layout?.title?.text || '').includes('Per-batch'));
  return plot && plot.calcdata && plot.calcdata[0] ? plot.calcdata[0].length : 0;
}"""


def _points(page) -> int:
    return page.evaluate(BATCH_POINTS_JS) or 0


def test_launch_watch_and_cancel_a_training_run(page, app_url):
    page.goto(f"{app_url}/training")
    wait_for_app(page)
    assert_no_exception(page)
    page.get_by_role("spinbutton", name="Epochs").fill("30")
    page.get_by_role("spinbutton", name="Input resolution (px)").fill("32")
    page.get_by_role("spinbutton", name="Batch size").fill("16")
    page.get_by_role("button", name="Start training").click()

    # The live panel appears and its per-batch curve keeps gaining points.
    page.get_by_role("heading", name="Running:").wait_for(timeout=300_000)
    deadline = time.time() + 300
    first = 0
    while time.time() < deadline and first == 0:
        first = _points(page)
        time.sleep(1)
    assert first > 0, "no batch points drawn"
    deadline = time.time() + 120
    later = first
    while time.time() < deadline and later <= first:
        later = _points(page)
        time.sleep(1)
    assert later > first, f"curve did not grow ({first} -> {later})"
    screenshot(page, "training-live")

    page.get_by_role("button", name="Cancel training").click()
    page.get_by_text("cancelled", exact=False).first.wait_for(timeout=120_000)
    wait_for_app(page)
    assert_no_exception(page)
    screenshot(page, "training-cancelled")
