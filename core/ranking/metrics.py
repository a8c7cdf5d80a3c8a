"""Per-gene accuracy of predictions (columns are genes): R², Pearson, Spearman, p-values, BH FDR, Steiger."""

from __future__ import annotations

import numpy as np
from scipy import stats


def r2_columns(y: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """1 - SSE / SST per column (SST around the column's observed mean); NaN for a constant column."""
    y = np.asarray(y, dtype=np.float64)
    sse = ((y - pred) ** 2).sum(axis=0)
    sst = ((y - y.mean(axis=0)) ** 2).sum(axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(sst > 0, 1.0 - sse / np.where(sst > 0, sst, 1.0), np.nan)


def pearson_columns(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pearson r per column; NaN where either side is constant."""
    a = np.asarray(a, dtype=np.float64) - np.mean(a, axis=0)
    b = np.asarray(b, dtype=np.float64) - np.mean(b, axis=0)
    num = (a * b).sum(axis=0)
    den = np.sqrt((a * a).sum(axis=0) * (b * b).sum(axis=0))
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(den > 1e-12 * np.maximum(1.0, num), np.clip(num / np.where(den > 0, den, 1.0), -1, 1), np.nan)


def spearman_columns(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Spearman rho per column (Pearson of average ranks)."""
    return pearson_columns(stats.rankdata(a, axis=0), stats.rankdata(b, axis=0))


def pearson_p(r: np.ndarray, n: int) -> np.ndarray:
    """Two-sided p-value of Pearson r with n samples (t with n - 2 degrees of freedom)."""
    r = np.clip(np.asarray(r, dtype=np.float64), -1 + 1e-15, 1 - 1e-15)
    if n < 3:
        return np.full(r.shape, np.nan)
    t = r * np.sqrt((n - 2) / (1.0 - r**2))
    return 2.0 * stats.t.sf(np.abs(t), n - 2)


def bh_fdr(p: np.ndarray) -> np.ndarray:
    """Benjamini-Hochberg adjusted p-values (q-values); NaN stays NaN and is not counted."""
    p = np.asarray(p, dtype=np.float64)
    q = np.full(p.shape, np.nan)
    ok = np.flatnonzero(~np.isnan(p))
    if len(ok) == 0:
        return q
    order = ok[np.argsort(p[ok], kind="stable")]
    ranked = p[order] * len(ok) / np.arange(1, len(ok) + 1)
    q[order] = np.minimum(1.0, np.minimum.accumulate(ranked[::-1])[::-1])
    return q


def steiger_test(r_ya: np.ndarray, r_yb: np.ndarray, r_ab: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Steiger's (1980) Z for two dependent correlations sharing y: is r(y, a) != r(y, b)?

    Returns (z, two-sided p); z > 0 when a correlates more with y than b does.
    """
    r1 = np.clip(np.asarray(r_ya, float), -0.999999, 0.999999)
    r2 = np.clip(np.asarray(r_yb, float), -0.999999, 0.999999)
    r12 = np.clip(np.asarray(r_ab, float), -0.999999, 0.999999)
    rm2 = ((r1 + r2) / 2.0) ** 2
    # Covariance of the two Fisher z's under H0 (Steiger's pooled-r form, eq. 15 with 10).
    cov = (r12 * (1 - 2 * rm2) - 0.5 * rm2 * (1 - 2 * rm2 - r12**2)) / (1 - rm2) ** 2
    z = (np.arctanh(r1) - np.arctanh(r2)) * np.sqrt(max(n - 3, 0)) / np.sqrt(np.maximum(2 - 2 * cov, 1e-12))
    return z, 2.0 * stats.norm.sf(np.abs(z))
