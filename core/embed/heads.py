"""Predicted tissue per point: a checkpoint's linear head applied to its cached penultimate embeddings.

The classifier is `head(backbone(x))` with a linear head, and the embeddings are that backbone's output,
so a tile's logits are `values @ W.T + b` with no second pass through the network. A slide's embedding is
the mean of its tiles', so the head applied to it gives the mean of its tiles' logits. The head (W, b and the
class names) is read once from the checkpoint and kept beside the embeddings as head.npz, so later page
runs read it without torch.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from core.base.errors import DataError

HEAD_NAME = "head.npz"
NOT_TRAINED = "tissue not in the run"


def checkpoint_head(source, cache_folder: str | Path | None = None) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """(W: classes x dim, b: classes, class names) of a checkpoint FeatureSource's linear head.

    Read from `cache_folder`/head.npz when there; else from the checkpoint (torch), then saved there.
    DataError naming the file when the checkpoint has no head that fits its run's classes.
    """
    saved = Path(cache_folder) / HEAD_NAME if cache_folder is not None else None
    if saved is not None and saved.is_file():
        with np.load(saved, allow_pickle=False) as data:
            return data["weight"], data["bias"], [str(c) for c in data["classes"]]
    path = source.checkpoint_path
    if path is None:
        raise DataError(None, "predicted tissue needs a checkpoint feature source")
    from core.train.loop import load_checkpoint

    state = load_checkpoint(path)["model"]
    try:
        classes = [str(c) for c in json.loads((Path(str(source.run_dir)) / "config.json").read_text())["classes"]]
    except (OSError, ValueError, KeyError) as exc:
        raise DataError(Path(str(source.run_dir)) / "config.json", f"no class list ({exc})") from None
    if "head.weight" not in state or "head.bias" not in state:
        raise DataError(path, "checkpoint has no linear head (head.weight / head.bias)")
    weight = state["head.weight"].float().numpy()
    bias = state["head.bias"].float().numpy()
    if weight.shape[0] != len(classes) or bias.shape != (len(classes),):
        raise DataError(path, f"head has {weight.shape[0]} outputs but the run has {len(classes)} classes")
    if saved is not None and saved.parent.is_dir():
        from core.base.fileio import atomic_path

        with atomic_path(saved) as tmp, open(tmp, "wb") as out:
            np.savez(out, weight=weight, bias=bias, classes=np.asarray(classes, dtype=str))
    return weight, bias, classes


def predict(values: np.ndarray, weight: np.ndarray, bias: np.ndarray, classes: list[str]
            ) -> tuple[np.ndarray, np.ndarray]:
    """(predicted class name, its softmax probability) per row of `values`."""
    values = np.asarray(values, dtype=np.float32)
    if values.ndim != 2 or values.shape[1] != weight.shape[1]:
        raise DataError(None, f"embeddings of width {values.shape[-1]} do not fit a head of width {weight.shape[1]}")
    logits = values @ weight.T.astype(np.float32) + bias.astype(np.float32)
    logits -= logits.max(axis=1, keepdims=True)
    probs = np.exp(logits)
    probs /= probs.sum(axis=1, keepdims=True)
    best = probs.argmax(axis=1)
    return np.asarray(classes, dtype=object)[best].astype(str), probs[np.arange(len(best)), best]


def add_predictions(points, source, cache_folder: str | Path | None = None):
    """Sets meta["predicted_tissue"] and meta["prediction"] ("correct", "wrong", or NOT_TRAINED for a tissue
    the run had no class for) on a tiles or slides PointSet of a checkpoint source; others pass unchanged."""
    if points.level not in ("tiles", "slides") or source is None or source.kind != "checkpoint":
        return points
    weight, bias, classes = checkpoint_head(source, cache_folder)
    predicted, _ = predict(points.values, weight, bias, classes)
    truth = points.meta["tissue"].astype(str).to_numpy()
    points.meta["predicted_tissue"] = predicted
    points.meta["prediction"] = np.where(~np.isin(truth, classes), NOT_TRAINED,
                                         np.where(predicted == truth, "correct", "wrong"))
    return points
