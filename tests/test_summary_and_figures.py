"""Figure builders, overview tables and the overview's cached results."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from core.base.cache import cached, open_cache
from core.data import figures as data_figures
from core.data import views as summary
from core.data.dataset import load_cohort
from core.data.genes import GeneFilterParams
from core.tiles import figures
from core.tiles import views as tile_views
from core.tiles.qc import QC_STAGES
from core.train import figures as train_figures


def _index() -> pd.DataFrame:
    rows = []
    for i in range(12):
        reason = ["", "", "pen", "blur"][i % 4]
        rows.append({"sample_id": f"S{i % 3}", "tissue": "Lung" if i < 6 else "Liver", "x": 448 * i, "y": 0,
                     "read_size": 448, "passed_qc": reason == "", "reason": reason, "selected": i % 2 == 0})
    return pd.DataFrame(rows)


def test_per_tissue_table_adds_tiles_after_qc():
    info = {"per_tissue": {"Lung": {"slides": 2, "samples_with_expression": 1, "joined": 1},
                           "Liver": {"slides": 1, "samples_with_expression": 1, "joined": 0}}}
    table = summary.per_tissue_table(info, _index())
    assert table.loc["Lung", "tiles after QC"] == 4  # rows 0, 1, 4, 5
    assert table.loc["Liver", "joined"] == 0
    assert "tiles after QC" not in summary.per_tissue_table(info, None)


def test_example_tiles_cover_every_rejection_stage():
    examples = summary.example_tiles(_index(), "Lung", n=2)
    assert examples["passed"]["passed_qc"].all() and len(examples["passed"]) == 2
    assert set(examples["rejected"]["reason"]) == {"pen", "blur"}


def test_tiling_errors_read_from_the_saved_summary(tmp_path):
    (tmp_path / "summary.json").write_text(json.dumps({"errors": {"S9": "S9.svs: not a slide"}}))
    assert summary.tiling_errors(tmp_path / "index.parquet") == {"S9": "S9.svs: not a slide"}
    assert summary.tiling_errors(tmp_path / "missing" / "index.parquet") == {}


def test_qc_funnel_counts_down_through_the_stages():
    fig = figures.qc_funnel(100, {"pen": 10, "blur": 5})
    x = list(fig.data[0].x)
    assert x[0] == 100 and x[-1] == 85 and len(x) == 1 + len(QC_STAGES)  # every stage shown, even at 0


def test_log_tpm_histogram_ships_bins_not_values():
    # 200,000 sampled values used to travel in the page's JSON on every rerun; 60 bins carry the same picture.
    values = np.random.default_rng(0).normal(6.0, 2.0, 200_000)
    values[:5] = np.nan
    fig = data_figures.log_tpm_histogram(values, threshold=5.0, bins=60)
    bars = fig.data[0]
    assert len(bars.x) == len(bars.y) == 60
    assert int(np.sum(bars.y)) == 200_000 - 5  # every finite value counted once
    counts, edges = np.histogram(values[5:], bins=60)
    assert np.array_equal(bars.y, counts) and np.allclose(bars.x, (edges[:-1] + edges[1:]) / 2)


def test_thumbnail_outlines_each_tile_outcome():
    fig = figures.thumbnail_with_tiles(np.full((64, 64, 3), 255, np.uint8), 100.0, _index(),
                                       mask=np.zeros((64, 64), bool))
    names = {trace.name.split(" ")[0] for trace in fig.data[1:]}
    assert names == {"rejected", "kept", "selected"}


def test_confusion_heatmap_is_row_normalized_with_per_class_accuracy():
    fig = train_figures.confusion_heatmap(np.array([[3, 1], [0, 4]]), ["A", "B"])
    z = np.asarray(fig.data[0].z)
    assert np.allclose(z.sum(axis=1), 1.0)
    assert fig.data[0].y[0] == "A (75%)"
    unnamed = train_figures.confusion_heatmap(np.array([[3, 1], [0, 4]]), [])  # a config without class names
    assert list(unnamed.data[0].y) == ["class 0 (75%)", "class 1 (100%)"]


def test_training_curves_put_accuracy_on_the_second_axis():
    epochs = pd.DataFrame({"epoch": [1, 2], "train_loss": [2.0, 1.0], "test_loss": [2.1, 1.5],
                           "train_acc": [0.3, 0.6], "test_acc": [0.2, 0.5]})
    fig = train_figures.training_curves(epochs)
    axes = {trace.name: trace.yaxis for trace in fig.data}
    assert axes["train acc"] == "y2" and axes["train loss"] in (None, "y")


def _real_cohort(testdata, tmp_path, ws):
    data = tmp_path / "gtex"
    (data / "slides").mkdir(parents=True)
    for name in ("GTEx_Portal_histology_sample.csv", "GTEx_v8_gene_reads_acmg59_subset.gct.gz"):
        (data / name).symlink_to(testdata / name)
    return load_cohort(data, ws)


def test_gene_funnel_is_cached_in_diskcache(testdata, tmp_path, ws, monkeypatch):
    cohort = _real_cohort(testdata, tmp_path, ws)
    params = GeneFilterParams(min_log_tpm=1.0, min_sd=0.1)
    funnel, values = summary.gene_funnel(ws, cohort, params)
    assert funnel[0] == ("all genes", 59)
    assert values.size == cohort.expression.values.size
    monkeypatch.setattr(summary, "gene_filter_mask", lambda *a, **k: pytest.fail("recomputed"))
    assert summary.gene_funnel(ws, cohort, params)[0] == funnel
    with pytest.raises(pytest.fail.Exception):  # new parameters are a new key
        summary.gene_funnel(ws, cohort, GeneFilterParams(min_log_tpm=2.0))


def test_slide_thumbnail_of_the_real_svs_is_cached_with_its_mask(testdata, ws, monkeypatch):
    shown = tile_views.slide_thumbnail(ws, testdata / "CMU-1-Small-Region.svs", max_side=512)
    assert max(shown["thumb"].shape[:2]) == 512
    assert shown["mask"].shape == shown["thumb"].shape[:2] and 0.1 < shown["mask"].mean() < 0.9
    assert shown["meta"]["magnification"] == 20 and not shown["meta"]["magnification_assumed"]
    monkeypatch.setattr(tile_views, "open_slide", lambda *a, **k: pytest.fail("slide read again"))
    again = tile_views.slide_thumbnail(ws, testdata / "CMU-1-Small-Region.svs", max_side=512)
    assert np.array_equal(again["thumb"], shown["thumb"])


def test_a_corrupt_cache_entry_is_recomputed(ws, monkeypatch):
    calls = []
    with open_cache(ws) as cache:
        cache.set("k", b"ok")
        monkeypatch.setattr(cache, "get", lambda *a, **k: (_ for _ in ()).throw(ValueError("corrupt")))
        assert cached(cache, "k", lambda: calls.append(1) or "fresh") == "fresh"
    assert calls == [1]


def test_runs_overlay_names_the_metric_and_shows_accuracy_in_percent():
    epochs = pd.DataFrame({"epoch": [1, 2], "test_acc": [0.4, 0.6], "train_loss": [2.0, 1.5]})
    acc = train_figures.runs_overlay({"run-a": epochs, "run-b": epochs.iloc[:0]}, "test_acc")
    assert [t.name for t in acc.data] == ["run-a"]  # a run without epochs draws nothing
    assert acc.layout.yaxis.title.text == "Test accuracy (held-out donors)" and acc.layout.yaxis.tickformat == ".0%"
    loss = train_figures.runs_overlay({"run-a": epochs}, "train_loss")
    assert loss.layout.yaxis.title.text == "Training loss" and loss.layout.yaxis.tickformat is None


def test_time_per_architecture_bars_the_median_over_runs_with_each_run_as_a_point():
    runs_table = pd.DataFrame({"run_id": ["a", "b", "c", "d"],
                               "arch": ["resnet50", "resnet50", "efficientnet_b0", "resnet50"],
                               "seconds_per_epoch": [30.0, 50.0, 20.0, 40.0]})
    fig = train_figures.seconds_per_epoch_by_arch(runs_table)
    bars, points = fig.data
    assert list(bars.x) == ["efficientnet_b0", "resnet50"] and list(bars.y) == [20.0, 40.0]
    assert list(bars.text) == ["20.0 s (1 run)", "40.0 s (3 runs)"]
    assert len(points.x) == 4
