"""The cross-validated pipeline: per fold, standardize + PCA + ridge (embedding, embedding + tissue), the
tissue-mean and k-means baselines, random-weights features and a permutation null, all on the same folds."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from core.ranking.baselines import group_mean_predict, kmeans_predict
from core.ranking.folds import Fold, donor_folds
from core.ranking.metrics import pearson_columns, r2_columns, spearman_columns
from core.ranking.reduce import fit_reducer
from core.ranking.ridge import fit_ridge_cv

Progress = Callable[[int, int, str], None]
Cancel = Callable[[], bool]


@dataclass(frozen=True)
class RankParams:
    components: int = 40  # PCA components of the standardized embedding
    folds: int = 5
    repeats: int = 3
    seed: int = 0
    clusters: int = 8  # k-means clusters of the cluster-mean baseline
    criterion: str = "loo"  # ridge penalty per gene: exact leave-one-out ("loo") or "gcv"
    permutation_null: bool = True  # one extra pass with embeddings shuffled across samples (repeat 0)


@dataclass
class CVResult:
    """Per-gene statistics (arrays of length G) and the repeat-averaged out-of-fold predictions."""

    stats: dict[str, np.ndarray]
    pred: dict[str, np.ndarray] = field(default_factory=dict)  # model -> (n, G) float32
    folds: list[Fold] = field(default_factory=list)


def within_group_r2(y: np.ndarray, pred: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """1 - sum of SSE / sum of SST, both taken within each group around the group's observed mean."""
    y = np.asarray(y, dtype=np.float64)
    sse = ((y - pred) ** 2).sum(axis=0)
    sst = np.zeros(y.shape[1])
    for g in np.unique(groups):
        rows = y[groups == g]
        sst += ((rows - rows.mean(axis=0)) ** 2).sum(axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(sst > 0, 1.0 - sse / np.where(sst > 0, sst, 1.0), np.nan)


def _ridge(x: np.ndarray, y: np.ndarray, fold: Fold, params: RankParams, groups: np.ndarray | None = None):
    """Reducer and ridge fitted on the training rows only; predictions for the test rows."""
    reducer = fit_reducer(x[fold.train], params.components, seed=params.seed)
    z_train, z_test = reducer.transform(x[fold.train]), reducer.transform(x[fold.test])
    g_train = None if groups is None else groups[fold.train]
    fit = fit_ridge_cv(z_train, y[fold.train], groups=g_train, criterion=params.criterion)
    return fit.predict(z_test, None if groups is None else groups[fold.test]), z_train, z_test


def cross_validate(
    x: np.ndarray,
    y: np.ndarray,
    subject_ids: np.ndarray,
    tissues: np.ndarray,
    params: RankParams = RankParams(),
    x_random: np.ndarray | None = None,
    progress: Progress | None = None,
    cancel: Cancel | None = None,
) -> CVResult:
    """Run every model on the same donor-grouped folds; see RankParams. `y` is (samples, genes) logTPM."""
    y = np.asarray(y, dtype=np.float64)
    n, n_genes = y.shape
    tissues = np.asarray(tissues).astype(str)
    folds = donor_folds(subject_ids, params.folds, params.repeats, params.seed)
    models = ["emb", "full", "tissue", "kmeans"] + (["random"] if x_random is not None else [])
    per_repeat: dict[str, list[np.ndarray]] = {m: [] for m in [*models, "beyond", "within"]}
    fold_r: dict[str, list[np.ndarray]] = {"emb": [], "rho": [], "kmeans": [], "tissue": [], "random": []}
    mean_pred = {m: np.zeros((n, n_genes)) for m in ("emb", "full", "random") if m in models}
    null_pred = np.empty((n, n_genes)) if params.permutation_null else None
    x_null = x[np.random.default_rng([params.seed, 99]).permutation(n)] if params.permutation_null else None
    total = len(folds) + (params.folds if params.permutation_null else 0)
    done = 0
    for repeat in range(params.repeats):
        oof = {m: np.empty((n, n_genes)) for m in models}
        for fold in (f for f in folds if f.repeat == repeat):
            if cancel is not None and cancel():
                from core.jobs import JobCancelled

                raise JobCancelled()
            test = fold.test
            oof["emb"][test], z_train, z_test = _ridge(x, y, fold, params)
            oof["full"][test], _, _ = _ridge(x, y, fold, params, groups=tissues)
            oof["tissue"][test] = group_mean_predict(y[fold.train], tissues[fold.train], tissues[test])
            oof["kmeans"][test] = kmeans_predict(z_train, y[fold.train], z_test, params.clusters, params.seed)
            if x_random is not None:
                oof["random"][test], _, _ = _ridge(x_random, y, fold, params)
            if len(test) >= 3:  # a correlation over fewer test samples says nothing
                fold_r["emb"].append(pearson_columns(y[test], oof["emb"][test]))
                fold_r["rho"].append(spearman_columns(y[test], oof["emb"][test]))
                fold_r["kmeans"].append(pearson_columns(y[test], oof["kmeans"][test]))
                fold_r["tissue"].append(pearson_columns(y[test], oof["tissue"][test]))
                if x_random is not None:
                    fold_r["random"].append(pearson_columns(y[test], oof["random"][test]))
            done += 1
            if progress is not None:
                progress(done, total, f"repeat {repeat + 1}/{params.repeats}, fold {fold.fold + 1}/{params.folds}")
        for m in models:
            per_repeat[m].append(r2_columns(y, oof[m]))
        per_repeat["beyond"].append(per_repeat["full"][-1] - per_repeat["tissue"][-1])
        per_repeat["within"].append(within_group_r2(y, oof["full"], tissues))
        for m in mean_pred:
            mean_pred[m] += oof[m] / params.repeats
    if null_pred is not None and x_null is not None:
        for fold in (f for f in folds if f.repeat == 0):
            null_pred[fold.test], _, _ = _ridge(x_null, y, fold, params)
            done += 1
            if progress is not None:
                progress(done, total, f"permutation null, fold {fold.fold + 1}/{params.folds}")

    def median(values: list[np.ndarray]) -> np.ndarray:
        if not values:
            return np.full(n_genes, np.nan)
        with np.errstate(all="ignore"):
            stacked = np.vstack(values)
            out = np.full(n_genes, np.nan)
            ok = ~np.all(np.isnan(stacked), axis=0)
            out[ok] = np.nanmedian(stacked[:, ok], axis=0)
            return out

    stats = {
        "r2": median(per_repeat["emb"]),
        "r2_emb_tissue": median(per_repeat["full"]),
        "r2_tissue": median(per_repeat["tissue"]),
        "r2_beyond_tissue": median(per_repeat["beyond"]),
        "r2_within_tissue": median(per_repeat["within"]),
        "r2_kmeans": median(per_repeat["kmeans"]),
        "r": median(fold_r["emb"]),
        "rho": median(fold_r["rho"]),
        "r_kmeans": median(fold_r["kmeans"]),
        "r_tissue": median(fold_r["tissue"]),
    }
    if null_pred is not None:
        stats["r2_null"] = r2_columns(y, null_pred)
    if x_random is not None:
        stats["r2_random"] = median(per_repeat["random"])
        stats["r_random"] = median(fold_r["random"])
    pred = {m: v.astype(np.float32) for m, v in mean_pred.items()}
    return CVResult(stats, pred, folds)
