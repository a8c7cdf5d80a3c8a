"""Tissue separation across a run's epochs: every checkpoint and random weights scored at the slide and the tile
level, the scores cached beside each embedding (a page reads them without scoring), the figure with trained and
random weights side by side, and the CLI's --epochs."""

from __future__ import annotations

import json
import zlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from core.base.config import Workspace
from core.base.errors import DataError
from core.embed import compute as embed
from core.embed import features
from core.embed import separability as separation
from core.embed.compute import TileEmbeddings, selected_tiles
from core.embed.separability import (
    embedding_scores,
    epochs_to_score,
    scored_epochs,
    separation_across_epochs,
    spread_epochs,
)
from core.maps.figures import separation_by_epoch as epochs_figure
from core.tiles import pack as tilepack
from core.train.loop import save_checkpoint
from core.train.models import build_model

COLOURS = {"Lung": (200, 80, 90), "Liver": (90, 60, 50), "Skin": (230, 200, 180)}


def fake_read_tile(row: pd.Series, out_size: int | None = None) -> np.ndarray:
    size = out_size or 32
    rng = np.random.default_rng(int(row["x"]) + zlib.crc32(str(row["sample_id"]).encode()))
    image = np.array(COLOURS[row["tissue"]], dtype=np.float32) + rng.normal(0, 25, size=(size, size, 3))
    return np.clip(image, 0, 255).astype(np.uint8)


@pytest.fixture
def tiles(monkeypatch: pytest.MonkeyPatch) -> pd.DataFrame:
    """4 donors x 3 tissues x 3 tiles, pixels from fake_read_tile; no slides, no cohort."""
    rows = [{"sample_id": f"GTEX-D{d}-{t:04d}", "tissue": tissue, "subject_id": f"GTEX-D{d}",
             "slide_path": "/nowhere.svs", "level": 0, "x": 448 * k, "y": 0, "read_size": 448, "tile_size": 448,
             "passed_qc": True, "selected": True}
            for d in range(4) for t, tissue in enumerate(COLOURS) for k in range(3)]
    chosen = selected_tiles(pd.DataFrame(rows))
    monkeypatch.setattr(embed, "dataset_tiles", lambda ws, data_dir, progress=None: chosen)
    monkeypatch.setattr(embed, "_saved_tiles", lambda ws, data_dir: chosen)
    monkeypatch.setattr(tilepack, "_default_read_tile", lambda: fake_read_tile)
    return chosen


def make_run(root: Path, epochs: int = 2) -> Path:
    run_dir = root / "run"
    run_dir.mkdir(parents=True)
    classes = sorted(COLOURS)
    (run_dir / "config.json").write_text(json.dumps({"arch": "efficientnet_b0", "image_size": 32,
                                                     "classes": classes}))
    lines = []
    for epoch in range(1, epochs + 1):
        torch.manual_seed(epoch)
        save_checkpoint(run_dir / "checkpoints" / f"epoch_{epoch:03d}.pt",
                        {"epoch": epoch, "model": build_model("efficientnet_b0", len(classes)).state_dict(),
                         "optimizer": {}, "rng": {}})
        lines.append(json.dumps({"type": "epoch", "epoch": epoch, "val_acc": 0.5 + epoch / 10,
                                 "test_acc": 0.4 + epoch / 10}))
    (run_dir / "metrics.jsonl").write_text("\n".join(lines) + "\n")
    return run_dir


