"""Separation scored on the donors a checkpoint never trained on (validation + test): the training donors' score
comes apart and labelled, random weights are scored on the same held-out slides, and the JSON says how many."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from core.base.config import Workspace
from core.embed import compute
from core.embed.compute import TileEmbeddings
from core.embed.separability import (
    embedding_scores,
    held_out_of,
    scored_epochs,
    separation_across_epochs,
)

TRAINING = [f"D{d}" for d in range(8)]
HELD_OUT = [f"D{d}" for d in range(8, 12)]  # 2 validation, 2 test
TISSUES = ["T0", "T1", "T2"]


def fitted_tiles(folder: Path | None = None, seed: int = 0) -> TileEmbeddings:
    """4 tiles per slide, one slide per donor and tissue. Training donors' tiles sit on their tissue's corner
    (perfect separation, what a network fitting its training slides gives); held-out donors' are noise."""
    rng = np.random.default_rng(seed)
    meta = pd.DataFrame([{"tile_id": f"{d}-{t}:{k}:0", "sample_id": f"{d}-{t}", "tissue": t, "subject_id": d}
                         for d in TRAINING + HELD_OUT for t in TISSUES for k in range(4)])
    fitted = meta["subject_id"].isin(TRAINING).to_numpy()
    codes = meta["tissue"].str[1].astype(int).to_numpy()
    values = rng.normal(size=(len(meta), 3))
    values[fitted] = np.eye(3)[codes[fitted]] * 10 + rng.normal(0, 0.1, size=(int(fitted.sum()), 3))
    path = folder / "values.npy" if folder is not None else None
    return TileEmbeddings(meta["tile_id"].to_numpy(), meta["sample_id"].to_numpy(), values.astype(np.float32), "k",
                          meta, path)


def write_split(run_dir: Path, validation: list[str], test: list[str]) -> None:
    rows = [(f"{d}-{t}", d, "validation" if d in validation else "test" if d in test else "train")
            for d in TRAINING + HELD_OUT for t in TISSUES]
    pd.DataFrame(rows, columns=["sample_id", "subject_id", "split"]).to_csv(run_dir / "split.csv", index=False)


def make_run(root: Path, validation: list[str] = HELD_OUT[:2], test: list[str] = HELD_OUT[2:]) -> Path:
    run_dir = root / "run"
    (run_dir / "checkpoints").mkdir(parents=True)
    (run_dir / "config.json").write_text(json.dumps({"arch": "efficientnet_b0", "image_size": 32,
                                                     "classes": TISSUES}))
    for epoch in (1, 2):
        (run_dir / "checkpoints" / f"epoch_{epoch:03d}.pt").write_bytes(f"weights {epoch}".encode())
    (run_dir / "metrics.jsonl").write_text("".join(json.dumps({"type": "epoch", "epoch": e, "val_acc": 0.5,
                                                               "test_acc": 0.5}) + "\n" for e in (1, 2)))
    write_split(run_dir, validation, test)
    return run_dir


def test_held_out_scores_use_only_unseen_donors_and_training_comes_apart(tmp_path: Path) -> None:
    run_dir = make_run(tmp_path)
    held_out = held_out_of(run_dir)
    assert held_out is not None and held_out.held_out == frozenset(HELD_OUT)
    assert held_out.training == frozenset(TRAINING)
    everything = embedding_scores(fitted_tiles(), tile_points=10_000)
    assert everything["knn_accuracy"] > 0.6 and everything["held_out_slides"] is None  # fit flatters all slides
    scores = embedding_scores(fitted_tiles(), tile_points=10_000, held_out=held_out)
    assert scores["held_out_slides"] == scores["slides"] == len(HELD_OUT) * len(TISSUES)
    assert scores["tiles_scored"] == len(HELD_OUT) * len(TISSUES) * 4 and scores["donors"] == len(HELD_OUT)
    assert scores["knn_accuracy"] < 0.6 and scores["tile_knn_accuracy"] < 0.6  # chance is 1/3
    assert scores["silhouette"] < 0.2 and scores["tile_silhouette"] < 0.2
    assert scores["training_slides"] == len(TRAINING) * len(TISSUES)
    assert scores["training_knn_accuracy"] == 1.0 and scores["training_tile_knn_accuracy"] == 1.0
    assert scores["training_silhouette"] > 0.9


def test_a_run_without_a_split_scores_every_slide(tmp_path: Path) -> None:
    run_dir = make_run(tmp_path)
    (run_dir / "split.csv").unlink()
    assert held_out_of(run_dir) is None


