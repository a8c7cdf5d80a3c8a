"""Training in a real browser: launch from the form, watch the curve gain points, cancel."""

from __future__ import annotations

import time

from tests.e2e.conftest import assert_no_exception, screenshot, wait_for_app

# Epochs enough that a run is still going when a test cancels it, however fast the small demo cohort trains.
EPOCHS = 200

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
    page.get_by_role("spinbutton", name="Epochs").fill(str(EPOCHS))
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


def test_a_running_training_survives_reload_new_tab_and_server_restart(browser, e2e_workspace):
    from dataclasses import replace

    from core import jobs
    from core.base.config import workspace
    from core.train.config import TrainConfig
    from core.train.jobs import launch_training
    from tests.e2e.conftest import running_app

    ws = workspace(e2e_workspace)
    job = launch_training(ws, ws.demo_dir, replace(TrainConfig(), epochs=EPOCHS, image_size=32, batch_size=16))
    heading = f"Running: {job.id}"
    try:
        with running_app(e2e_workspace) as first_server:
            tab = browser.new_context(viewport={"width": 1400, "height": 1000}).new_page()
            tab.goto(f"{first_server}/training")
            tab.get_by_role("heading", name=heading).wait_for(timeout=120_000)
            tab.reload()
            tab.get_by_role("heading", name=heading).wait_for(timeout=120_000)
            other = browser.new_context(viewport={"width": 1400, "height": 1000}).new_page()
            other.goto(f"{first_server}/training")
            other.get_by_role("heading", name=heading).wait_for(timeout=120_000)
            tab.context.close()
            other.context.close()
        assert job.status()["state"] == "running", "stopping the server must not stop the worker"

        with running_app(e2e_workspace) as second_server:
            page = browser.new_context(viewport={"width": 1400, "height": 1000}).new_page()
            page.goto(f"{second_server}/training")
            page.get_by_role("heading", name=heading).wait_for(timeout=120_000)
            deadline = time.time() + 300
            first = 0
            while time.time() < deadline and first == 0:
                first = _points(page)
                time.sleep(1)
            deadline = time.time() + 120
            later = first
            while time.time() < deadline and later <= first:
                later = _points(page)
                time.sleep(1)
            assert later > first > 0, f"the restarted server's panel did not follow the run ({first} -> {later})"
            assert_no_exception(page)
            page.get_by_role("button", name="Cancel training").click()
            assert jobs.wait(job, timeout=120)["state"] == "cancelled"
            page.context.close()
    finally:
        jobs.request_cancel(job)
        jobs.wait(job, timeout=120)


def test_the_confusion_matrix_switches_from_the_selected_to_the_latest_epoch(page, app_url, e2e_workspace):
    from core.base.config import workspace
    from core.train import runs
    from tests.run_helpers import run_with_epochs

    matrices = {1: [[1, 3], [3, 1]], 2: [[4, 0], [1, 3]], 3: [[2, 2], [0, 4]]}
    run_dir = run_with_epochs(workspace(e2e_workspace), [{"val_acc": acc, "confusion": matrices[i + 1]}
                                                         for i, acc in enumerate((0.5, 0.9, 0.6))])
    title = "() => [...document.querySelectorAll('.js-plotly-plot')].map(p => p.layout?.title?.text || '')" \
            ".find(t => t.includes('Normalized confusion'))"
    try:
        page.goto(f"{app_url}/training")
        wait_for_app(page)
        assert_no_exception(page)
        page.get_by_text(f"Latest run: {run_dir.name}").wait_for(timeout=60_000)
        page.wait_for_function(f"() => ({title})() !== undefined", timeout=60_000)
        assert "epoch 2 (selected)" in page.evaluate(title)  # plotly wraps titles in <b> tags
        page.get_by_text("epoch 3 (latest)").click()
        page.wait_for_function(f"() => ({title})()?.includes('epoch 3 (latest)')", timeout=60_000)
        wait_for_app(page)
        assert_no_exception(page)
    finally:
        runs.delete_run(workspace(e2e_workspace), run_dir.name)
