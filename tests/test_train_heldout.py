"""Issue 19 item 7: a held-out slide's evaluated tiles do not depend on its tissue label (the JPEG-size bar is
per tissue; held-out donors' tiles pass the run's most lenient bar, as predict's do)."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pandas as pd

from core.tiles.index import TilingParams
from core.train.heldout import held_out_tiles
from core.train.loop import train_run
from tests.test_train import CONFIG, TILES_PER_SLIDE, fake_read_tile, make_tile_index

LENIENT = TilingParams().jpeg_kb["Lung"]  # Lung's bar (11 KB) is the lowest of the stand-in cohort's tissues
BETWEEN = LENIENT + 1.0  # passes Lung's bar, fails Liver's and Skin's (the 16 KB default)


def _index_with_a_tile_between_the_bars() -> pd.DataFrame:
    """make_tile_index, where every slide's first tile compresses to BETWEEN KB: it passes QC on a Lung slide
    and fails the JPEG-size bar elsewhere (then the slide's next passing tile is selected in its place)."""
    index = make_tile_index()
    index["jpeg_kb"] = 40.0
    first = index["x"] == 0
    index.loc[first, "jpeg_kb"] = BETWEEN
    strict = first & (index["tissue"] != "Lung")
    index.loc[strict, ["passed_qc", "reason"]] = [False, "jpeg_size"]
    index.loc[strict, "selected"] = False
    index.loc[(index["x"] == 448 * TILES_PER_SLIDE + 448) & (index["tissue"] != "Lung"), "selected"] = True
    return index


def _positions(tile_ids: list[str]) -> dict[str, list[int]]:
    by_slide: dict[str, list[int]] = {}
    for tile in tile_ids:
        sample, x, _ = tile.rsplit(":", 2)
        by_slide.setdefault(sample, []).append(int(x) // 448)
    return {k: sorted(v) for k, v in by_slide.items()}


def test_held_out_slides_are_evaluated_on_the_same_tiles_whatever_their_tissue(tmp_path) -> None:
    from core.base.config import workspace

    ws = workspace(tmp_path / "workspace")
    index = _index_with_a_tile_between_the_bars()
    run_dir = tmp_path / "run"
    train_run(run_dir, replace(CONFIG, epochs=1), index, ws, read_tile=fake_read_tile, pack_workers=1)
    split = json.loads((run_dir / "split.json").read_text())
    assert split["held_out_jpeg_kb"] == LENIENT
    same = list(range(TILES_PER_SLIDE))  # the first 8 tiles in QC order, the one between the bars included
    held_out = _positions(split["validation_tiles"] + split["test_tiles"])
    assert held_out and all(positions == same for positions in held_out.values())
    tissue_of = dict(zip(index["sample_id"], index["tissue"], strict=False))
    assert {tissue_of[s] for s in held_out} == {"Lung", "Liver", "Skin"}
    # training tiles keep their own tissue's bar
    for sample, positions in _positions(split["train_tiles"]).items():
        assert (0 in positions) == (tissue_of[sample] == "Lung")


def test_full_grid_draws_the_same_seeded_choice_and_changes_nothing_without_tiles_between_the_bars() -> None:
    from core.tiles.index import select_balanced

    index = make_tile_index()
    index["jpeg_kb"] = 40.0
    grid = TilingParams(all_tiles=True, tiles_per_slide=5, tissue_target=30)  # 5 of 9 per slide
    index["selected"] = select_balanced(index, grid)
    slides = sorted(index["sample_id"].unique())
    selected = index[index["selected"]]
    drawn = held_out_tiles(index, selected, slides, grid, LENIENT)
    assert drawn.index.tolist() == selected.index.tolist()
    # a tile between the bars on a Liver slide: now eligible, and the draw is the one a Lung slide would get
    liver = index[(index["tissue"] == "Liver")]["sample_id"].iloc[0]
    as_liver, as_lung = index.copy(), index.copy()
    row = index.index[(index["sample_id"] == liver) & (index["x"] == 0)][0]
    as_liver.loc[row, ["passed_qc", "reason", "jpeg_kb"]] = [False, "jpeg_size", BETWEEN]
    as_lung.loc[row, "jpeg_kb"] = BETWEEN
    as_lung.loc[as_lung["sample_id"] == liver, "tissue"] = "Lung"
    picks = [held_out_tiles(frame, selected, [liver], grid, LENIENT).index.tolist() for frame in (as_liver, as_lung)]
    assert picks[0] == picks[1] and len(picks[0]) == 5
    assert np.isin(picks[0], index.index[index["sample_id"] == liver]).all()
