"""Ridge regression for every gene at once: one SVD per fit, a penalty per gene by leave-one-out CV.

For design Z (n x k, centered) = U S V^T and targets Y (n x G), the ridge fit at penalty a is
U diag(d) U^T Y with d = s^2 / (s^2 + a), so every gene and every penalty comes from the same SVD.
The exact leave-one-out residual of sample i is r_i / (1 - h_i) with h the hat diagonal (what
scikit-learn's RidgeCV minimises); its per-gene sum of squares expands into three matrix products,
so the whole penalty grid costs one stacked GEMM instead of a loop over penalties or genes.

Optional unpenalized group intercepts (one per tissue) give the "embedding + tissue" model:
Y and Z are centered within groups (Frisch-Waugh-Lovell) and h_i gains 1/n_group instead of 1/n.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from core.ranking.fold_pca import thin_svd

# Penalties relative to the mean squared singular value of the training design (a scale-free grid).
RELATIVE_ALPHAS = np.logspace(-4, 2, 13)
CRITERIA = ("loo", "gcv")
_GENE_BLOCK = 2048  # genes per pass: bounds the (penalties x components x genes) work arrays
_EPS_RANK = 6  # rank of the LOO weights' basis for the cross term (exact via the bound; see fit_ridge_cv)


@dataclass
class RidgeFit:
    """A fitted multi-target ridge: coefficients and chosen penalty per gene, intercept per group."""

    coef: np.ndarray  # (k, G)
    alpha: np.ndarray  # (G,) chosen penalty per gene
    alphas: np.ndarray  # the absolute grid searched
    group_labels: np.ndarray  # (n_groups,)
    mean_z: np.ndarray  # (n_groups, k)
    mean_y: np.ndarray  # (n_groups, G)
    overall_z: np.ndarray  # (k,) fallback for a group unseen in training
    overall_y: np.ndarray  # (G,)

    def predict(self, z: np.ndarray, groups: np.ndarray | None = None) -> np.ndarray:
        z = np.asarray(z, dtype=np.float64)
        if groups is None:
            groups = np.full(len(z), self.group_labels[0])
        lookup = {label: i for i, label in enumerate(self.group_labels.tolist())}
        index = np.array([lookup.get(g, -1) for g in np.asarray(groups).tolist()], dtype=np.int64)
        if np.all(index >= 0):
            out = (z - self.mean_z[index]) @ self.coef
            out += self.mean_y[index]
            return out
        # A group unseen in training: the overall means (appended as one more row).
        mean_z = np.vstack([self.mean_z, self.overall_z])
        mean_y = np.vstack([self.mean_y, self.overall_y])
        index[index < 0] = len(self.mean_z)
        return mean_y[index] + (z - mean_z[index]) @ self.coef


def _group_means(values: np.ndarray, inverse: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Per-group column means as one (groups x n) @ (n x columns) product (np.add.at is ~50x slower)."""
    onehot = np.zeros((len(counts), len(inverse)))
    onehot[inverse, np.arange(len(inverse))] = 1.0
    return (onehot @ np.asarray(values, dtype=np.float64)) / counts[:, None]


