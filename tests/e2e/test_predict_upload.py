"""The Predict page in a real browser: upload the real Aperio SVS through the file input, watch the background
prediction, see the tissue, both heatmaps over the thumbnail, the expression table and the reference map; a
reload finds the result again; a file that is not a slide gets its message."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import expect

from tests.e2e.conftest import assert_no_exception, running_app, screenshot, wait_for_app
from tests.predict_helpers import make_predict_workspace

UPLOAD_INPUT = "[data-testid='stFileUploaderDropzoneInput']"


@pytest.fixture(scope="module")
def predict_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The app on a tiny demo cohort with a finished run (random-weight checkpoints) and its gene ranking."""
    ws, _, _ = make_predict_workspace(tmp_path_factory.mktemp("e2e-predict") / "workspace")
    with running_app(ws.root) as url:
        yield url


def _choose_pca_map(page) -> None:
    """PCA placement keeps the test off UMAP's first-use compilation (minutes on 2 shared cores)."""
    page.get_by_text("Gene ranking and map").click()
    page.get_by_text("PCA", exact=True).click()
    wait_for_app(page)


def test_upload_the_real_svs_and_see_tissue_and_both_heatmaps(page, predict_url, testdata):
    page.goto(f"{predict_url}/predict")
    wait_for_app(page)
    page.get_by_role("heading", name="Predict").wait_for()
    assert_no_exception(page)
    # .streamlit/config.toml's maxUploadSize (MB) reaches Streamlit's picker and the page's label
    expect(page.locator("[data-testid='stFileUploader']")).to_contain_text("4GB per file", timeout=60_000)
    expect(page.locator("[data-testid='stFileUploader']")).to_contain_text("up to 4.0 GB")
    _choose_pca_map(page)
    page.locator(UPLOAD_INPUT).set_input_files(str(testdata / "CMU-1-Small-Region.svs"))
    page.get_by_text("Predicted tissue", exact=True).wait_for(timeout=240_000)
    wait_for_app(page)
    assert_no_exception(page)
    plots = page.locator(".js-plotly-plot")
    plots.nth(4).wait_for(timeout=60_000)  # top 3, tiles, tissue heatmap, gene heatmap, reference map
    titles = page.locator(".js-plotly-plot .gtitle").all_text_contents()  # SVG text: no innerText
    assert any(t.startswith("Predicted tissue per tile") for t in titles), titles
    assert any("predicted log2(1 + TPM) per tile" in t for t in titles), titles
    assert any(t.startswith("Reference slides") for t in titles), titles
    assert page.get_by_text("tiles considered").count() >= 1
    assert page.get_by_role("button", name="Download the report (JSON)").count() == 1
    screenshot(page, "predict-result")

    # a reload: the URL names the slide's hash, and the saved prediction is drawn again (no new upload)
    page.reload()
    wait_for_app(page)
    page.get_by_text("Predicted tissue", exact=True).wait_for(timeout=60_000)
    assert_no_exception(page)


def test_a_file_that_is_not_a_slide_gets_its_message(page, predict_url, tmp_path: Path):
    fake = tmp_path / "holiday.svs"
    fake.write_bytes(b"these are not the pixels you are looking for" * 100)
    page.goto(f"{predict_url}/predict")
    wait_for_app(page)
    _choose_pca_map(page)
    page.locator(UPLOAD_INPUT).set_input_files(str(fake))
    alert = page.locator("[data-testid='stAlertContentError']").filter(has_text="holiday.svs")
    alert.wait_for(timeout=120_000)
    text = alert.inner_text()
    assert "holiday.svs: not a slide" in text, text  # the user's file name, never the temporary file's
    assert "upload-" not in text and "DataError" not in text, text
    assert_no_exception(page)
    screenshot(page, "predict-not-a-slide")
