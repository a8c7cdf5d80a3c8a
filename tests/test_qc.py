"""core.tiles.qc: the read-and-QC seam the tiler calls, the sampled pixel pass against the full-resolution
reference metrics (tests/qc_reference.py), and the stages' structure."""

from __future__ import annotations

import inspect

import numpy as np
import pytest
from qc_reference import reference_metrics

import core.tiles.qc as qc
from core.data.slides import open_slide
from core.tiles.qc import METRIC_COLUMNS, QC_STAGES, QcParams, qc_failures, qc_reason, read_and_qc, tile_metrics

SVS_NAME = "CMU-1-Small-Region.svs"


def grid_tiles(path, size: int = 448, step: int = 224) -> list[np.ndarray]:
    with open_slide(path) as slide:
        info = slide.info
        return [
            slide.read_region(x, y, size, size)
            for y in range(0, info.height - size + 1, step)
            for x in range(0, info.width - size + 1, step)
        ]


def test_read_and_qc_matches_tile_by_tile_on_the_real_svs(testdata):
    params = QcParams()
    # Two runs of neighbours (read as one block each) and two lone cells.
    xs, ys = np.array([0, 448, 896, 1344, 448, 1344]), np.array([0, 0, 0, 896, 1344, 2240])
    with open_slide(testdata / SVS_NAME) as slide:
        batch = read_and_qc(slide, xs, ys, 448, 448, params, "Lung")
        for i, (x, y) in enumerate(zip(xs, ys, strict=True)):
            metrics = tile_metrics(slide.read_region(int(x), int(y), 448, 448, out_size=(448, 448)), params, "Lung")
            for name in METRIC_COLUMNS:
                assert batch[name][i] == np.float32(metrics[name]), name
            assert batch["reason"][i] == qc_reason(metrics, params, "Lung")
    assert batch["passed_qc"].dtype == bool and list(batch["passed_qc"]) == [r == "" for r in batch["reason"]]
    assert {"passed_qc", "reason", *METRIC_COLUMNS} == set(batch)


def test_read_and_qc_of_no_cells_is_empty_columns(testdata):
    with open_slide(testdata / SVS_NAME) as slide:
        batch = read_and_qc(slide, np.array([], dtype=int), np.array([], dtype=int), 448, 448, QcParams())
    assert all(len(values) == 0 for values in batch.values())


def test_sampled_metrics_agree_with_the_full_resolution_reference_on_real_h_and_e(testdata):
    tiles = grid_tiles(testdata / SVS_NAME)
    assert len(tiles) >= 40
    params = QcParams()
    fast = [tile_metrics(tile, params) for tile in tiles]
    full = [reference_metrics(tile, params) for tile in tiles]
    # The same pixels (pen already sampled every second pixel) and the same pieces decide.
    assert [m["pen_fraction"] for m in fast] == pytest.approx([m["pen_fraction"] for m in full], abs=1e-4)
    assert [m["blank_share"] for m in fast] == [m["blank_share"] for m in full]
    # Estimates from a quarter of the pixels: (typical relative error, bound = share + floor).
    for name, typical, share, floor in (("min_piece_std", 0.02, 0.1, 1.0), ("min_channel_std", 0.02, 0.1, 1.0),
                                        ("blur", 0.06, 0.25, 0.005)):
        a, b = np.array([m[name] for m in fast]), np.array([m[name] for m in full])
        assert np.median(np.abs(a - b) / np.maximum(b, 1e-3)) < typical, name
        assert np.all(np.abs(a - b) <= share * b + floor), name
    a, b = np.array([m["grey_fraction"] for m in fast]), np.array([m["grey_fraction"] for m in full])
    assert np.all(np.abs(a - b) < 0.002)
    # JPEG size: exact near any tissue's bar, estimated from the half copy (within 20%) elsewhere.
    a, b = np.array([m["jpeg_kb"] for m in fast]), np.array([m["jpeg_kb"] for m in full])
    assert np.all(np.abs(a / b - 1) < 0.2)
    near = np.abs(b / 8.0 - 1) < 0.15
    assert near.any() and np.array_equal(a[near], b[near])
    for tissue in ("Lung", "Adipose - Subcutaneous", "Heart"):
        assert [qc_reason(m, params, tissue) for m in fast] == [qc_reason(m, params, tissue) for m in full]


def test_each_stage_is_one_named_function_beside_its_threshold():
    assert QC_STAGES == ("pen", "dirt", "half_empty", "blur", "jpeg_size")
    source = inspect.getsource(qc)
    for stage in QC_STAGES:
        function = getattr(qc, f"fails_{stage}")
        assert qc.STAGES[stage] is function
        # Its constants sit in its own section, just above the function (not in a shared block).
        section = source[source.index(f"# Stage {stage}") : source.index(f"def fails_{stage}")]
        assert "= " in section and section.count("# Stage") == 1, stage
    assert qc.QcParams().max_pen_fraction == qc.MAX_PEN_FRACTION and qc.QcParams().min_blur == qc.MIN_BLUR


def test_stages_decide_on_their_own_metric_and_threshold():
    params = QcParams()
    clean = {"pen_fraction": 0.0, "grey_fraction": 0.0, "blank_share": 0.0, "blur": 1.0, "jpeg_kb": 100.0}
    assert qc_reason(clean, params) == "" and not any(qc_failures(clean, params).values())
    bad = {"pen_fraction": 0.06, "grey_fraction": 0.02, "blank_share": 0.2, "blur": 0.001, "jpeg_kb": 1.0}
    for stage, metric in zip(QC_STAGES, bad, strict=True):
        metrics = {**clean, metric: bad[metric]}
        assert qc_failures(metrics, params) == {s: s == stage for s in QC_STAGES}
    assert qc_reason(bad, params) == "pen"  # the first failed stage names the tile


def test_warm_up_compiles_the_pixel_pass_for_the_tiles_tiling_reads() -> None:
    from core.tiles import qc

    qc.warm_up()
    assert qc._pixel_pass.signatures and qc._half.signatures  # both compiled (or loaded from the cache)
