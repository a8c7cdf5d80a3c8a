"""A nonlinear model for the top genes, beside the ridge: RBF kernel ridge on the ridge's own folds and PCA
features (standardize + PCA fitted on each training fold only), scored the same way (out-of-fold R² pooled
per repeat, median over repeats).

Kernel ridge keeps the ridge's closed form: per fold, one eigendecomposition of the training kernel per
bandwidth gives every gene's exact leave-one-out error at every penalty, so each gene's bandwidth and
penalty are chosen on the training rows only, as the ridge chooses its penalty.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from threadpoolctl import threadpool_limits

from core.base.fileio import atomic_path
from core.base.types import Cancel, Progress
from core.ranking.cv import RankParams, _check_cancel, _median, _r2, _sse, _sums_of_squares
from core.ranking.fold_pca import fit_reducer
from core.ranking.folds import donor_folds

# Bandwidths, as multiples of 1 / (median squared distance between training rows), and penalties, as
# multiples of the kernel's mean eigenvalue: a grid wide enough to reach both a near-linear smooth fit and a
# local one.
GAMMAS = (0.1, 0.3, 1.0, 3.0)
ALPHAS = tuple(float(a) for a in np.logspace(-3, 1, 9))
# Bumped whenever the kernel ridge's numbers change for the same ranking (its saved tables are then ignored).
NONLINEAR_VERSION = 1


@dataclass
class KernelRidgeFit:
    """Per gene: the chosen bandwidth and penalty (grid values) and the test-row predictions."""

    pred: np.ndarray  # (n_test, genes)
    gamma: np.ndarray  # (genes,)
    alpha: np.ndarray  # (genes,)


def _squared_distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    d2 = (a * a).sum(axis=1)[:, None] + (b * b).sum(axis=1)[None, :] - 2.0 * a @ b.T
    return np.maximum(d2, 0.0)


def fit_kernel_ridge(z_train: np.ndarray, y_train: np.ndarray, z_test: np.ndarray,
                     gammas: tuple[float, ...] = GAMMAS, alphas: tuple[float, ...] = ALPHAS) -> KernelRidgeFit:
    """RBF kernel ridge for every column of `y_train` at once, each column's (gamma, alpha) by exact
    leave-one-out error on the training rows; predictions for `z_test`. The training mean of y is the
    intercept (targets are centred before the fit)."""
    z_train, z_test = np.asarray(z_train, np.float64), np.asarray(z_test, np.float64)
    y = np.asarray(y_train, np.float64)
    mean_y = y.mean(axis=0)
    yc = y - mean_y
    d2 = _squared_distances(z_train, z_train)
    d2_test = _squared_distances(z_test, z_train)
    off_diagonal = d2[~np.eye(len(d2), dtype=bool)]
    scale = float(np.median(off_diagonal)) if off_diagonal.size and np.median(off_diagonal) > 0 else 1.0
    n_genes = y.shape[1]
    best_error = np.full(n_genes, np.inf)
    pred = np.zeros((len(z_test), n_genes))
    chosen_gamma, chosen_alpha = np.zeros(n_genes), np.zeros(n_genes)
    for gamma in gammas:
        kernel = np.exp(-gamma * d2 / scale)
        eigenvalues, vectors = np.linalg.eigh(kernel)
        eigenvalues = np.maximum(eigenvalues, 0.0)
        projected = vectors.T @ yc  # (n, genes)
        squared_vectors = vectors * vectors
        kernel_test = np.exp(-gamma * d2_test / scale)
        for alpha in alphas:
            penalty = alpha * max(float(eigenvalues.mean()), 1e-12)
            shrink = penalty / (eigenvalues + penalty)  # I - H in the eigenbasis
            residual = vectors @ (shrink[:, None] * projected)
            leverage_left = squared_vectors @ shrink  # diagonal of I - H
            error = ((residual / leverage_left[:, None]) ** 2).sum(axis=0)
            better = error < best_error
            if not better.any():
                continue
            dual = vectors @ (projected[:, better] / (eigenvalues + penalty)[:, None])
            pred[:, better] = kernel_test @ dual
            best_error[better] = error[better]
            chosen_gamma[better], chosen_alpha[better] = gamma, alpha
    return KernelRidgeFit(pred + mean_y, chosen_gamma, chosen_alpha)


def kernel_ridge_r2(x: np.ndarray, y: np.ndarray, subject_ids: np.ndarray,
                    params: RankParams = RankParams(), progress: Progress | None = None,
                    cancel: Cancel | None = None) -> dict[str, np.ndarray]:
    """Out-of-fold R² of kernel ridge per column of `y` on the ranking's donor-grouped folds (same seed,
    folds, repeats and PCA as core.ranking.cv.cross_validate): `r2_kernel` (median over repeats), and the
    median chosen `gamma` and `alpha` over folds. `progress(done, total, message)` after each fold;
    `cancel()` is asked before each (JobCancelled when it says so)."""
    y = np.asarray(y, np.float64)
    n, n_genes = y.shape
    folds = donor_folds(np.asarray(subject_ids), params.folds, params.repeats, params.seed)
    sse = np.zeros((params.repeats, n_genes))
    gammas, alphas = [], []
    with threadpool_limits(1):
        for done, fold in enumerate(folds):
            _check_cancel(cancel)
            reducer = fit_reducer(x[fold.train], params.components, seed=params.seed)
            fit = fit_kernel_ridge(reducer.transform(x[fold.train]), y[fold.train], reducer.transform(x[fold.test]))
            sse[fold.repeat] += _sse(y[fold.test], fit.pred)
            gammas.append(fit.gamma)
            alphas.append(fit.alpha)
            if progress is not None:
                progress(done + 1, len(folds), f"fold {done + 1} of {len(folds)}")
    sst, _ = _sums_of_squares(y, np.zeros(n, dtype=int))
    return {
        "r2_kernel": _median([_r2(sse[r], sst) for r in range(params.repeats)], n_genes),
        "gamma": _median(gammas, n_genes),
        "alpha": _median(alphas, n_genes),
    }


def top_genes_nonlinear(table: pd.DataFrame, x: np.ndarray, y: np.ndarray, gene_ids: np.ndarray,
                        subject_ids: np.ndarray, params: RankParams = RankParams(), top: int = 50,
                        progress: Progress | None = None, cancel: Cancel | None = None) -> pd.DataFrame:
    """Kernel ridge beside the ridge for the ranking's `top` genes by R² (the table's order): symbol,
    gene_id, r2 (ridge), r2_kernel, their difference, and the chosen bandwidth and penalty. `y` holds the
    ranking's genes in `gene_ids` order. The genes were picked by the ridge's own R², which favours the
    ridge a little in this comparison."""
    best = table.sort_values("r2", ascending=False).head(max(0, int(top)))
    column = {g: i for i, g in enumerate(np.asarray(gene_ids).astype(str))}
    rows = [column[g] for g in best["gene_id"].astype(str)]
    stats = kernel_ridge_r2(x, np.asarray(y)[:, rows], subject_ids, params, progress, cancel)
    out = best[["symbol", "gene_id", "r2"]].reset_index(drop=True)
    out["r2_kernel"] = stats["r2_kernel"]
    out["kernel_minus_ridge"] = out["r2_kernel"] - out["r2"]
    out["gamma"] = stats["gamma"]
    out["alpha"] = stats["alpha"]
    return out


def nonlinear_path(ranking_dir: str | Path, top: int) -> Path:
    """Where the kernel ridge table of a ranking's `top` genes is kept: inside the ranking's own folder, whose
    name is the hash of the ranking's inputs (embeddings, expression, samples) and parameters, so the table is
    keyed by those, by `top` and by NONLINEAR_VERSION."""
    return Path(ranking_dir) / f"kernel_ridge_top{int(top)}_v{NONLINEAR_VERSION}.csv"


def load_nonlinear(ranking_dir: str | Path, top: int) -> pd.DataFrame | None:
    """The saved kernel ridge table of a ranking's `top` genes, or None when it was not computed."""
    try:
        return pd.read_csv(nonlinear_path(ranking_dir, top), dtype={"gene_id": str, "symbol": str})
    except (OSError, ValueError):
        return None