def _count_model_loads(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    loads: list[int] = []
    real = features.load_feature_model

    def load(source, device=None, calibration=None):
        loads.append(1)
        return real(source, device, calibration)

    monkeypatch.setattr(features, "load_feature_model", load)
    return loads


def test_every_epoch_and_random_weights_scored_at_both_levels_then_read_back(
        ws: Workspace, tiles: pd.DataFrame, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    run_dir = make_run(tmp_path)
    assert scored_epochs(ws, "/unused", run_dir).empty  # nothing computed yet: a page shows nothing
    loads = _count_model_loads(monkeypatch)
    table = separation_across_epochs(ws, "/unused", run_dir, batch_size=16, pack_workers=1, device="cpu")
    assert len(loads) == 3
    assert table["epoch"].tolist() == [0, 1, 2] and table["source"].tolist() == ["random", "checkpoint", "checkpoint"]
    assert table["tiles_scored"].tolist() == [len(tiles)] * 3
    for column in ("silhouette", "knn_accuracy", "tile_silhouette", "tile_knn_accuracy", "chance_accuracy"):
        assert table[column].notna().all(), column
    assert table["test_acc"].tolist()[1:] == pytest.approx([0.5, 0.6]) and pd.isna(table["test_acc"].iloc[0])
    assert table["val_acc"].tolist()[1:] == pytest.approx([0.6, 0.7])
    # A second call embeds and scores nothing; a page's read gives the same rows without scoring.
    monkeypatch.setattr(separation, "separation", lambda *a, **k: pytest.fail("scored again"))
    again = separation_across_epochs(ws, "/unused", run_dir)
    assert len(loads) == 3
    pd.testing.assert_frame_equal(again, table)
    pd.testing.assert_frame_equal(scored_epochs(ws, "/unused", run_dir), table)


def test_some_epochs_only_and_a_missing_one_is_a_data_error(
        ws: Workspace, tiles: pd.DataFrame, tmp_path: Path) -> None:
    run_dir = make_run(tmp_path)
    table = separation_across_epochs(ws, "/unused", run_dir, [2], batch_size=16, pack_workers=1, device="cpu")
    assert table["epoch"].tolist() == [0, 2]
    assert scored_epochs(ws, "/unused", run_dir)["epoch"].tolist() == [0, 2]
    with pytest.raises(DataError, match=r"no checkpoint for epoch\(s\) \[7\]"):
        separation_across_epochs(ws, "/unused", run_dir, [7])


def test_embedding_scores_see_planted_tissues_at_both_levels_and_are_saved(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    meta = pd.DataFrame([{"tile_id": f"S{d}{t}:{k}:0", "sample_id": f"S{d}{t}", "tissue": f"T{t}",
                          "subject_id": f"D{d}"} for d in range(5) for t in range(3) for k in range(20)])
    codes = meta["tissue"].str[1].astype(int).to_numpy()
    values = (np.eye(3)[codes] * 6 + rng.normal(size=(len(meta), 3))).astype(np.float32)
    folder = tmp_path / "entry"
    folder.mkdir()
    tiles = TileEmbeddings(meta["tile_id"].to_numpy(), meta["sample_id"].to_numpy(), values, "k", meta,
                           folder / "values.npy")
    scores = embedding_scores(tiles, tile_points=200)
    assert scores["knn_accuracy"] == 1.0 and scores["tile_knn_accuracy"] > 0.95
    assert scores["silhouette"] > 0.5 and scores["tile_silhouette"] > 0.5
    assert scores["tiles_scored"] == 200 and scores["slides"] == 15
    assert json.loads((folder / "separation.json").read_text())["scores"] == scores
    shuffled = TileEmbeddings(tiles.tile_keys, tiles.sample_ids, rng.permutation(values), "k", meta, None)
    assert embedding_scores(shuffled, tile_points=200)["tile_knn_accuracy"] < 0.6  # chance is 1/3


def test_spread_epochs_keeps_the_first_and_the_last() -> None:
    picked = spread_epochs(list(range(1, 31)), 8)
    assert len(picked) == 8 and picked[0] == 1 and picked[-1] == 30 and picked == sorted(picked)
    assert spread_epochs([3, 1, 2]) == [1, 2, 3]


def test_figure_shows_trained_and_random_weights_side_by_side() -> None:
    table = pd.DataFrame({
        "epoch": [0, 1, 5, 10], "source": ["random", "checkpoint", "checkpoint", "checkpoint"],
        "silhouette": [0.01, 0.1, 0.2, 0.3], "knn_accuracy": [0.4, 0.6, 0.8, 0.9],
        "tile_silhouette": [0.0, 0.05, 0.1, 0.15], "tile_knn_accuracy": [0.3, 0.5, 0.7, 0.8],
        "chance_accuracy": [0.2] * 4, "val_acc": [None, 0.7, 0.8, 0.8], "test_acc": [None, 0.6, 0.8, 0.8]})
    fig = epochs_figure(table)
    names = [trace.name for trace in fig.data]
    for level in ("slides", "tiles"):
        assert f"{level}: trained" in names and f"{level}: random weights" in names
    random = [t for t in fig.data if t.name == "slides: random weights" and t.xaxis == "x"][0]
    assert list(random.x) == [1, 10] and list(random.y) == [0.4, 0.4] and random.line.dash == "dash"
    trained = [t for t in fig.data if t.name == "slides: trained" and t.xaxis == "x"][0]
    assert list(trained.x) == [1, 5, 10]  # epoch 0 (random) is not drawn as a trained point
    assert {"classifier test accuracy", "classifier validation accuracy", "baseline: commonest tissue"} <= set(names)


def test_cli_epochs_option_round_trips_and_rejects_bad_lists(tmp_path: Path) -> None:
    import argparse

    from core.cli import embed as cli_embed
    from core.embed import jobs as embed_jobs
    from core.embed.features import FeatureSource

    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="command")
    cli_embed.register(sub)
    run_dir = make_run(tmp_path, epochs=1)
    argv = embed_jobs.embed_argv("/data", FeatureSource.checkpoint(run_dir), all_epochs=True, epochs=[10, 2])
    args = parser.parse_args(argv)
    assert args.all_epochs and args.epochs == [2, 10]
    assert parser.parse_args(embed_jobs.embed_argv("/data", FeatureSource.checkpoint(run_dir),
                                                  all_epochs=True)).epochs is None
    for bad in ("x", "0,3", ","):
        with pytest.raises(SystemExit):
            parser.parse_args(["embed", "--all-epochs", "--epochs", bad])


def test_epochs_to_score_never_offers_a_scored_epoch() -> None:
    available = list(range(1, 31))
    assert epochs_to_score(available, set()) == spread_epochs(available)
    assert epochs_to_score(available, {1, 30}) == [e for e in spread_epochs(available) if e not in {1, 30}]
    after_the_default = set(spread_epochs(available))  # what the page scored first (the demo tour's run: 8 epochs)
    offered = epochs_to_score(available, after_the_default)
    assert offered and not set(offered) & after_the_default and len(offered) == 8
    assert epochs_to_score(available, set(available)) == []
