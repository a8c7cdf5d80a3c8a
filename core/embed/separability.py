"""How well an embedding separates tissues: silhouette by tissue, and k-nearest-neighbour tissue accuracy
with whole donors held out (a donor's other slides share its staining and would flatter the score).
Each score comes with its baseline: the accuracy of always guessing the commonest training tissue.

A checkpoint has seen its training donors' slides, so an embedding is scored on the slides of the run's
held-out donors (validation + test) and the training donors' score is reported apart (`training_*`).
Random and ImageNet weights are scored on the same held-out slides of the run they are compared with.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from core.base.types import Cancel, Progress

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


@dataclass(frozen=True)
class HeldOut:
    """A run's donors that its checkpoints never trained on (validation + test) and those they did.

    `column` names what the sets hold: subject_id, or sample_id for a run saved before split.csv (its
    split.json has no donors)."""

    held_out: frozenset[str]
    training: frozenset[str]
    column: str = "subject_id"

    @property
    def key(self) -> str:
        """Content hash of the split: names the scores file, so one embedding keeps a score per split."""
        import hashlib

        text = "\n".join([self.column, *sorted(self.held_out), "--", *sorted(self.training)])
        return hashlib.sha1(text.encode()).hexdigest()[:16]


def held_out_of(run_dir: str | Path) -> HeldOut | None:
    """The held-out and training donors of a run's saved split (None when it has no split)."""
    from core.base.errors import DataError
    from core.train.runs import run_split

    try:
        split = run_split(run_dir)
    except DataError:
        return None
    donors = split["subject_id"].fillna("").astype(str)
    column = "subject_id" if donors.ne("").all() else "sample_id"
    names = donors if column == "subject_id" else split["sample_id"].astype(str)
    training = frozenset(names[split["split"] == "train"])
    return HeldOut(held_out=frozenset(names[split["split"] != "train"]) - training, training=training, column=column)


def _clean(value: float | None) -> float | None:
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else value


SCORE_TILES = 5000  # tile-level scores across epochs: a seeded sample of this many tiles per embedding
SCORES_NAME = "separation.json"  # beside an embedding's values.npy: its scores, so a page only reads them
_SCORES_VERSION = 2  # 2: held-out donors scored apart from training donors (version 1 scored every slide)
EPOCH_TABLE_COLUMNS = (
    "epoch", "source", "label", "silhouette", "knn_accuracy", "chance_accuracy", "tile_silhouette",
    "tile_knn_accuracy", "tile_chance_accuracy", "tiles_scored", "held_out_slides", "training_silhouette",
    "training_knn_accuracy", "training_chance_accuracy", "training_tile_silhouette", "training_tile_knn_accuracy",
    "training_slides", "val_acc", "test_acc", "source_key",
)


def scores_name(held_out: HeldOut | None) -> str:
    """The scores file of an embedding: one per split it was scored on (random weights serve many runs)."""
    return SCORES_NAME if held_out is None else f"separation-{held_out.key}.json"


def _rows_of(names: np.ndarray, donors: frozenset[str]) -> np.ndarray:
    return np.flatnonzero(np.isin(np.asarray(names).astype(str), list(donors)))


def _tile_sample(rows: np.ndarray, tile_points: int, seed: int) -> np.ndarray:
    if len(rows) > tile_points:
        return np.sort(np.random.default_rng(seed).choice(rows, tile_points, replace=False))
    return rows


def split_separation(values: np.ndarray, tissues, donors, sample_ids, held_out: HeldOut | None) -> dict[str, Any]:
    """separation of the points of `held_out`'s held-out donors (their count as held_out_points) with the
    training donors' points scored apart under "training"; without `held_out`, every point (held_out_points
    and training None). One row per point: its tissue, donor and slide."""
    x, y, g = _labels(values, tissues, donors)
    if held_out is None:
        return {**separation(x, y, g).to_dict(), "held_out_points": None, "training": None}
    names = g if held_out.column == "subject_id" else np.asarray(sample_ids).astype(str)
    scored, fit = _rows_of(names, held_out.held_out), _rows_of(names, held_out.training)
    scores = separation(x[scored], y[scored], g[scored])
    return {**scores.to_dict(), "held_out_points": scores.points,
            "training": separation(x[fit], y[fit], g[fit]).to_dict()}