def test_every_epoch_and_random_weights_are_scored_on_the_same_held_out_slides(
        ws: Workspace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Random weights serve every run of an architecture: each run's held-out donors get their own scores."""
    run_dir = make_run(tmp_path)
    cache = tmp_path / "cache"
    seen: dict[str, Path] = {}

    def fake_embeddings(ws_, data_dir, source, progress=None, cancel=None, **options) -> TileEmbeddings:
        folder = seen.setdefault(source.key, cache / source.key)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "values.npy").write_bytes(b"")
        return fitted_tiles(folder, seed=len(seen))

    monkeypatch.setattr(compute, "tile_embeddings", fake_embeddings)
    monkeypatch.setattr(compute, "cached_folders", lambda ws_, data_dir, sources: [seen.get(s.key) for s in sources])
    table = separation_across_epochs(ws, "/unused", run_dir)
    assert table["source"].tolist() == ["random", "checkpoint", "checkpoint"]
    assert table["held_out_slides"].tolist() == [len(HELD_OUT) * len(TISSUES)] * 3
    assert table["training_slides"].tolist() == [len(TRAINING) * len(TISSUES)] * 3
    assert (table["knn_accuracy"] < 0.6).all() and (table["training_knn_accuracy"] == 1.0).all()
    pd.testing.assert_frame_equal(scored_epochs(ws, "/unused", run_dir), table)
    # Another run of the same architecture, other held-out donors: random weights scored again on its donors.
    other = tmp_path / "other"
    other.mkdir()
    make_run(other, validation=TRAINING[:2], test=TRAINING[2:4])
    again = scored_epochs(ws, "/unused", other / "run")
    assert again.empty  # the first run's scores are not passed off as this run's
    table = separation_across_epochs(ws, "/unused", other / "run")
    assert table["held_out_slides"].tolist() == [4 * len(TISSUES)] * 3
    assert (table["knn_accuracy"] == 1.0).all()  # its held-out donors are ones the fake embedding fits


def test_cli_json_carries_held_out_slides_for_random_weights_of_a_run(
        ws: Workspace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    import argparse

    from core.cli import embed as cli_embed

    run_dir = make_run(tmp_path)
    monkeypatch.setattr(compute, "tile_embeddings", lambda *a, **k: fitted_tiles(tmp_path))
    parser = argparse.ArgumentParser()
    parser.add_argument("--workspace")
    cli_embed.register(parser.add_subparsers(dest="command"))
    data = tmp_path / "data"
    data.mkdir()
    base = ["--workspace", str(ws.root), "embed", "--data", str(data), "--weights", "random", "--json"]
    assert cli_embed.run(parser.parse_args([*base, "--run", str(run_dir)])) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["held_out_slides"] == len(HELD_OUT) * len(TISSUES)
    assert result["slides"] == (len(TRAINING) + len(HELD_OUT)) * len(TISSUES)
    assert result["knn_accuracy"] < 0.6 and result["training_knn_accuracy"] == 1.0
    assert cli_embed.run(parser.parse_args([*base, "--arch", "efficientnet_b0"])) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["held_out_slides"] is None and result["training_knn_accuracy"] is None
    assert result["knn_accuracy"] > 0.6  # every slide, the fitted ones included


def test_figure_scores_held_out_donors_and_labels_the_training_donors_apart() -> None:
    from core.maps.figures import separation_by_epoch

    table = pd.DataFrame({
        "epoch": [0, 1, 5], "source": ["random", "checkpoint", "checkpoint"], "silhouette": [0.0, 0.1, 0.2],
        "knn_accuracy": [0.4, 0.6, 0.7], "tile_silhouette": [0.0, 0.05, 0.1], "tile_knn_accuracy": [0.3, 0.5, 0.6],
        "chance_accuracy": [0.2] * 3, "held_out_slides": [36] * 3, "training_silhouette": [0.0, 0.4, 0.8],
        "training_knn_accuracy": [0.4, 0.9, 1.0], "training_tile_silhouette": [0.0, 0.3, 0.6],
        "training_tile_knn_accuracy": [0.3, 0.8, 0.95]})
    fig = separation_by_epoch(table)
    titles = [a.text for a in fig.layout.annotations]
    assert "kNN tissue accuracy, held-out donors (36 slides)" in titles
    assert "held-out donors" in fig.layout.title.text
    fit = [t for t in fig.data if t.name == "slides: training donors (fit, not separation)" and t.xaxis == "x"][0]
    assert list(fit.x) == [1, 5] and list(fit.y) == [0.9, 1.0] and fit.line.dash == "dot"
    trained = [t for t in fig.data if t.name == "slides: trained" and t.xaxis == "x"][0]
    assert list(trained.y) == [0.6, 0.7]  # the held-out score is the solid line
    # A table scored on every slide (no split) keeps the old titles and draws no training-donor line.
    everything = separation_by_epoch(table.assign(held_out_slides=None))
    assert "kNN tissue accuracy (donors held out)" in [a.text for a in everything.layout.annotations]
    assert not [t for t in everything.data if "training donors" in t.name]
