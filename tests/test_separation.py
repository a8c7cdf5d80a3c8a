"""Separation scores: planted tissue clusters score high, shuffled labels score near chance, and a donor's
near-duplicate slides cannot inflate kNN accuracy because whole donors are held out."""

from __future__ import annotations

import numpy as np
import pytest

from core.embed.separability import knn_tissue_accuracy, separation, silhouette_by_tissue

TISSUES = ["Lung", "Liver", "Skin", "Thyroid"]


def planted(n_donors: int = 20, spread: float = 1.0, seed: int = 0):
    """One slide per donor and tissue; each tissue a Gaussian cluster around its own centre in 32-d."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 5, size=(len(TISSUES), 32))
    tissues = np.array([t for _ in range(n_donors) for t in TISSUES])
    donors = np.array([f"D{d}" for d in range(n_donors) for _ in TISSUES])
    values = centres[[TISSUES.index(t) for t in tissues]] + rng.normal(0, spread, size=(len(tissues), 32))
    return values.astype(np.float32), tissues, donors


def test_planted_clusters_separate() -> None:
    values, tissues, donors = planted()
    scores = separation(values, tissues, donors)
    assert scores.silhouette > 0.5
    assert scores.knn_accuracy > 0.95
    assert scores.chance_accuracy < 0.35  # commonest training tissue: ~1/4 here
    assert (scores.points, scores.tissues, scores.donors, scores.folds) == (80, 4, 20, 5)


def test_shuffled_labels_score_near_chance() -> None:
    values, tissues, donors = planted()
    shuffled = np.random.default_rng(1).permutation(tissues)
    scores = separation(values, shuffled, donors)
    assert abs(scores.silhouette) < 0.1
    assert scores.knn_accuracy < 0.45
    assert scores.chance_accuracy < 0.45


def test_whole_donors_are_held_out() -> None:
    """Tissue is noise, but each donor's slides come in near-identical pairs of one tissue: a split that
    let a donor's twin into training would score ~100%; held-out donors score near chance."""
    rng = np.random.default_rng(2)
    n = 30
    base = rng.normal(0, 1, size=(n, 16))
    values = np.repeat(base, 2, axis=0) + rng.normal(0, 1e-3, size=(2 * n, 16))
    tissues = np.repeat(rng.choice(TISSUES, size=n), 2)
    donors = np.repeat([f"D{i}" for i in range(n)], 2)
    held_out, _, _ = knn_tissue_accuracy(values, tissues, donors, k=1)
    leaky, _, _ = knn_tissue_accuracy(values, tissues, np.arange(2 * n).astype(str), k=1)
    assert leaky > 0.95
    assert held_out < 0.5


def test_degenerate_inputs_give_none_not_errors() -> None:
    values = np.zeros((4, 3), np.float32)
    assert silhouette_by_tissue(values, ["A"] * 4) is None
    assert knn_tissue_accuracy(values, ["A", "B", "A", "B"], ["D"] * 4) == (None, None, 0)
    with pytest.raises(ValueError, match="one tissue per row"):
        separation(values, ["A"] * 3, ["D"] * 3)