def slide_separation(tiles, held_out: HeldOut | None = None) -> dict[str, Any]:
    """Slide-level scores only (what `embed` prints, not cached): on the held-out donors' slides with the
    training donors' apart, like embedding_scores; `all_slides` counts every slide embedded."""
    from core.embed.compute import slide_means

    slides = slide_means(tiles)
    scores = split_separation(slides.values, slides.tissues, slides.subject_ids, slides.sample_ids, held_out)
    fit = scores["training"] or {}
    return {
        "silhouette": scores["silhouette"], "knn_accuracy": scores["knn_accuracy"],
        "chance_accuracy": scores["chance_accuracy"], "tissues": scores["tissues"], "donors": scores["donors"],
        "all_slides": len(slides.values), "held_out_slides": scores["held_out_points"],
        "training_silhouette": fit.get("silhouette"), "training_knn_accuracy": fit.get("knn_accuracy"),
        "training_chance_accuracy": fit.get("chance_accuracy"), "training_slides": fit.get("points"),
    }


def embedding_scores(tiles, tile_points: int = SCORE_TILES, seed: int = 0,
                     held_out: HeldOut | None = None) -> dict[str, Any]:
    """Slide-level (mean of each slide's tiles) and tile-level (seeded sample of `tile_points` tiles) tissue
    separation of one cached embedding (core.embed.compute.TileEmbeddings), donors held out for kNN.

    With `held_out` (a run's split, held_out_of) the scores use only the slides of its held-out donors
    (`held_out_slides` counts them) and the training donors' scores come apart as `training_*`; without it,
    every slide is scored and `held_out_slides` is None.

    Saved beside the embedding (scores_name) and read back by later calls, so a page can show the scores of
    every embedding already computed without scoring anything.
    """
    from core.base.fileio import atomic_write_json, read_json_object

    folder = Path(tiles.path).parent if tiles.path is not None else None
    stamp = {"version": _SCORES_VERSION, "tile_points": int(tile_points), "seed": int(seed),
             "held_out": held_out.key if held_out is not None else None}
    if folder is not None:
        saved = read_json_object(folder / scores_name(held_out))
        if saved and all(saved.get(k) == v for k, v in stamp.items()) and isinstance(saved.get("scores"), dict):
            return saved["scores"]
    by_slide = slide_separation(tiles, held_out)
    meta = tiles.tiles
    if held_out is None:
        rows = _tile_sample(np.arange(len(meta)), tile_points, seed)
    else:  # up to tile_points tiles of each side, so the training donors' many tiles do not crowd out the rest
        names = meta[held_out.column].astype(str).to_numpy()
        rows = np.sort(np.concatenate([_tile_sample(_rows_of(names, donors), tile_points, seed)
                                       for donors in (held_out.held_out, held_out.training)]))
    by_tile = split_separation(np.asarray(tiles.values[rows], dtype=np.float32), meta["tissue"].to_numpy()[rows],
                               meta["subject_id"].to_numpy()[rows], meta["sample_id"].to_numpy()[rows], held_out)
    fit = by_tile["training"] or {}
    held = by_slide["held_out_slides"]
    scores: dict[str, Any] = {
        "silhouette": by_slide["silhouette"], "knn_accuracy": by_slide["knn_accuracy"],
        "chance_accuracy": by_slide["chance_accuracy"], "slides": by_slide["all_slides"] if held is None else held,
        "tile_silhouette": by_tile["silhouette"], "tile_knn_accuracy": by_tile["knn_accuracy"],
        "tile_chance_accuracy": by_tile["chance_accuracy"], "tiles_scored": by_tile["points"],
        "tissues": by_slide["tissues"], "donors": by_slide["donors"], "held_out_slides": held,
        **{k: by_slide[k] for k in ("training_silhouette", "training_knn_accuracy", "training_chance_accuracy")},
        "training_tile_silhouette": fit.get("silhouette"), "training_tile_knn_accuracy": fit.get("knn_accuracy"),
        "training_slides": by_slide["training_slides"],
    }
    if folder is not None and folder.is_dir():
        atomic_write_json(folder / scores_name(held_out), {**stamp, "scores": scores})
    return scores


def spread_epochs(epochs: list[int], n: int = 8) -> list[int]:
    """Up to n epochs spread over `epochs` (first and last always in): what a CPU can score in minutes."""
    epochs = sorted(set(int(e) for e in epochs))
    if len(epochs) <= n:
        return epochs
    picks = np.unique(np.round(np.linspace(0, len(epochs) - 1, n)).astype(int))
    return [epochs[i] for i in picks]


