"""The parameters of a gene ranking (a module of its own: importing it costs no sklearn)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class RankParams:
    components: int = 40  # PCA components of the standardized embedding
    folds: int = 5
    repeats: int = 3
    seed: int = 0
    clusters: int = 8  # k-means clusters of the cluster-mean baseline
    criterion: str = "loo"  # ridge penalty per gene: exact leave-one-out ("loo") or "gcv"
    permutation_null: bool = True  # one extra pass with embeddings shuffled across samples (repeat 0)
