"""Cross-validation folds grouped by donor, repeated over seeds: no donor is ever on both sides."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Fold:
    """One train/test split of sample positions (indices into the aligned arrays)."""

    repeat: int
    fold: int
    train: np.ndarray
    test: np.ndarray


def donor_folds(subject_ids: np.ndarray, n_folds: int = 5, repeats: int = 3, seed: int = 0) -> list[Fold]:
    """`repeats` x `n_folds` donor-grouped folds (GroupKFold, shuffled per repeat).

    Each repeat shuffles the donors with its own seed, then hands them, largest first, to the fold
    with the fewest samples so far (sklearn's GroupKFold balancing, but with a seeded order so the
    repeats differ). Every sample is tested exactly once per repeat.
    """
    groups = np.asarray(subject_ids).astype(str)
    donors, inverse, counts = np.unique(groups, return_inverse=True, return_counts=True)
    if n_folds < 2:
        raise ValueError("n_folds must be at least 2")
    if len(donors) < n_folds:
        raise ValueError(f"{len(donors)} donors cannot fill {n_folds} donor-grouped folds")
    if repeats < 1:
        raise ValueError("repeats must be at least 1")
    folds: list[Fold] = []
    for repeat in range(repeats):
        rng = np.random.default_rng([seed, repeat])
        order = rng.permutation(len(donors))
        # Stable sort by size after shuffling: equal-sized donors land in a different order per repeat.
        order = order[np.argsort(-counts[order], kind="stable")]
        load = np.zeros(n_folds, dtype=np.int64)
        fold_of_donor = np.empty(len(donors), dtype=np.int64)
        for donor in order:
            target = int(np.argmin(load))
            fold_of_donor[donor] = target
            load[target] += counts[donor]
        fold_of_sample = fold_of_donor[inverse]
        for f in range(n_folds):
            test = np.flatnonzero(fold_of_sample == f)
            train = np.flatnonzero(fold_of_sample != f)
            folds.append(Fold(repeat, f, train, test))
    return folds
