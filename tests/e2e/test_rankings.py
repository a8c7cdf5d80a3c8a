"""The Gene rankings page in a real browser: rank a small cohort from the page (the background job embeds with
random weights, then ranks), see the table, open a gene's detail from the table and follow it to the explorer."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator

import pytest
from playwright.sync_api import expect

from core.base.config import workspace
from core.demo import ensure_demo_cohort
from tests.e2e.conftest import REPO_ROOT, assert_no_exception, running_app, screenshot, wait_for_app

# A small cohort of its own (6 donors, 3 tissues): tiling, embedding at 64 px and ranking take seconds.
SMALL = {"n_donors": 6, "n_tissues": 3, "slide_size": (1536, 1536), "n_genes": 400, "workers": 1}


@pytest.fixture(scope="module")
def rankings_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The app on a small demo cohort tiled by the CLI beforehand (no run: random weights are ranked)."""
    ws = workspace(tmp_path_factory.mktemp("e2e-rankings") / "workspace")
    ensure_demo_cohort(ws, **SMALL)
    subprocess.run([sys.executable, "-m", "core", "--workspace", str(ws.root), "tiles", "--data", str(ws.demo_dir)],
                   cwd=REPO_ROOT, check=True, stdout=subprocess.DEVNULL, timeout=900)
    with running_app(ws.root) as url:
        yield url


def test_rank_from_the_page_then_open_a_gene(page, rankings_url):
    page.goto(f"{rankings_url}/rankings")
    wait_for_app(page)
    page.get_by_role("heading", name="Gene rankings").wait_for()
    page.get_by_text("Not ranked yet").wait_for(timeout=60_000)
    folds = page.get_by_label("Folds (by donor)")  # 3 folds of 2 donors: every test fold has >= 3 samples for r
    folds.fill("3")
    folds.press("Enter")
    wait_for_app(page)
    page.get_by_text("3 folds").first.wait_for()
    page.get_by_role("button", name="Rank all genes").click()
    # the job panel's progress bar while it embeds and ranks, then the page reruns with the ranking
    page.locator("[data-testid='stProgress']").first.wait_for(timeout=60_000)
    page.get_by_role("heading", name="Ranking", exact=True).wait_for(timeout=300_000)
    wait_for_app(page)
    assert_no_exception(page)
    assert page.locator("[data-testid='stMetric']").filter(has_text="Genes with r > 0").count() == 1
    grid = page.locator("[data-testid='stDataFrame']").first
    grid.wait_for()
    screenshot(page, "rankings-table")

    # a reload finds the cached ranking again (no button, no job)
    page.reload()
    wait_for_app(page)
    page.get_by_role("heading", name="Ranking", exact=True).wait_for(timeout=60_000)
    assert page.get_by_role("button", name="Rank all genes").count() == 0

    # select the third row of the table: the gene detail switches to that gene
    rank = page.locator("[data-testid='stMetric']").filter(has=page.get_by_text("Rank", exact=True))
    expect(rank).to_have_text(re.compile(r"Rank\s*1$"))
    grid = page.locator("[data-testid='stDataFrame']").first
    grid.scroll_into_view_if_needed()
    box = grid.bounding_box()
    page.mouse.click(box["x"] + 18, box["y"] + 35 * 2 + 35 + 17)  # header row, then rows of 35 px
    wait_for_app(page)
    expect(rank).to_have_text(re.compile(r"Rank\s*3$"), timeout=30_000)
    page.get_by_role("heading", name="Gene detail").wait_for()
    detail = page.locator("[data-testid='stMetric']").filter(has_text="R² beyond tissue")
    assert detail.count() >= 1
    plots = page.locator(".js-plotly-plot")
    plots.nth(3).wait_for(timeout=60_000)  # histogram, predicted vs observed, tissue R², slide map
    assert_no_exception(page)
    screenshot(page, "rankings-gene")

    # the link opens the explorer's slide map coloured by that gene
    page.get_by_text("on the Embeddings explorer's slide map").click()
    wait_for_app(page)
    page.get_by_role("heading", name="Embeddings explorer").wait_for(timeout=60_000)
    assert "gene=" in page.url
    assert_no_exception(page)
