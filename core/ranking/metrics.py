"""Per-gene accuracy of predictions (columns are genes): R², Pearson, Spearman, p-values, BH FDR, and the
dependent-correlation tests (SEQUOIA's Williams T2, Steiger's Z).

Slides of one donor are not independent, so the closed-form p-values here are given n = the number of
donors (the effective sample size), not the number of slides: see `core.ranking.table.build_table`."""

from __future__ import annotations

import numpy as np
from scipy import stats

_BLOCK = 4096  # columns per pass: bounds the float64 temporaries of the column statistics


def pearson_columns(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pearson r per column; NaN where either side is constant."""
    out = np.empty(np.shape(a)[1])
    for start in range(0, len(out), _BLOCK):
        block = slice(start, start + _BLOCK)
        ab, bb = a[:, block], b[:, block]
        ab = ab - ab.mean(axis=0, dtype=np.float64)  # float64 from here (float32 inputs are not copied first)
        bb = bb - bb.mean(axis=0, dtype=np.float64)
        num = np.einsum("ij,ij->j", ab, bb)
        den = np.sqrt(np.einsum("ij,ij->j", ab, ab) * np.einsum("ij,ij->j", bb, bb))
        with np.errstate(divide="ignore", invalid="ignore"):
            out[block] = np.where(den > 1e-12 * np.maximum(1.0, num),
                                  np.clip(num / np.where(den > 0, den, 1.0), -1, 1), np.nan)
    return out


def row_ranks(rows: np.ndarray) -> np.ndarray:
    """Average ranks (1-based; ties share their mean rank) within each row of a C-contiguous (g, n) array,
    as float32: one argsort per row (contiguous rows: ~2x scipy's strided columns), one scatter, and a tie
    pass on the rows that have ties only."""
    g, n = rows.shape
    order = np.argsort(rows, axis=1)
    order += (np.arange(g) * n)[:, None]  # flat positions: one scatter (~5x put_along_axis)
    ranks = np.empty(g * n, dtype=np.float32)
    ranks[order] = np.arange(1, n + 1, dtype=np.float32)  # broadcast over rows, no copy
    ordered = np.sort(rows, axis=1)  # the same values as rows[order], by a SIMD sort
    same = ordered[:, 1:] == ordered[:, :-1]  # position i+1 ties with position i
    tied = np.flatnonzero(same.any(axis=1))
    if len(tied):  # average ranks over each run of equal values, on the tied rows only
        pos = np.arange(n)
        starts = np.ones((len(tied), n), dtype=bool)
        starts[:, 1:] = ~same[tied]
        first = np.maximum.accumulate(np.where(starts, pos, 0), axis=1)  # where each run starts
        ends = np.ones((len(tied), n), dtype=bool)
        ends[:, :-1] = ~same[tied]
        last = np.minimum.accumulate(np.where(ends, pos, n)[:, ::-1], axis=1)[:, ::-1]  # and ends
        ranks[order[tied]] = (first + last) / 2.0 + 1.0
    return ranks.reshape(g, n)


def _rows32(values: np.ndarray) -> np.ndarray:
    """Columns as contiguous float32 rows, centred first (in float64) when the input is float64, so that
    values differing by far less than their magnitude (a heavily shrunk prediction) do not tie in float32."""
    values = np.asarray(values)
    if values.dtype != np.float32:
        values = (values - values.mean(axis=0)).astype(np.float32)
    return np.ascontiguousarray(values.T)


def spearman_columns(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Spearman rho per column (Pearson of average ranks; NaN where a side is constant). Ranked as float32
    rows; average ranks always sum to n(n+1)/2, so they are centred exactly by (n+1)/2."""
    ra, rb = row_ranks(_rows32(a)), row_ranks(_rows32(b))
    centre = np.float32((ra.shape[1] + 1) / 2.0)
    ra -= centre
    rb -= centre
    num = np.einsum("ij,ij->i", ra, rb, dtype=np.float64)
    den = np.sqrt(np.einsum("ij,ij->i", ra, ra, dtype=np.float64) * np.einsum("ij,ij->i", rb, rb, dtype=np.float64))
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(den > 0, np.clip(num / np.where(den > 0, den, 1.0), -1, 1), np.nan)


def pearson_p(r: np.ndarray, n: int) -> np.ndarray:
    """Two-sided p-value of Pearson r with n independent samples (t with n - 2 degrees of freedom). The
    ranking passes n = donors: a donor's slides count once."""
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

    Returns (z, two-sided p); z > 0 when a correlates more with y than b does. n: independent samples
    (the ranking passes the number of donors). Used by the strict rule (`recovered_strict`).
    """
    r1 = np.clip(np.asarray(r_ya, float), -0.999999, 0.999999)
    r2 = np.clip(np.asarray(r_yb, float), -0.999999, 0.999999)
    r12 = np.clip(np.asarray(r_ab, float), -0.999999, 0.999999)
    rm2 = ((r1 + r2) / 2.0) ** 2
    # Covariance of the two Fisher z's under H0 (Steiger's pooled-r form, eq. 15 with 10).
    cov = (r12 * (1 - 2 * rm2) - 0.5 * rm2 * (1 - 2 * rm2 - r12**2)) / (1 - rm2) ** 2
    z = (np.arctanh(r1) - np.arctanh(r2)) * np.sqrt(max(n - 3, 0)) / np.sqrt(np.maximum(2 - 2 * cov, 1e-12))
    return z, 2.0 * stats.norm.sf(np.abs(z))


def williams_t2(r_ya: np.ndarray, r_yb: np.ndarray, r_ab: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Williams' T2 for two dependent correlations sharing y, as SEQUOIA computes it (gevaertlab/sequoia-pub,
    evaluation/CorrelationStats.py `dependent_corr(..., twotailed=False, method='steiger')`):

        T2 = (r_ya - r_yb) * sqrt((n - 1)(1 + r_ab) / (2 (n - 1)/(n - 3) |R| + rbar^2 (1 - r_ab)^3)),
        |R| = 1 - r_ya^2 - r_yb^2 - r_ab^2 + 2 r_ya r_yb r_ab   (determinant of the 3x3 correlation matrix),
        rbar = (r_ya + r_yb) / 2,

    one-tailed p = P(t_{n-3} > |T2|). Like theirs the tail is taken at |T2|; the SEQUOIA rule keeps only
    genes with r_ya > r_yb (T2 > 0), where this is the one-tailed test of r_ya > r_yb, and the BH FDR over
    all genes then sees the same p-values as theirs. n: independent samples (the ranking passes donors).
    Where the statistic is undefined (n <= 3, a singular correlation matrix) p is 1, as their NaN fill.
    Returns (T2, p).
    """
    r1, r2, r12 = (np.asarray(v, dtype=np.float64) for v in (r_ya, r_yb, r_ab))
    shape = np.broadcast(r1, r2, r12).shape
    if n <= 3:
        return np.full(shape, np.nan), np.ones(shape)
    det = 1 - r1**2 - r2**2 - r12**2 + 2 * r1 * r2 * r12
    rbar = (r1 + r2) / 2
    den = (2 * (n - 1) / (n - 3)) * det + rbar**2 * (1 - r12) ** 3
    with np.errstate(divide="ignore", invalid="ignore"):
        t2 = (r1 - r2) * np.sqrt((n - 1) * (1 + r12) / den)
    t2 = np.where(den > 0, t2, np.nan)
    p = np.where(np.isnan(t2), 1.0, stats.t.sf(np.abs(np.nan_to_num(t2)), n - 3))
    return np.broadcast_to(t2, shape).copy(), np.broadcast_to(p, shape).copy()
