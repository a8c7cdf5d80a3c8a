"""Standardization + PCA(k) fitted on a training fold only, then applied to both sides."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from core.ranking.threads import one_thread

# Below this many rows/columns an exact SVD is cheap; above, a seeded randomized SVD (top-k only).
_EXACT_SVD_LIMIT = 600


def thin_svd(a: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Exact thin SVD on one BLAS thread: LAPACK's threaded SVD of small matrices spins for 10-20x longer
    on a loaded 2-core machine than it computes."""
    with one_thread():
        return np.linalg.svd(a, full_matrices=False)


def top_axes(xs: np.ndarray, k: int, seed: int = 0, n_iter: int = 6, oversample: int = 20) -> np.ndarray:
    """The top-k right singular vectors (k, d) of `xs` by a seeded randomized range finder (Halko et al.):
    float32 products, QR re-orthonormalisation each power iteration, a float64 SVD of the small projection.
    All on one BLAS thread (see thin_svd): ~2 GFLOP at 1,440 x 1,280, tens of ms."""
    n, dim = xs.shape
    width = min(k + oversample, n, dim)
    rng = np.random.default_rng([seed, 7])
    with one_thread():
        a = np.asarray(xs, dtype=np.float32)
        q, _ = np.linalg.qr(a @ rng.standard_normal((dim, width)).astype(np.float32))
        for _ in range(n_iter):
            q, _ = np.linalg.qr(a @ (a.T @ q))
        _, _, vt = np.linalg.svd((q.T @ a).astype(np.float64), full_matrices=False)
    return vt[:k]


@dataclass
class Reducer:
    """Training-fold mean, scale and top-k principal axes."""

    mean: np.ndarray
    scale: np.ndarray
    components: np.ndarray  # (k, d)

    def transform(self, x: np.ndarray) -> np.ndarray:
        """(n, k) float64 scores; the (n, d) standardization runs in float32 (embeddings are float32)."""
        xs = (np.asarray(x, dtype=np.float32) - self.mean.astype(np.float32)) / self.scale.astype(np.float32)
        return (xs @ self.components.T.astype(np.float32)).astype(np.float64)


def fit_reducer(x_train: np.ndarray, k: int, seed: int = 0) -> Reducer:
    """Standardize each feature and keep the top `k` principal axes, from training rows only."""
    x = np.asarray(x_train)
    mean = x.mean(axis=0, dtype=np.float64)
    scale = x.std(axis=0, dtype=np.float64)
    scale[scale < 1e-12] = 1.0  # constant features stay zero instead of dividing by zero
    k = int(max(1, min(k, x.shape[0] - 1, x.shape[1])))
    if min(x.shape) <= _EXACT_SVD_LIMIT:
        _, _, vt = thin_svd((np.asarray(x, dtype=np.float64) - mean) / scale)
        components = vt[:k]
    else:
        components = top_axes((np.asarray(x, dtype=np.float32) - mean.astype(np.float32)) / scale.astype(np.float32),
                              k, seed)
    return Reducer(mean, scale, components)
