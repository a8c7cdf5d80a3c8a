"""Held-out donors' tiles under a label-blind QC bar (issue 19 item 7).

The tile index applies each slide's own tissue's JPEG-size bar, so which tiles of a slide pass depends on its
true tissue. A model is evaluated on validation and test donors as predict sees a new slide: every tile that
passes the other stages and the most lenient JPEG-size bar of the run's tissues (core.predict.tiles does the
same). Per held-out slide as many tiles are evaluated as balanced sampling selected, drawn as the index draws
them (quota mode: the first in the slide's seeded QC order; full grid: the same seeded choice), so a slide
with no tile between the two bars keeps exactly its selected tiles. Training tiles are unchanged.
"""

from __future__ import annotations

import zlib

import numpy as np
import pandas as pd

from core.tiles.index import TilingParams

_QC_REASON_JPEG = "jpeg_size"


def label_blind_bar(tiling: TilingParams, classes: list[str]) -> float:
    """The most lenient JPEG-size bar (KB at 448 px) of the run's tissues."""
    bars = [tiling.jpeg_kb.get(c, tiling.jpeg_kb_default) for c in classes] or [tiling.jpeg_kb_default]
    return float(min(bars))


def label_blind_eligible(rows: pd.DataFrame, bar_kb: float) -> np.ndarray:
    """Rows that pass every QC stage but the JPEG-size one, and the label-blind bar (scaled to the tile size)."""
    passed = rows["passed_qc"].to_numpy(bool)
    if "jpeg_kb" not in rows.columns:
        return passed
    scale = (rows["tile_size"].to_numpy(np.float64) / 448.0) ** 2 if "tile_size" in rows.columns else 1.0
    only_jpeg = rows["reason"].astype(str).to_numpy() == _QC_REASON_JPEG
    return passed | (only_jpeg & (rows["jpeg_kb"].to_numpy(np.float64) >= bar_kb * scale))


def held_out_tiles(tile_index: pd.DataFrame, selected: pd.DataFrame, samples: list[str], tiling: TilingParams,
                   bar_kb: float) -> pd.DataFrame:
    """For each held-out sample, as many label-blind tiles as `selected` (the training tiles) holds for it, in
    the index's row order; rows of `tile_index` (index order kept)."""
    count = selected["sample_id"].astype(str).value_counts()
    sample_of = tile_index["sample_id"].astype(str)
    chosen: list[np.ndarray] = []
    for sample_id in samples:
        rows = tile_index[(sample_of == sample_id).to_numpy()]
        eligible = np.flatnonzero(label_blind_eligible(rows, bar_kb))
        n = int(min(count.get(sample_id, 0), len(eligible)))
        if tiling.all_tiles:  # the full grid's own seeded choice (core.tiles.index.select_balanced)
            rng = np.random.default_rng([tiling.seed, zlib.crc32(str(sample_id).encode())])
            picks = np.sort(eligible[rng.choice(len(eligible), size=n, replace=False)])
        else:  # quota mode: the first in the slide's seeded QC order
            picks = eligible[:n]
        chosen.append(tile_index.index.get_indexer(rows.index[picks]))
    return tile_index.iloc[np.sort(np.concatenate(chosen)) if chosen else []]


def label_blind_split(split: dict, samples: pd.DataFrame, tile_index: pd.DataFrame, selected: pd.DataFrame,
                      tiling: TilingParams, classes: list[str]) -> dict:
    """`split` (core.train.loop.make_split's) with its validation and test tiles drawn label-blind, and the
    bar it used (held_out_jpeg_kb)."""
    from core.train.loop import tile_ids

    bar = label_blind_bar(tiling, classes)
    out = {**split, "held_out_jpeg_kb": bar}
    for name, key in (("validation", "validation_tiles"), ("test", "test_tiles")):
        held = samples.loc[samples["split"] == name, "sample_id"].astype(str).tolist()
        out[key] = tile_ids(held_out_tiles(tile_index, selected, held, tiling, bar))
    return out


def evaluable_rows(tile_index: pd.DataFrame) -> pd.DataFrame:
    """The index rows a run may train or evaluate on (passed QC, or failed only the JPEG-size bar)."""
    reason = tile_index["reason"].astype(str) if "reason" in tile_index.columns else ""
    keep = tile_index["passed_qc"].astype(bool) | (reason == _QC_REASON_JPEG)
    return tile_index[keep.to_numpy(bool)]