def fit_ridge_cv(
    z: np.ndarray,
    y: np.ndarray,
    groups: np.ndarray | None = None,
    relative_alphas: np.ndarray = RELATIVE_ALPHAS,
    criterion: str = "loo",
    alphas: np.ndarray | None = None,
) -> RidgeFit:
    """Fit ridge for all columns of `y` on `z`, each column with its own penalty from the grid.

    `criterion`: "loo" (exact leave-one-out, as sklearn's RidgeCV) or "gcv" (generalized CV: the
    mean hat value for every sample; cheaper). `alphas` overrides the relative grid with absolute values.
    `y` may be float32 (the pipeline's logTPM) or float64; coefficients are float64 either way.

    Precision: with per-sample LOO weights w = 1 / (1 - h)^2 = 1 + eps, the criterion splits into
    sum(y_perp^2) + |e|^2 (exact, float64) and the eps-weighted corrections (eps ~ h, a few percent).
    Only the corrections run in float32 (their large product, (eps * U)^T y_perp over the whole penalty
    grid, is most of the work): rounding ~1e-7 of a term that is itself a few percent of the criterion,
    so the chosen penalties are those of float64 arithmetic (checked against scikit-learn in tests and in
    benchmarks/bench_ranking.py); coefficients and predictions are float64.
    """
    if criterion not in CRITERIA:
        raise ValueError(f"criterion must be one of {CRITERIA}")
    z = np.asarray(z, dtype=np.float64)
    y = np.asarray(y)
    if y.dtype not in (np.float32, np.float64):
        y = y.astype(np.float64)
    n, n_genes = y.shape
    labels, inverse, counts = np.unique(
        np.zeros(n, dtype=np.int64) if groups is None else np.asarray(groups), return_inverse=True, return_counts=True
    )
    mean_z = _group_means(z, inverse, counts)
    zc = z - mean_z[inverse]
    u, s, vt = thin_svd(zc)
    keep = s > max(s.max(initial=0.0), 1e-300) * 1e-10
    u, s, vt = u[:, keep], s[keep], vt[keep]
    s2 = s**2
    grid = np.asarray(alphas if alphas is not None else relative_alphas * (s2.mean() if len(s2) else 1.0), float)
    d = s2[None, :] / (s2[None, :] + grid[:, None])  # (A, r) shrinkage per penalty and component
    h = (1.0 / counts[inverse])[:, None] + (u**2) @ d.T  # (n, A) hat diagonal
    if criterion == "gcv":
        h = np.broadcast_to(h.mean(axis=0, keepdims=True), h.shape)
    free = 1.0 - h
    # A sample alone in its group has h = 1 (its own intercept fits it): no LOO residual, so no weight.
    a2 = np.where(free > 1e-9, 1.0 / np.maximum(free, 1e-9) ** 2, 0.0)  # (n, A)
    eps = a2 - 1.0  # LOO weight minus the plain residual's weight
    n_alpha, r = d.shape
    shrunk = 1.0 - d  # e_a = diag(1 - d_a) c: the shrunk-away part of the fit at penalty a
    m_eps = (u.T[None, :, :] * eps.T[:, None, :]) @ u  # (A, r, r) = U^T diag(eps_a) U
    # D_a M_a D_a stacked (an eps term, so float32 like the others)
    quad = (shrunk[:, :, None] * m_eps * shrunk[:, None, :]).reshape(n_alpha * r, r).astype(np.float32)
    # (n, A*r) float32: eps_a * U * (1 - d_a) for every penalty, one GEMM against the residuals (LOO only:
    # constant weights, as in GCV, meet residuals orthogonal to U, so that term is zero).
    stacked = (eps[:, :, None] * u[:, None, :] * shrunk[None, :, :]).reshape(n, n_alpha * r).astype(np.float32)
    # The same term through a rank-q basis of eps (its columns vary smoothly with the penalty): eps ~ B C.
    # q*r instead of A*r columns; the truncation's effect on each gene's criterion is bounded (see below)
    # and a gene whose choice the bound cannot settle is recomputed with `stacked`: the result is exact.
    basis, sigma, mix = np.linalg.svd(eps, full_matrices=False)
    q = min(_EPS_RANK, n_alpha)
    low = (basis[:, :q] * sigma[:q]).astype(np.float64)  # (n, q)
    truncation = np.abs(eps - low @ mix[:q]).max(axis=0)  # (A,) max over samples of the residual weight
    stacked_low = (low[:, :, None] * u[:, None, :]).reshape(n, q * r).astype(np.float32)
    mix_low = (mix[:q].T[:, :, None] * shrunk[:, None, :]).reshape(n_alpha, q * r).astype(np.float32)  # C_qa (1-d_ar)
    eps32, u32, shrunk2 = eps.astype(np.float32), u.astype(np.float32), shrunk**2
    f = s[None, :] / (s2[None, :] + grid[:, None])  # (A, r) coefficient filter
    onehot = np.zeros((len(labels), n))
    onehot[inverse, np.arange(n)] = 1.0
    mean_y = np.empty((len(labels), n_genes))
    coef = np.empty((vt.shape[1], n_genes))
    chosen = np.empty(n_genes, dtype=np.int64)
    for start in range(0, n_genes, _GENE_BLOCK):
        block = slice(start, min(n_genes, start + _GENE_BLOCK))
        yc = np.array(y[:, block], dtype=np.float64)  # a copy: centred in place below
        my = (onehot @ yc) / counts[:, None]
        yc -= my[inverse]
        c = u.T @ yc  # (r, b)
        # LOO sum of squares = sum(y_perp^2) + |e|^2 (exact, float64; y_perp is orthogonal to U) + eps terms.
        sum_perp = np.einsum("ij,ij->j", yc, yc) - np.einsum("ij,ij->j", c, c)
        loo = sum_perp[None, :] + shrunk2 @ (c * c)
        c32 = c.astype(np.float32)
        y_perp = yc.astype(np.float32)
        del yc
        y_perp -= u32 @ c32
        loo += eps32.T @ np.square(y_perp)  # sum_i eps_ia y_perp_i^2
        loo += np.einsum("arb,rb->ab", (quad @ c32).reshape(n_alpha, r, -1), c32)  # e_a^T U^T diag(eps_a) U e_a
        if criterion == "loo":  # cross term: 2 sum_r e_ar (eps_a U_r)^T y_perp, first through the rank-q basis
            low_cross = (stacked_low.T @ y_perp).reshape(q, r, -1) * c32[None]
            loo += 2.0 * (mix_low @ low_cross.reshape(q * r, -1))
            # |error| <= 2 max_i|eps_ia - (BC)_ia| |y_perp| |U e_a| (Cauchy-Schwarz; U orthonormal), padded.
            ee = shrunk2 @ (c * c)
            bound = 2.0 * truncation[:, None] * np.sqrt(np.maximum(sum_perp, 0.0))[None, :] * np.sqrt(ee)
            bound = bound * 1.01 + 1e-12 * np.abs(loo)
            pick = np.argmin(loo, axis=0)
            cols = np.arange(loo.shape[1])
            rivals = loo - bound
            rivals[pick, cols] = np.inf
            unsettled = np.flatnonzero(rivals.min(axis=0) <= loo[pick, cols] + bound[pick, cols])
            if len(unsettled):  # exact cross term for these genes
                exact = (stacked.T @ y_perp[:, unsettled]).reshape(n_alpha, r, -1)
                approx = 2.0 * (mix_low @ low_cross[:, :, unsettled].reshape(q * r, -1))
                loo[:, unsettled] += 2.0 * np.einsum("arb,rb->ab", exact, c32[:, unsettled]) - approx
        best = np.argmin(loo, axis=0)
        mean_y[:, block] = my
        chosen[block] = best
        coef[:, block] = vt.T @ (f[best].T * c)
    return RidgeFit(
        coef=coef,
        alpha=grid[chosen],
        alphas=grid,
        group_labels=labels,
        mean_z=mean_z,
        mean_y=mean_y,
        overall_z=z.mean(axis=0),
        overall_y=y.mean(axis=0, dtype=np.float64),
    )
