"""What a ranking regresses: slide embeddings joined to the filtered logTPM of the same samples."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
import pandas as pd

from core.base.errors import DataError
from core.data.dataset import Cohort
from core.data.genes import GeneFilterParams, filter_genes


class Embeddings(Protocol):
    sample_ids: np.ndarray
    values: np.ndarray


@dataclass
class RankInputs:
    """Aligned rows: `samples` (sample_id, subject_id, tissue), `x` (n, d), `y` (n, genes) logTPM."""

    samples: pd.DataFrame
    x: np.ndarray
    y: np.ndarray
    gene_ids: np.ndarray
    symbols: np.ndarray
    x_random: np.ndarray | None = None
    warnings: list[str] = field(default_factory=list)

    def fingerprint(self) -> str:
        """Content hash of everything the ranking reads (so a cached ranking matches its inputs exactly)."""
        digest = hashlib.blake2b(digest_size=16)
        for frame_column in ("sample_id", "subject_id", "tissue"):
            digest.update("\x1f".join(self.samples[frame_column].astype(str)).encode())
        digest.update("\x1f".join(self.gene_ids.astype(str)).encode())
        for array in (self.x, self.y, self.x_random):
            if array is not None:
                digest.update(str(array.shape).encode())
                digest.update(np.ascontiguousarray(array, dtype=np.float32).tobytes())
        return digest.hexdigest()


def _aligned(embeddings: Embeddings, sample_ids: np.ndarray, what: str) -> np.ndarray:
    position = {s: i for i, s in enumerate(np.asarray(embeddings.sample_ids).astype(str).tolist())}
    missing = [s for s in sample_ids if s not in position]
    if missing:
        raise DataError(None, f"{what} lack {len(missing)} of the samples (e.g. {missing[0]})")
    return np.asarray(embeddings.values, dtype=np.float32)[[position[s] for s in sample_ids]]


def ranking_inputs(
    cohort: Cohort,
    embeddings: Embeddings,
    random_embeddings: Embeddings | None = None,
    gene_params: GeneFilterParams = GeneFilterParams(),
    min_donors: int = 2,
) -> RankInputs:
    """Join embeddings to the cohort's filtered genes on sample_id; samples without a donor are left out
    (they could sit on both sides of a donor split). DataError when too little is left to rank."""
    root = cohort.files.root
    if cohort.files.expression_gct is None or len(cohort.expression.sample_ids) == 0:
        raise DataError(root, "no expression file (*.gct or *.gct.gz): there is nothing to rank")
    messages: list[str] = []
    samples = cohort.samples
    embedded = set(np.asarray(embeddings.sample_ids).astype(str).tolist())
    expressed = set(np.asarray(cohort.expression.sample_ids).astype(str).tolist())
    joined = samples[samples["sample_id"].isin(embedded) & samples["sample_id"].isin(expressed)]
    no_donor = joined["subject_id"].fillna("").astype(str).str.strip() == ""
    if no_donor.any():
        messages.append(f"{int(no_donor.sum())} samples have no donor and are left out of the ranking")
        joined = joined[~no_donor]
    if joined.empty:
        raise DataError(root, "no sample has both a slide embedding and expression: nothing to rank")
    donors = joined["subject_id"].nunique()
    if donors < min_donors:
        raise DataError(root, f"only {donors} donor(s) have slides and expression; donor-grouped "
                              f"cross-validation needs at least {min_donors}")
    genes = filter_genes(cohort.expression, gene_params).expression
    if len(genes.gene_ids) == 0:
        raise DataError(root, "no gene passes the gene filter (expressed, variable, named): nothing to rank")
    joined = joined.sort_values("sample_id").reset_index(drop=True)
    ids = joined["sample_id"].astype(str).to_numpy()
    column = {s: i for i, s in enumerate(np.asarray(genes.sample_ids).astype(str).tolist())}
    y = np.ascontiguousarray(np.asarray(genes.values)[:, [column[s] for s in ids]].T, dtype=np.float32)
    x = _aligned(embeddings, ids, "the slide embeddings")
    x_random = None if random_embeddings is None else _aligned(random_embeddings, ids, "the random-weights embeddings")
    return RankInputs(
        samples=joined[["sample_id", "subject_id", "tissue"]].astype(str),
        x=x, y=y, gene_ids=np.asarray(genes.gene_ids).astype(str), symbols=np.asarray(genes.symbols).astype(str),
        x_random=x_random, warnings=messages,
    )
