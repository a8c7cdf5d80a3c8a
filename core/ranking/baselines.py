"""Baselines fitted on the same training folds: tissue means, k-means cluster means (GTEx's 2nd approach)."""

from __future__ import annotations

import warnings

import numpy as np
from sklearn.cluster import KMeans
from threadpoolctl import threadpool_limits


def group_mean_predict(y_train: np.ndarray, groups_train: np.ndarray, groups_test: np.ndarray) -> np.ndarray:
    """Each test sample gets its group's training mean (the overall training mean for an unseen group)."""
    y_train = np.asarray(y_train, dtype=np.float64)
    labels, inverse, counts = np.unique(np.asarray(groups_train), return_inverse=True, return_counts=True)
    sums = np.zeros((len(labels), y_train.shape[1]))
    np.add.at(sums, inverse, y_train)
    means = sums / counts[:, None]
    lookup = {label: i for i, label in enumerate(labels.tolist())}
    out = np.empty((len(groups_test), y_train.shape[1]))
    overall = y_train.mean(axis=0)
    for row, g in enumerate(np.asarray(groups_test).tolist()):
        i = lookup.get(g)
        out[row] = overall if i is None else means[i]
    return out


def kmeans_predict(
    z_train: np.ndarray, y_train: np.ndarray, z_test: np.ndarray, clusters: int, seed: int = 0
) -> np.ndarray:
    """Cluster training slides on their embedding; a test slide gets its nearest cluster's mean transcriptome."""
    k = int(max(1, min(clusters, len(z_train))))
    with warnings.catch_warnings(), threadpool_limits(1):
        warnings.simplefilter("ignore")  # fewer distinct points than clusters: sklearn warns, result is fine
        model = KMeans(n_clusters=k, n_init=4, random_state=seed).fit(z_train)
    return group_mean_predict(y_train, model.labels_, model.predict(z_test))
