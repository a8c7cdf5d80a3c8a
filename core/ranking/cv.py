"""The cross-validated pipeline: per fold, standardize + PCA + ridge (embedding, embedding + tissue), the
tissue-mean and k-means baselines, random-weights features and a permutation null, all on the same folds."""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from threadpoolctl import threadpool_limits

from core.base.types import Cancel, Progress
from core.ranking.baselines import group_mean_predict, kmeans_predict
from core.ranking.fold_pca import fit_reducer
from core.ranking.folds import Fold, donor_folds
from core.ranking.metrics import pearson_columns, spearman_columns
from core.ranking.params import RankParams  # its own module: importable without sklearn
from core.ranking.ridge import fit_ridge_cv
from core.ranking.threads import single_threaded


def within_tissue_permutations(subject_ids: np.ndarray, tissues: np.ndarray, count: int, seed: int = 0
                               ) -> list[np.ndarray]:
    """`count` row orders that move whole donors within each tissue: a donor's slides of one tissue go, as a
    block, to another donor's slides of that tissue (blocks of one size are exchanged among themselves).
    Tissue stays where it is, so what the embedding adds beyond tissue is what the permutation breaks."""
    donors, tissues = np.asarray(subject_ids).astype(str), np.asarray(tissues).astype(str)
    blocks: dict[tuple[str, int], list[np.ndarray]] = {}
    for tissue in np.unique(tissues):
        in_tissue = tissues == tissue
        for donor in np.unique(donors[in_tissue]):
            rows = np.flatnonzero(in_tissue & (donors == donor))
            blocks.setdefault((tissue, len(rows)), []).append(rows)
    rng = np.random.default_rng([seed, 7])
    orders = []
    for _ in range(count):
        order = np.arange(len(donors))
        for same in blocks.values():
            for rows, source in zip(same, rng.permutation(len(same)), strict=True):
                order[rows] = same[source]
        orders.append(order)
    return orders


def beyond_tissue_p(observed: np.ndarray, null: np.ndarray) -> np.ndarray:
    """One-sided permutation p of each gene's R² beyond tissue against the null pooled over genes and
    permutations (`null`: permutations x genes): (1 + #null >= observed) / (1 + #null). Pooling gives p-values
    fine enough for an FDR over thousands of genes from a few dozen permutations."""
    pooled = np.sort(null[np.isfinite(null)].ravel())
    above = len(pooled) - np.searchsorted(pooled, np.nan_to_num(observed, nan=np.inf), side="left")
    p = (1.0 + above) / (1.0 + len(pooled))
    return np.where(np.isfinite(observed), p, np.nan)


@dataclass
class CVResult:
    """Per-gene statistics (arrays of length G) and the repeat-averaged out-of-fold predictions."""

    stats: dict[str, np.ndarray]
    pred: dict[str, np.ndarray] = field(default_factory=dict)  # model -> (n, G) float32
    folds: list[Fold] = field(default_factory=list)


