"""Baselines fitted on the same training folds: tissue means, k-means cluster means (GTEx's 2nd approach)."""

from __future__ import annotations

import warnings

import numpy as np
from sklearn.cluster import KMeans

from core.ranking.threads import one_thread


def group_mean_predict(y_train: np.ndarray, groups_train: np.ndarray, groups_test: np.ndarray) -> np.ndarray:
    """Each test sample gets its group's training mean (the overall training mean for an unseen group);
    float32 like the logTPM it predicts."""
    labels, inverse, counts = np.unique(np.asarray(groups_train), return_inverse=True, return_counts=True)
    onehot = np.zeros((len(labels), len(inverse)), dtype=np.float32)
    onehot[inverse, np.arange(len(inverse))] = 1.0
    means = np.vstack([
        (onehot @ np.asarray(y_train, dtype=np.float32)) / counts[:, None].astype(np.float32),
        np.asarray(y_train).mean(axis=0, dtype=np.float64)[None, :],  # last row: unseen groups
    ]).astype(np.float32)
    lookup = {label: i for i, label in enumerate(labels.tolist())}
    rows = np.array([lookup.get(g, len(labels)) for g in np.asarray(groups_test).tolist()], dtype=np.intp)
    return means[rows]


def kmeans_predict(
    z_train: np.ndarray, y_train: np.ndarray, z_test: np.ndarray, clusters: int, seed: int = 0
) -> np.ndarray:
    """Cluster training slides on their embedding; a test slide gets its nearest cluster's mean transcriptome."""
    k = int(max(1, min(clusters, len(z_train))))
    with warnings.catch_warnings(), one_thread():
        warnings.simplefilter("ignore")  # fewer distinct points than clusters: sklearn warns, result is fine
        model = KMeans(n_clusters=k, n_init=4, random_state=seed).fit(z_train)
    return group_mean_predict(y_train, model.labels_, model.predict(z_test))
