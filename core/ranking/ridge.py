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

from core.ranking.reduce import thin_svd

# Penalties relative to the mean squared singular value of the training design (a scale-free grid).
RELATIVE_ALPHAS = np.logspace(-4, 2, 13)
CRITERIA = ("loo", "gcv")
_GENE_BLOCK = 2048  # genes per pass: bounds the (penalties x components x genes) work arrays


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
        seen = index >= 0
        mz = np.where(seen[:, None], self.mean_z[np.maximum(index, 0)], self.overall_z)
        my = np.where(seen[:, None], self.mean_y[np.maximum(index, 0)], self.overall_y)
        return my + (z - mz) @ self.coef


def _group_means(values: np.ndarray, inverse: np.ndarray, counts: np.ndarray) -> np.ndarray:
    sums = np.zeros((len(counts), values.shape[1]))
    np.add.at(sums, inverse, values)
    return sums / counts[:, None]


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
    """
    if criterion not in CRITERIA:
        raise ValueError(f"criterion must be one of {CRITERIA}")
    z = np.asarray(z, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
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
    n_alpha, r = d.shape
    m = (u.T[None, :, :] * a2.T[:, None, :]) @ u  # (A, r, r) = U^T diag(a2) U per penalty
    stacked = (a2[:, :, None] * u[:, None, :]).reshape(n, n_alpha * r)
    f = s[None, :] / (s2[None, :] + grid[:, None])  # (A, r) coefficient filter
    mean_y = np.empty((len(labels), n_genes))
    coef = np.empty((vt.shape[1], n_genes))
    chosen = np.empty(n_genes, dtype=np.int64)
    for start in range(0, n_genes, _GENE_BLOCK):
        block = slice(start, min(n_genes, start + _GENE_BLOCK))
        my = _group_means(y[:, block], inverse, counts)
        yc = y[:, block] - my[inverse]
        c = u.T @ yc  # (r, b)
        y_perp = yc - u @ c
        e = (1.0 - d)[:, :, None] * c[None]  # (A, r, b): the shrunk-away part of each fit
        loo = a2.T @ (y_perp**2)  # (A, b)
        if criterion == "loo":  # with a constant weight the cross term vanishes (y_perp is orthogonal to U)
            cross = (stacked.T @ y_perp).reshape(n_alpha, r, -1)
            loo += 2.0 * (e * cross).sum(axis=1)
        loo += (e * (m @ e)).sum(axis=1)
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
        overall_y=y.mean(axis=0),
    )