def epochs_to_score(available: list[int], scored: set[int], n: int = 8) -> list[int]:
    """The epochs a page offers to score next: the spread ones not scored yet, else a spread of the unscored
    ones (never an epoch already scored; empty when every checkpoint is)."""
    fresh = [e for e in spread_epochs(available, n) if e not in scored]
    return fresh or spread_epochs([e for e in available if e not in scored], n)


def _epoch_sources(run_dir: Path, epochs: list[int] | None, include_random: bool) -> list[tuple[int, Any]]:
    from core.embed.features import FeatureSource, checkpoint_epochs

    available = checkpoint_epochs(run_dir)
    chosen = sorted(set(int(e) for e in epochs)) if epochs is not None else available
    missing = sorted(set(chosen) - set(available))
    if missing:
        from core.base.errors import DataError

        raise DataError(run_dir / "checkpoints", f"no checkpoint for epoch(s) {missing}; saved: {available}")
    sources = [(0, FeatureSource.for_run(run_dir, "random"))] if include_random else []
    return sources + [(e, FeatureSource.checkpoint(run_dir, e)) for e in chosen]


def _epoch_row(run_metrics: pd.DataFrame, epoch: int, source, scores: dict[str, Any]) -> dict[str, Any]:
    row = {"epoch": epoch, "source": source.kind, "label": source.label, "source_key": source.key}
    row.update({k: scores.get(k) for k in EPOCH_TABLE_COLUMNS if k in scores})
    trained = source.kind == "checkpoint"
    at = run_metrics[run_metrics["epoch"] == epoch] if trained else run_metrics.iloc[:0]
    for column in ("val_acc", "test_acc"):
        row[column] = _clean(float(at[column].iloc[-1])) if len(at) and pd.notna(at[column].iloc[-1]) else None
    return row


def _table(rows: list[dict[str, Any]]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=list(EPOCH_TABLE_COLUMNS))


def separation_across_epochs(
    ws,
    data_dir: str | Path,
    run: str | Path,
    epochs: list[int] | None = None,
    *,
    include_random: bool = True,
    tile_points: int = SCORE_TILES,
    progress: Progress | None = None,
    cancel: Cancel | None = None,
    **options,
) -> pd.DataFrame:
    """Tissue separation of every checkpoint of `run` (or of `epochs`), plus the same architecture with
    seeded random weights as epoch 0, at the slide level and the tile level (a seeded sample of `tile_points`
    tiles): columns EPOCH_TABLE_COLUMNS, with the run's validation and test accuracy at each epoch.

    Embeddings and scores are cached, so a second call reads them. `options` go to core.embed.compute.tile_embeddings.
    """
    from core.embed.compute import tile_embeddings
    from core.train.runs import read_metrics

    run_dir = Path(run)
    sources = _epoch_sources(run_dir, epochs, include_random)
    _, run_metrics = read_metrics(run_dir)
    held_out = held_out_of(run_dir)
    rows = []
    for i, (epoch, source) in enumerate(sources):
        def report(done: int, total: int, message: str, _i: int = i, _label: str = source.label) -> None:
            if progress is not None:
                fraction = done / total if total else 0.0
                progress(_i * 1000 + round(1000 * fraction), len(sources) * 1000, f"{_label}: {message}")

        tiles = tile_embeddings(ws, data_dir, source, report, cancel, **options)
        rows.append(_epoch_row(run_metrics, epoch, source, embedding_scores(tiles, tile_points, held_out=held_out)))
    return _table(rows)


def scored_epochs(ws, data_dir: str | Path, run: str | Path, tile_points: int = SCORE_TILES) -> pd.DataFrame:
    """The rows of separation_across_epochs already computed (embedding cached and scored): reads files only,
    never embeds or scores, so a page can call it on every rerun. Random weights first, then epochs."""
    from core.base.fileio import read_json_object
    from core.embed.compute import cached_folders
    from core.train.runs import read_metrics

    run_dir = Path(run)
    _, run_metrics = read_metrics(run_dir)
    sources = _epoch_sources(run_dir, None, include_random=True)
    folders = cached_folders(ws, data_dir, [source for _, source in sources])
    held_out = held_out_of(run_dir)
    stamp = {"version": _SCORES_VERSION, "tile_points": tile_points,
             "held_out": held_out.key if held_out is not None else None}
    rows = []
    for (epoch, source), folder in zip(sources, folders, strict=True):
        saved = read_json_object(folder / scores_name(held_out)) if folder is not None else None
        if saved and all(saved.get(k) == v for k, v in stamp.items()):
            rows.append(_epoch_row(run_metrics, epoch, source, saved.get("scores") or {}))
    return _table(rows)
