"""The Embeddings explorer in a real browser: a map draws, a box selection opens the linked panel with tiles."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator

import pytest

from core.base.config import workspace
from core.demo import ensure_demo_cohort
from tests.e2e.conftest import REPO_ROOT, assert_no_exception, running_app, screenshot, wait_for_app

# A small cohort of its own (12 slides): tiling it and mapping it take seconds, not the full demo's minutes.
SMALL = {"n_donors": 4, "n_tissues": 3, "slide_size": (1536, 1536), "n_genes": 400, "workers": 1}


def _core(ws_root, *argv: str) -> None:
    subprocess.run([sys.executable, "-m", "core", "--workspace", str(ws_root), *argv], cwd=REPO_ROOT, check=True,
                   stdout=subprocess.DEVNULL, timeout=900)


@pytest.fixture(scope="module")
def explorer_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The app on a small demo cohort whose tile index (for the linked panel's tiles) and genes-level PCA
    map were made by the CLI beforehand."""
    ws = workspace(tmp_path_factory.mktemp("e2e-explorer") / "workspace")
    ensure_demo_cohort(ws, **SMALL)
    _core(ws.root, "tiles", "--data", str(ws.demo_dir))
    _core(ws.root, "map", "--data", str(ws.demo_dir), "--level", "genes", "--method", "pca")
    with running_app(ws.root) as url:
        yield url


def test_box_selection_on_a_map_shows_the_selected_slides_tiles(page, explorer_url):
    page.goto(f"{explorer_url}/explorer")
    wait_for_app(page)
    page.get_by_text("Embeddings explorer").first.wait_for()
    page.locator("[data-testid='stRadio']").filter(has_text="Method").get_by_text("PCA", exact=True).click()
    wait_for_app(page)
    plot = page.locator(".js-plotly-plot").first
    plot.wait_for(timeout=60_000)
    screenshot(page, "explorer-map")
    plot.hover()
    plot.locator(".modebar-btn[data-title='Box Select']").click()
    area = plot.locator(".nsewdrag").first.bounding_box()
    page.mouse.move(area["x"] + 5, area["y"] + 5)
    page.mouse.down()
    page.mouse.move(area["x"] + area["width"] / 2, area["y"] + area["height"] / 2, steps=8)
    page.mouse.move(area["x"] + area["width"] - 5, area["y"] + area["height"] - 5, steps=8)
    page.mouse.up()
    page.get_by_text("sample(s) selected").wait_for(timeout=60_000)
    wait_for_app(page)
    page.get_by_role("heading", name="Selection").wait_for()
    page.locator("[data-testid='stImage'] img").first.wait_for(timeout=60_000)
    assert page.locator("[data-testid='stImage'] img").count() >= 2  # the selected slide's tiles
    assert_no_exception(page)
    screenshot(page, "explorer-selection")