def nonlinear_summary(frame: pd.DataFrame) -> dict:
    """How the kernel ridge fares against the ridge on its genes (the CLI's JSON and the page's figures)."""
    return {
        "model": "RBF kernel ridge on the ridge's folds and PCA components, bandwidth and penalty per gene by "
                 "leave-one-out on the training rows",
        "genes": len(frame),
        "kernel_better": int((frame["kernel_minus_ridge"] > 0).sum()),
        "median_r2_ridge": None if frame.empty else round(float(frame["r2"].median()), 4),
        "median_r2_kernel": None if frame.empty else round(float(frame["r2_kernel"].median()), 4),
    }


def nonlinear_for_ranking(ws, data_dir, source, ranking, params: RankParams, top: int = 50,
                          progress: Progress | None = None, cancel: Cancel | None = None) -> tuple[pd.DataFrame, bool]:
    """`top_genes_nonlinear` for a finished ranking of `source` (its cached slide embeddings, aligned to the
    ranking's samples; observed logTPM from the ranking), read from the ranking's folder when it was computed
    before, else computed and saved there. Returns the table and whether it came from the cache."""
    from core.embed.compute import slide_embeddings

    saved = load_nonlinear(ranking.path, top)
    if saved is not None:
        return saved, True
    slides = slide_embeddings(ws, data_dir, source)
    position = {s: i for i, s in enumerate(np.asarray(slides.sample_ids).astype(str))}
    samples = ranking.samples
    x = np.asarray(slides.values, np.float32)[[position[s] for s in samples["sample_id"].astype(str)]]
    frame = top_genes_nonlinear(ranking.table, x, np.asarray(ranking.arrays["observed"]), ranking.gene_ids,
                                samples["subject_id"].astype(str).to_numpy(), params, top, progress, cancel)
    with atomic_path(nonlinear_path(ranking.path, top)) as tmp:
        frame.to_csv(tmp, index=False)
    return frame, False


def nonlinear_beside_ridge(ws, data_dir, source, ranking, params: RankParams, top: int = 50,
                           progress: Progress | None = None, cancel: Cancel | None = None) -> dict:
    """`nonlinear_for_ranking` summarised for the CLI's JSON."""
    frame, cached = nonlinear_for_ranking(ws, data_dir, source, ranking, params, top, progress, cancel)
    return {
        **nonlinear_summary(frame),
        "cached": cached,
        "top": [{k: (round(float(v), 4) if isinstance(v, float) else v) for k, v in row.items()}
                for row in frame[["symbol", "gene_id", "r2", "r2_kernel"]].to_dict("records")],
    }
