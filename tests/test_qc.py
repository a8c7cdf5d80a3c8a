"""The read-and-QC seam the tiler calls: a batch of cells gives the same metrics and decisions as tile by tile."""

from __future__ import annotations

import numpy as np

from core.qc import METRIC_COLUMNS, QcParams, qc_reason, read_and_qc, tile_metrics
from core.slides import open_slide


def test_read_and_qc_matches_tile_by_tile_on_the_real_svs(testdata):
    params = QcParams()
    xs, ys = np.array([0, 448, 896, 1344]), np.array([0, 896, 1344, 2240])
    with open_slide(testdata / "CMU-1-Small-Region.svs") as slide:
        batch = read_and_qc(slide, xs, ys, 448, 448, params, "Lung")
        for i, (x, y) in enumerate(zip(xs, ys, strict=True)):
            metrics = tile_metrics(slide.read_region(int(x), int(y), 448, 448, out_size=(448, 448)), params)
            for name in METRIC_COLUMNS:
                assert batch[name][i] == np.float32(metrics[name]), name
            assert batch["reason"][i] == qc_reason(metrics, params, "Lung")
    assert batch["passed_qc"].dtype == bool and list(batch["passed_qc"]) == [r == "" for r in batch["reason"]]
    assert {"passed_qc", "reason", *METRIC_COLUMNS} == set(batch)


def test_read_and_qc_of_no_cells_is_empty_columns(testdata):
    with open_slide(testdata / "CMU-1-Small-Region.svs") as slide:
        batch = read_and_qc(slide, np.array([], dtype=int), np.array([], dtype=int), 448, 448, QcParams())
    assert all(len(values) == 0 for values in batch.values())
