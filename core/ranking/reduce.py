"""Standardization + PCA(k) fitted on a training fold only, then applied to both sides."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.utils.extmath import randomized_svd
from threadpoolctl import threadpool_limits

# Below this many rows/columns an exact SVD is cheap; above, a seeded randomized SVD (top-k only).
_EXACT_SVD_LIMIT = 600


def thin_svd(a: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Exact thin SVD on one BLAS thread: LAPACK's threaded SVD of small matrices spins for 10-20x longer
    on a loaded 2-core machine than it computes."""
    with threadpool_limits(1, user_api="blas"):
        return np.linalg.svd(a, full_matrices=False)


@dataclass
class Reducer:
    """Training-fold mean, scale and top-k principal axes."""

    mean: np.ndarray
    scale: np.ndarray
    components: np.ndarray  # (k, d)

    def transform(self, x: np.ndarray) -> np.ndarray:
        return ((np.asarray(x, dtype=np.float64) - self.mean) / self.scale) @ self.components.T


def fit_reducer(x_train: np.ndarray, k: int, seed: int = 0) -> Reducer:
    """Standardize each feature and keep the top `k` principal axes, from training rows only."""
    x = np.asarray(x_train, dtype=np.float64)
    mean = x.mean(axis=0)
    scale = x.std(axis=0)
    scale[scale < 1e-12] = 1.0  # constant features stay zero instead of dividing by zero
    xs = (x - mean) / scale
    k = int(max(1, min(k, xs.shape[0] - 1, xs.shape[1])))
    if min(xs.shape) <= _EXACT_SVD_LIMIT:
        _, _, vt = thin_svd(xs)
        components = vt[:k]
    else:
        _, _, vt = randomized_svd(xs, k, n_oversamples=20, n_iter=6, random_state=seed)
        components = vt
    return Reducer(mean, scale, components)
