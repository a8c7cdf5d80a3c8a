"""Figure builders and overview tables: data in, figures and frames out."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd

from core import figures, summary


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
    assert list(fig.data[0].x) == [100, 90, 85]


def test_thumbnail_outlines_each_tile_outcome():
    fig = figures.thumbnail_with_tiles(np.full((64, 64, 3), 255, np.uint8), 100.0, _index(),
                                       mask=np.zeros((64, 64), bool))
    names = {trace.name.split(" ")[0] for trace in fig.data[1:]}
    assert names == {"rejected", "kept", "selected"}


def test_confusion_heatmap_is_row_normalized_with_per_class_accuracy():
    fig = figures.confusion_heatmap(np.array([[3, 1], [0, 4]]), ["A", "B"])
    z = np.asarray(fig.data[0].z)
    assert np.allclose(z.sum(axis=1), 1.0)
    assert fig.data[0].y[0] == "A (75%)"


def test_training_curves_put_accuracy_on_the_second_axis():
    epochs = pd.DataFrame({"epoch": [1, 2], "train_loss": [2.0, 1.0], "test_loss": [2.1, 1.5],
                           "train_acc": [0.3, 0.6], "test_acc": [0.2, 0.5]})
    fig = figures.training_curves(epochs)
    axes = {trace.name: trace.yaxis for trace in fig.data}
    assert axes["train acc"] == "y2" and axes["train loss"] in (None, "y")
