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
    # The nulls, on repeat 0's folds: embeddings shuffled across samples (R²), and `beyond_permutations`
    # passes with embeddings moved between donors within each tissue (R² beyond tissue). Pooled over genes,
    # B permutations let one lone significant gene reach a BH FDR of about 1/B at best: 25 clears 0.05.
    permutation_null: bool = True
    beyond_permutations: int = 25