def within_group_sst(y: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """Per column: the sum of squares of y around each group's own mean, summed over groups."""
    return _sums_of_squares(y, groups)[1]


def _sums_of_squares(y: np.ndarray, groups: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per column (total SST around the overall mean, SST within groups) from one pass over y:
    total = within + sum over groups of n_g (mean_g - mean)^2."""
    groups = np.asarray(groups)
    within = np.zeros(y.shape[1])
    means, sizes = [], []
    for g in np.unique(groups):
        rows = np.asarray(y[groups == g], dtype=np.float64)
        mean = rows.mean(axis=0)
        rows -= mean
        np.square(rows, out=rows)
        within += rows.sum(axis=0)
        means.append(mean)
        sizes.append(len(rows))
    means_arr, sizes_arr = np.vstack(means), np.asarray(sizes, dtype=np.float64)
    overall = sizes_arr @ means_arr / sizes_arr.sum()
    return within + sizes_arr @ (means_arr - overall) ** 2, within


def _sse(y: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """Per column sum of squared errors, summed in float64 (float32 residuals when both sides are)."""
    residual = np.asarray(y) - pred
    np.square(residual, out=residual)
    return residual.sum(axis=0, dtype=np.float64)


def _r2(sse: np.ndarray, sst: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(sst > 0, 1.0 - sse / np.where(sst > 0, sst, 1.0), np.nan)


@dataclass
class _FoldFeatures:
    """One feature matrix reduced on one fold's training rows (shared by every model that uses it)."""

    z_train: np.ndarray
    z_test: np.ndarray


def _reduce(x: np.ndarray, fold: Fold, params: RankParams) -> _FoldFeatures:
    """Standardization + PCA fitted on the training rows only, applied to both sides."""
    reducer = fit_reducer(x[fold.train], params.components, seed=params.seed)
    return _FoldFeatures(reducer.transform(x[fold.train]), reducer.transform(x[fold.test]))


def _ridge(features: _FoldFeatures, y_train: np.ndarray, fold: Fold, params: RankParams,
           groups: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Ridge (per-gene penalty) fitted on the training rows. For the test rows: float32 predictions and
    their deviation from the training mean, (z - mean z) @ coef, which ranks like the predictions of the
    one-group model but without float32 ties (a heavily shrunk gene's predictions differ by ~1e-9 around
    a mean of ~8: equal in float32, distinct in the deviation)."""
    g_train = None if groups is None else groups[fold.train]
    fit = fit_ridge_cv(features.z_train, y_train, groups=g_train, criterion=params.criterion)
    if groups is not None:
        pred = fit.predict(features.z_test, groups[fold.test])
        return pred.astype(np.float32), (pred - pred.mean(axis=0)).astype(np.float32)
    deviation = ((features.z_test - fit.mean_z[0]) @ fit.coef).astype(np.float32)
    return deviation + fit.mean_y[0].astype(np.float32), deviation


def _check_cancel(cancel: Cancel | None) -> None:
    if cancel is not None and cancel():
        from core.jobs import JobCancelled

        raise JobCancelled()


def _median(values: list[np.ndarray], n_genes: int) -> np.ndarray:
    """Per gene median over the rows that are not NaN (NaN where all are)."""
    if not values:
        return np.full(n_genes, np.nan)
    stacked = np.vstack(values)
    out = np.full(n_genes, np.nan)
    nan = np.isnan(stacked)
    if not nan.any():
        return np.median(stacked, axis=0)
    ok = ~nan.all(axis=0)
    with np.errstate(all="ignore"):
        out[ok] = np.nanmedian(stacked[:, ok], axis=0)
    return out


def _workers() -> int:
    """Folds computed at once: one per core this process may use (at most 4: ~300 MB each at GTEx scale)."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not on Linux
        cores = os.cpu_count() or 1
    return max(1, min(4, cores))


def cross_validate(
    x: np.ndarray,
    y: np.ndarray,
    subject_ids: np.ndarray,
    tissues: np.ndarray,
    params: RankParams = RankParams(),
    x_random: np.ndarray | None = None,
    progress: Progress | None = None,
    cancel: Cancel | None = None,
    workers: int | None = None,
) -> CVResult:
    """Run every model on the same donor-grouped folds; see RankParams. `y` is (samples, genes) logTPM
    (float32; float64 input is cast). Per fold: one reducer per feature matrix (shared by the embedding
    and embedding + tissue models and k-means), the training targets copied once for all fits.
    R² is pooled over each repeat's out-of-fold predictions (sums of squared errors added fold by fold),
    then the median over repeats; r and rho are medians over folds and repeats.

    Folds run `workers` at a time in threads (numpy and BLAS release the GIL), each on one BLAS thread:
    on a shared 2-core machine a multi-threaded BLAS spins several times the CPU it computes with.
    Results are gathered in fold order, so they do not depend on `workers`."""
    y = np.ascontiguousarray(y, dtype=np.float32)
    n, n_genes = y.shape
    tissues = np.asarray(tissues).astype(str)
    folds = donor_folds(subject_ids, params.folds, params.repeats, params.seed)
    models = ["emb", "full", "tissue", "kmeans"] + (["random"] if x_random is not None else [])
    fold_r: dict[str, list[np.ndarray]] = {"emb": [], "rho": [], "kmeans": [], "tissue": [], "random": []}
    x_null = x[np.random.default_rng([params.seed, 99]).permutation(n)] if params.permutation_null else None
    beyond_orders = (within_tissue_permutations(subject_ids, tissues, params.beyond_permutations, params.seed)
                     if params.permutation_null else [])
    # A task is (fold, None) for the models, (fold, -1) for the shuffled null, (fold, b) for within-tissue null b.
    tasks: list[tuple[Fold, int | None]] = [(fold, None) for fold in folds]
    if x_null is not None:
        tasks += [(fold, -1) for fold in folds if fold.repeat == 0]
    tasks += [(fold, b) for b in range(len(beyond_orders)) for fold in folds if fold.repeat == 0]

    def run(task: tuple[Fold, int | None]) -> dict[str, Any]:
        """One fold's fits and its per-gene statistics (computed here, in the worker thread)."""
        fold, null = task
        _check_cancel(cancel)
        with single_threaded():
            return _fold(fold, null)

    def _fold(fold: Fold, null: int | None) -> dict[str, Any]:
        y_train, y_test = y[fold.train], y[fold.test]
        if null == -1:
            return {"sse": {"null": _sse(y_test, _ridge(_reduce(x_null, fold, params), y_train, fold, params)[0])}}
        if null is not None:  # embedding + tissue on embeddings moved between donors within tissue
            features = _reduce(x[beyond_orders[null]], fold, params)
            return {"sse": {"beyond_null": _sse(y_test, _ridge(features, y_train, fold, params, groups=tissues)[0])}}
        features = _reduce(x, fold, params)
        test = fold.test
        emb, emb_deviation = _ridge(features, y_train, fold, params)
        pred = {
            "emb": emb,
            "full": _ridge(features, y_train, fold, params, groups=tissues)[0],
            "tissue": group_mean_predict(y_train, tissues[fold.train], tissues[test]),
            "kmeans": kmeans_predict(features.z_train, y_train, features.z_test, params.clusters, params.seed),
        }
        if x_random is not None:
            pred["random"] = _ridge(_reduce(x_random, fold, params), y_train, fold, params)[0]
        out: dict[str, Any] = {"sse": {m: _sse(y_test, p) for m, p in pred.items()}, "r": {}}
        if len(test) >= 3:  # a correlation over fewer test samples says nothing
            out["r"] = {m: pearson_columns(y_test, pred[m]) for m in fold_r if m in pred}
            out["r"]["rho"] = spearman_columns(y_test, emb_deviation)
        out["pred"] = {m: pred[m] for m in ("emb", "full", "random") if m in pred}
        return out

    sse = {(m, r): np.zeros(n_genes) for m in models for r in range(params.repeats)}
    null_sse = np.zeros(n_genes)
    beyond_null_sse = np.zeros((len(beyond_orders), n_genes))
    mean_pred = {m: np.zeros((n, n_genes), np.float32) for m in ("emb", "full", "random") if m in models}
    workers = _workers() if workers is None else max(1, workers)
    with threadpool_limits(1), ThreadPoolExecutor(workers) as pool:
        try:
            if workers == 1:  # in this thread (profilers see it)
                results = map(run, tasks)
                sst, sst_within = _sums_of_squares(y, tissues)
            else:
                totals = pool.submit(_sums_of_squares, y, tissues)
                results = pool.map(run, tasks)
            for done, ((fold, null), out) in enumerate(zip(tasks, results, strict=True), start=1):
                if null == -1:
                    null_sse += out["sse"]["null"]
                elif null is not None:
                    beyond_null_sse[null] += out["sse"]["beyond_null"]
                else:
                    for m in models:
                        sse[m, fold.repeat] += out["sse"][m]
                    for m, values in out["pred"].items():
                        mean_pred[m][fold.test] += values / np.float32(params.repeats)
                    for m, values in out["r"].items():
                        fold_r[m].append(values)
                del out
                if progress is not None:
                    what = (f"repeat {fold.repeat + 1}/{params.repeats}, fold {fold.fold + 1}/{params.folds}"
                            if null is None else f"permutation null, fold {fold.fold + 1}/{params.folds}")
                    progress(done, len(tasks), what)
        except BaseException:  # cancelled or failed: drop the folds not started yet, then re-raise
            pool.shutdown(wait=True, cancel_futures=True)
            raise
        if workers > 1:
            sst, sst_within = totals.result()

    per_repeat: dict[str, list[np.ndarray]] = {m: [_r2(sse[m, r], sst) for r in range(params.repeats)]
                                               for m in models}
    per_repeat["beyond"] = [f - t for f, t in zip(per_repeat["full"], per_repeat["tissue"], strict=True)]
    per_repeat["within"] = [_r2(sse["full", r], sst_within) for r in range(params.repeats)]
    stats = {
        "r2": _median(per_repeat["emb"], n_genes),
        "r2_emb_tissue": _median(per_repeat["full"], n_genes),
        "r2_tissue": _median(per_repeat["tissue"], n_genes),
        "r2_beyond_tissue": _median(per_repeat["beyond"], n_genes),
        "r2_within_tissue": _median(per_repeat["within"], n_genes),
        "r2_kmeans": _median(per_repeat["kmeans"], n_genes),
        "r": _median(fold_r["emb"], n_genes),
        "rho": _median(fold_r["rho"], n_genes),
        "r_kmeans": _median(fold_r["kmeans"], n_genes),
        "r_tissue": _median(fold_r["tissue"], n_genes),
    }
    if x_null is not None:
        stats["r2_null"] = _r2(null_sse, sst)
    if beyond_orders:  # like for like: repeat 0's beyond-tissue R² against nulls on repeat 0's folds
        null_beyond = np.stack([_r2(b, sst) - per_repeat["tissue"][0] for b in beyond_null_sse])
        stats["p_beyond_tissue"] = beyond_tissue_p(per_repeat["beyond"][0], null_beyond)
    if x_random is not None:
        stats["r2_random"] = _median(per_repeat["random"], n_genes)
        stats["r_random"] = _median(fold_r["random"], n_genes)
    return CVResult(stats, mean_pred, folds)
