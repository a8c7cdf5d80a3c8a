"""How well an embedding separates tissues: silhouette by tissue, and k-nearest-neighbour tissue accuracy
with whole donors held out (a donor's other slides share its staining and would flatter the score).
Each score comes with its baseline: the accuracy of always guessing the commonest training tissue.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

SILHOUETTE_SAMPLE = 5000  # silhouette is O(n^2): tile-level scores use a seeded sample of this many points


@dataclass
class Separation:
    silhouette: float | None  # -1..1; None with fewer than 2 tissues
    knn_accuracy: float | None  # share of points whose tissue kNN from other donors gets right
    chance_accuracy: float | None  # baseline: the commonest tissue of the training folds
    points: int
    tissues: int
    donors: int
    folds: int
    k: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _labels(values: np.ndarray, tissues, donors=None) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    x = np.asarray(values, dtype=np.float32)
    y = np.asarray(tissues).astype(str)
    if x.ndim != 2 or len(x) != len(y):
        raise ValueError(f"values must be (n, d) with one tissue per row; got {x.shape} and {len(y)} tissues")
    g = np.asarray(donors).astype(str) if donors is not None else None
    if g is not None and len(g) != len(y):
        raise ValueError("one donor per row is required")
    return x, y, g


def silhouette_by_tissue(values: np.ndarray, tissues, metric: str = "euclidean", seed: int = 0) -> float | None:
    """Mean silhouette with tissues as clusters (None when fewer than 2 tissues or a point per tissue)."""
    from sklearn.metrics import silhouette_score

    x, y, _ = _labels(values, tissues)
    if len(np.unique(y)) < 2 or len(np.unique(y)) >= len(y):
        return None
    size = SILHOUETTE_SAMPLE if len(y) > SILHOUETTE_SAMPLE else None
    return float(silhouette_score(x, y, metric=metric, sample_size=size, random_state=seed))


def knn_tissue_accuracy(values: np.ndarray, tissues, donors, k: int = 5, folds: int = 5,
                        metric: str = "euclidean") -> tuple[float | None, float | None, int]:
    """(kNN accuracy, commonest-tissue baseline, folds used) with whole donors held out per fold.

    GroupKFold on the donors: no donor has points on both sides of a fold. None, None, 0 with fewer than
    two donors.
    """
    from sklearn.model_selection import GroupKFold
    from sklearn.neighbors import KNeighborsClassifier

    x, y, g = _labels(values, tissues, donors)
    n_donors = len(np.unique(g))
    if n_donors < 2:
        return None, None, 0
    n_folds = min(folds, n_donors)
    correct = baseline = 0
    for train, test in GroupKFold(n_splits=n_folds).split(x, y, g):
        neighbours = KNeighborsClassifier(n_neighbors=min(k, len(train)), metric=metric)
        neighbours.fit(x[train], y[train])
        correct += int((neighbours.predict(x[test]) == y[test]).sum())
        names, counts = np.unique(y[train], return_counts=True)
        baseline += int((y[test] == names[np.argmax(counts)]).sum())
    return correct / len(y), baseline / len(y), n_folds


def separation(values: np.ndarray, tissues, donors, k: int = 5, folds: int = 5,
               metric: str = "euclidean") -> Separation:
    """Silhouette and donor-held-out kNN accuracy (with its baseline) of one embedding."""
    x, y, g = _labels(values, tissues, donors)
    accuracy, chance, used = knn_tissue_accuracy(x, y, g, k, folds, metric)
    return Separation(
        silhouette=silhouette_by_tissue(x, y, metric), knn_accuracy=accuracy, chance_accuracy=chance,
        points=len(y), tissues=len(np.unique(y)), donors=len(np.unique(g)), folds=used, k=k,
    )


def _clean(value: float | None) -> float | None:
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else value


def separation_across_epochs(
    ws,
    data_dir: str | Path,
    run: str | Path,
    epochs: list[int] | None = None,
    *,
    include_random: bool = True,
    progress: Callable[[int, int, str], None] | None = None,
    cancel: Callable[[], bool] | None = None,
    **options,
) -> pd.DataFrame:
    """Slide-level separation of every checkpoint of `run` (or `epochs`), plus the same architecture with
    random weights as epoch 0: columns epoch, source, label, silhouette, knn_accuracy, chance_accuracy,
    test_acc (the run's tile test accuracy at that epoch), source_key.

    Each epoch's embeddings are cached, so a second call only recomputes the scores.
    """
    from core.embed import slide_embeddings
    from core.features import FeatureSource, checkpoint_epochs
    from core.runs import read_metrics

    run_dir = Path(run)
    chosen = list(epochs) if epochs is not None else checkpoint_epochs(run_dir)
    sources = [(0, FeatureSource.for_run(run_dir, "random"))] if include_random else []
    sources += [(e, FeatureSource.checkpoint(run_dir, e)) for e in chosen]
    _, epoch_metrics = read_metrics(run_dir)
    test_acc = dict(zip(epoch_metrics["epoch"], epoch_metrics["test_acc"], strict=True))
    rows = []
    for i, (epoch, source) in enumerate(sources):
        def report(done: int, total: int, message: str, _i: int = i, _label: str = source.label) -> None:
            if progress is not None:
                fraction = done / total if total else 0.0
                progress(_i * 1000 + round(1000 * fraction), len(sources) * 1000, f"{_label}: {message}")

        slides = slide_embeddings(ws, data_dir, source, report, cancel, **options)
        scores = separation(slides.values, slides.tissues, slides.subject_ids)
        rows.append({
            "epoch": epoch, "source": source.kind, "label": source.label,
            "silhouette": scores.silhouette, "knn_accuracy": scores.knn_accuracy,
            "chance_accuracy": scores.chance_accuracy,
            "test_acc": _clean(test_acc.get(epoch)) if source.kind == "checkpoint" else None,
            "source_key": source.key,
        })
    return pd.DataFrame(rows, columns=["epoch", "source", "label", "silhouette", "knn_accuracy", "chance_accuracy",
                                       "test_acc", "source_key"])
