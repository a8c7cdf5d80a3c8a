"""A tiny workspace a prediction can run against: a small demo cohort, a run whose checkpoints hold random
EfficientNet-B0 weights at 32 px (epoch 1 is the one validation selects, epoch 2 the best on test), and that
run's gene ranking with fast parameters. Shared by the predict tests (core, page, tour)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import tifffile
import torch

from core.base.config import Workspace, workspace
from core.data.dataset import load_cohort
from core.demo import ensure_demo_cohort
from core.embed.compute import slide_embeddings
from core.embed.features import FeatureSource
from core.predict import PredictRequest
from core.ranking.api import rank_genes
from core.ranking.jobs import baseline_source
from core.ranking.params import RankParams
from core.train.loop import save_checkpoint
from core.train.models import build_model

TINY_COHORT = {"n_donors": 6, "n_tissues": 2, "slide_size": (1024, 1024), "n_genes": 120, "workers": 1}
FAST_RANKING = RankParams(components=4, folds=3, repeats=1, clusters=2, permutation_null=False)
RUN_ID = "20260101-000000-test"


def make_run(ws: Workspace, classes: list[str], data_dir: Path, epochs: int = 2) -> Path:
    """A finished run with random-weight checkpoints; validation prefers epoch 1, test epoch 2."""
    run_dir = ws.runs_dir / RUN_ID
    run_dir.mkdir(parents=True, exist_ok=True)
    config = {"arch": "efficientnet_b0", "image_size": 32, "classes": sorted(classes), "data_dir": str(data_dir),
              "epochs": epochs}
    (run_dir / "config.json").write_text(json.dumps(config))
    lines = []
    for epoch in range(1, epochs + 1):
        torch.manual_seed(epoch)
        save_checkpoint(run_dir / "checkpoints" / f"epoch_{epoch:03d}.pt",
                        {"epoch": epoch, "model": build_model("efficientnet_b0", len(classes)).state_dict(),
                         "optimizer": {}, "rng": {}})
        confusion = (np.eye(len(classes), dtype=int) * 3 + 1).tolist()  # what the Training page draws
        lines.append(json.dumps({"type": "epoch", "epoch": epoch, "train_loss": 0.7, "train_acc": 0.6,
                                 "val_loss": 1.0, "val_acc": 0.9 - 0.1 * epoch, "test_loss": 0.9,
                                 "test_acc": 0.5 + 0.1 * epoch, "seconds": 1.0, "tiles_per_s": 10.0,
                                 "confusion": confusion, "val_confusion": confusion}))
    (run_dir / "metrics.jsonl").write_text("\n".join(lines) + "\n")
    (run_dir / "summary.json").write_text(json.dumps({"status": "done", "epochs_done": epochs,
                                                      "val_acc_selected": 0.8, "selected_epoch": 1}))
    return run_dir


def make_predict_workspace(root: Path, rank: bool = True) -> tuple[Workspace, Path, PredictRequest]:
    """(workspace, run folder, a request with the fast ranking parameters); the ranking is computed when `rank`."""
    ws = workspace(root)
    data_dir = ensure_demo_cohort(ws, **TINY_COHORT)
    cohort = load_cohort(data_dir, ws)
    classes = sorted(cohort.samples["tissue"].astype(str).unique())
    run_dir = make_run(ws, classes, data_dir)
    if rank:
        source = FeatureSource.checkpoint(run_dir, 1)
        for features in (source, baseline_source(source)):  # in this process: no pool of tile readers to start
            slide_embeddings(ws, data_dir, features, pack_workers=1)
        rank_genes(ws, data_dir, source, FAST_RANKING, cohort=cohort)
    request = PredictRequest(run_dir=str(run_dir), ranking=FAST_RANKING, r2_threshold=-1e9, neighbours=3,
                             map_method="pca")
    return ws, run_dir, request


def two_scene_ome_tiff(path: Path) -> Path:
    """An OME-TIFF of two tissue sections (scenes) at the same resolution; scene 1 is wider than scene 0, so its
    tiles drawn over scene 0's thumbnail would fall off the image."""
    from tests.test_tiling import tissue_texture

    with tifffile.TiffWriter(path, ome=True) as tif:
        tif.write(tissue_texture(1344, 1344, seed=1), photometric="rgb", metadata={"axes": "YXS"})
        tif.write(tissue_texture(896, 2688, seed=9), photometric="rgb", metadata={"axes": "YXS"})
    return path
