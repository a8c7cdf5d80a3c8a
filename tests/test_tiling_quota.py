"""Quota tiling (issue 10): per slide, cells in a seeded random order until its quota has passed."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from core.base.config import Workspace, workspace
from core.data.slides import open_slide
from core.tiles.index import TilingParams, build_tile_index, select_balanced
from core.tiles.qc import read_and_qc
from core.tiles.run import _chunks
from tests.test_tiling import samples_table, tissue_texture

CELL = 112  # small tiles: a 1792 px slide has 256 cells, QC'd quickly


def tissue_png(path: Path, size: int, seed: int = 0, inked_rows: int = 0) -> Path:
    """All tissue; the first `inked_rows` rows of cells carry green marker ink (they fail `pen`)."""
    image = tissue_texture(size, size, seed=seed)
    image[: inked_rows * CELL] = (40, 140, 90)
    Image.fromarray(image).save(path)
    return path


@pytest.fixture(scope="module")
def big(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tissue_png(tmp_path_factory.mktemp("quota") / "GTEX-Q-1.png", 1792, seed=1)


def params(**changes: object) -> TilingParams:
    return TilingParams(tile_size=CELL, **{"tiles_per_slide": 10, "tissue_target": 10, **changes})


def test_quota_reads_a_sample_until_the_quota_passed(ws: Workspace, big: Path) -> None:
    result = build_tile_index(samples_table(("GTEX-Q-1", "Lung", big)), params(), ws, workers=1)
    slide = result.summary["per_slide"]["GTEX-Q-1"]
    assert slide["candidates"] == 256 and result.summary["mode"] == "quota"
    assert slide["selected"] == 10 and slide["kept"] == 10  # cut after the 10th passing tile
    assert 10 <= slide["considered"] < 40  # not the whole grid
    cells = set(zip(result.index.x, result.index.y, strict=True))
    assert len(cells) == len(result.index)
    # A random sample of the slide, not its first rows.
    assert result.index.y.max() - result.index.y.min() > 8 * CELL


def test_same_seed_same_tiles_other_seed_other_tiles(tmp_path: Path, big: Path) -> None:
    samples = samples_table(("GTEX-Q-1", "Lung", big))
    first = build_tile_index(samples, params(), workspace(tmp_path / "one"), workers=1).index
    again = build_tile_index(samples, params(), workspace(tmp_path / "two"), workers=1).index
    pd.testing.assert_frame_equal(first, again)
    other = build_tile_index(samples, params(seed=1), workspace(tmp_path / "three"), workers=1).index
    picked = {(x, y) for x, y, s in zip(first.x, first.y, first.selected, strict=True) if s}
    assert picked != {(x, y) for x, y, s in zip(other.x, other.y, other.selected, strict=True) if s}


def test_one_slide_spread_over_the_pool_gives_the_same_index(tmp_path: Path, big: Path) -> None:
    assert len(_chunks(100, 2)) >= 2  # a batch of one slide becomes chunks for several workers
    samples = samples_table(("GTEX-Q-1", "Lung", big))
    alone = build_tile_index(samples, params(all_tiles=True), workspace(tmp_path / "one"), workers=1).index
    pooled = build_tile_index(samples, params(all_tiles=True), workspace(tmp_path / "two"), workers=2).index
    pd.testing.assert_frame_equal(alone, pooled)


def test_a_slide_with_fewer_passing_tiles_than_its_quota_gives_what_it_has(ws: Workspace, tmp_path: Path) -> None:
    inked = tissue_png(tmp_path / "GTEX-P-1.png", 896, inked_rows=6)  # 8 x 8 cells, 16 clean
    result = build_tile_index(samples_table(("GTEX-P-1", "Lung", inked)), params(tiles_per_slide=50), ws, workers=1)
    slide = result.summary["per_slide"]["GTEX-P-1"]
    assert slide["considered"] == slide["candidates"] >= 56  # read to the end (inked cells may leave the mask)
    assert slide["kept"] == slide["selected"] == 16
    assert slide["rejected"]["pen"] == slide["considered"] - 16


def test_a_tissue_with_few_slides_still_reaches_its_target(ws: Workspace, big: Path, tmp_path: Path) -> None:
    small = tissue_png(tmp_path / "GTEX-R-1.png", 448, seed=4)  # 16 cells
    samples = samples_table(("GTEX-Q-1", "Rare", big), ("GTEX-R-1", "Rare", small))
    result = build_tile_index(samples, params(tiles_per_slide=2, tissue_target=40), ws, workers=1)
    per_slide = result.summary["per_slide"]
    # Quota 20 each; the small slide has 16, so the big one gives 24 and the tissue reaches 40.
    assert per_slide["GTEX-R-1"]["selected"] == per_slide["GTEX-R-1"]["kept"] == 16
    assert per_slide["GTEX-Q-1"]["selected"] == 24
    assert per_slide["GTEX-Q-1"]["considered"] < per_slide["GTEX-Q-1"]["candidates"]
    assert result.summary["per_tissue"]["Rare"]["selected"] == 40


def test_full_grid_mode_qcs_every_cell_as_before(ws: Workspace, tmp_path: Path) -> None:
    inked = tissue_png(tmp_path / "GTEX-P-1.png", 896, inked_rows=2)
    p = params(all_tiles=True, tiles_per_slide=5, tissue_target=5)
    result = build_tile_index(samples_table(("GTEX-P-1", "Lung", inked)), p, ws, workers=1)
    index = result.index
    assert result.summary["mode"] == "all_tiles" and len(index) == 64
    grid = [(x, y) for y in range(0, 896, CELL) for x in range(0, 896, CELL)]
    assert list(zip(index.x, index.y, strict=True)) == grid  # row-major grid order
    np.testing.assert_array_equal(index["selected"].to_numpy(), select_balanced(index, p))
    with open_slide(inked) as slide:
        direct = read_and_qc(slide, index.x.to_numpy(), index.y.to_numpy(), CELL, CELL, p, "Lung")
    np.testing.assert_array_equal(index["reason"].to_numpy(dtype=str), direct["reason"])
    np.testing.assert_array_equal(index["jpeg_kb"].to_numpy(), direct["jpeg_kb"])


def test_quota_then_full_grid_reuses_the_quota_reads(ws: Workspace, big: Path, monkeypatch) -> None:
    import core.tiles.run as tile_run

    samples = samples_table(("GTEX-Q-1", "Lung", big))
    quota = build_tile_index(samples, params(), ws, workers=1)
    considered = quota.summary["considered"]
    read = []
    original = tile_run.read_and_qc
    monkeypatch.setattr(tile_run, "read_and_qc", lambda s, xs, *a: read.append(len(xs)) or original(s, xs, *a))
    full = build_tile_index(samples, params(all_tiles=True), ws, workers=1)
    assert len(full.index) == 256
    assert sum(read) <= 256 - considered  # the cells the quota run read are not read again


def test_a_small_quota_run_starts_no_pool_and_a_large_one_does(tmp_path: Path, big: Path, monkeypatch) -> None:
    import core.tiles.run as tile_run

    pools: list[int] = []
    original = tile_run._pool
    monkeypatch.setattr(tile_run, "_pool", lambda workers: pools.append(workers) or original(workers))
    samples = samples_table(("GTEX-Q-1", "Lung", big))
    quota = build_tile_index(samples, params(), workspace(tmp_path / "a"), workers=2)  # ~12 cells
    assert pools == [1] and quota.summary["per_slide"]["GTEX-Q-1"]["selected"] == 10
    pools.clear()
    # A full grid not planned yet: its size is unknown, so the pool starts.
    full = build_tile_index(samples, params(all_tiles=True), workspace(tmp_path / "b"), workers=2)
    assert pools == [2] and len(full.index) == 256


def test_estimated_cells_counts_quota_left_and_unplanned_full_grids() -> None:
    from core.tiles.run import ASSUMED_PASS_RATE, PLAN_CELLS, SlideTask, estimated_cells

    quota = [SlideTask(f"S{i}", "x.svs", "Lung", None, target=100) for i in range(3)]
    assert estimated_cells(quota) == pytest.approx(3 * (PLAN_CELLS + 100 / ASSUMED_PASS_RATE))
    assert estimated_cells([*quota, SlideTask("F", "y.svs", "Lung", None, target=None)]) == float("inf")


def test_cli_one_slide_takes_the_per_slide_quota_not_the_tissue_target(ws: Workspace, big: Path, capsys) -> None:
    from core.__main__ import main

    argv = ["--workspace", str(ws.root), "tiles", "--slide", str(big), "--json", "--tile-size", str(CELL),
            "--tiles-per-slide", "10"]
    assert main(argv) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["params"]["tissue_target"] == 10
    assert summary["selected"] == 10 and summary["considered"] < 40  # not the 256-cell grid


def test_progress_within_a_slide_as_its_chunks_come_back(ws: Workspace, big: Path, monkeypatch) -> None:
    import core.tiles.index as tiling

    monkeypatch.setattr(tiling, "CELL_PROGRESS_INTERVAL_S", 0.0)  # every chunk (default: at most once a second)
    calls: list[tuple[float, int, str]] = []
    samples = samples_table(("GTEX-Q-1", "Lung", big))
    build_tile_index(samples, params(all_tiles=True), ws, workers=1, progress=lambda *a: calls.append(a))
    within = [call for call in calls if "cells QC'd" in call[2]]
    assert len(within) >= 4  # 256 cells in chunks of at most 48
    counts = [int(re.match(r"GTEX-Q-1: (\d+) of 256 cells QC'd", message).group(1)) for _, _, message in within]
    assert 0 < counts[0] <= 48 and counts == sorted(counts) and 0 < within[0][0] < 1  # one chunk, then more
    done = [call[0] for call in calls]
    assert done == sorted(done) and calls[-1][:2] == (1, 1)  # never goes back; ends at the slide done
