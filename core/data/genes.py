"""Gene filters: keep expressed, variable genes with standard unique symbols (the study's 56,200 -> 17,408)."""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from core.data.dataset import Expression

STEP_ALL = "all genes"
STEP_EXPRESSED = "expressed"
STEP_VARIABLE = "variable"
STEP_NAMED = "standard unique names"

# HGNC-style symbols: letters, digits and hyphens; "_" and "." mark Ensembl/clone-derived names
# (Y_RNA, Metazoa_SRP, AC012345.6, RP11-34P13.7).
_SYMBOL = re.compile(r"^[A-Za-z0-9][A-Za-z0-9-]*$")
# Clone-based names that can appear without a version dot (RP11-34P13, CTD-2331D11, AC012345).
_CLONE = re.compile(r"^(RP\d+|CT[A-D]|CH\d+|XX[A-Za-z]*|KB)-|^(A[CFLP]|BX|CR|CU|FP|Z)\d{5,6}$")
_ENSEMBL = re.compile(r"^ENS[A-Z]*G\d+")
_BLOCK_VALUES = 4_000_000  # values per pass (~16 MB float32, 32 MB float64): memory stays flat at GTEx size


@dataclass(frozen=True)
class GeneFilterParams:
    min_log_tpm: float = 5.0  # expressed: log2(1 + TPM) above this in at least one sample
    min_sd: float = 0.5  # variable: sample SD (ddof=1) of log2(1 + TPM) above this


@dataclass
class GeneFilterResult:
    expression: Expression  # logTPM of the kept genes, same samples
    funnel: list[tuple[str, int]]  # (step, genes left after it), in order


def log_tpm(tpm: np.ndarray) -> np.ndarray:
    """log2(1 + TPM); float32 stays float32."""
    values = np.asarray(tpm)
    if values.dtype != np.float32:
        values = values.astype(np.float64)
    return np.log1p(values) * values.dtype.type(1 / np.log(2))


def is_standard_symbol(symbol: str) -> bool:
    """True for HGNC-style symbols (TP53, HLA-A, LINC00115); False for clone, Ensembl and RNA-family names."""
    return bool(_SYMBOL.match(symbol)) and not _CLONE.match(symbol) and not _ENSEMBL.match(symbol)


def _block_rows(values: np.ndarray) -> int:
    return max(1, _BLOCK_VALUES // max(1, values.shape[1]))


def _gene_stats(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per gene: max and sample SD of logTPM, computed in blocks so a memory-mapped matrix is never copied whole.

    A gene with a missing (NaN) value gets NaN for both, so no threshold keeps it (the GCT reader
    warns about such values and says so)."""
    genes, samples = values.shape
    max_log = np.full(genes, -np.inf)
    sd = np.full(genes, np.nan)
    if samples == 0:
        return max_log, sd
    rows = _block_rows(values)
    for start in range(0, genes, rows):
        block = log_tpm(np.asarray(values[start : start + rows]))
        max_log[start : start + len(block)] = block.max(axis=1)
        if samples > 1:
            sd[start : start + len(block)] = block.std(axis=1, ddof=1, dtype=np.float64)
    return max_log, sd


def sample_log_tpm(values: np.ndarray, n: int, seed: int = 0) -> np.ndarray:
    """A seeded sample of up to `n` finite logTPM values of a (genes, samples) matrix, read in row blocks
    (memory: the sample plus one block, whatever the matrix size; a memory map is never copied whole)."""
    total = int(np.prod(values.shape))
    if total == 0:
        return np.zeros(0, dtype=np.float32)
    rng = np.random.default_rng(seed)
    # Positions in the flattened matrix, sorted so each block takes a contiguous run of them.
    picks = np.sort(rng.choice(total, size=n, replace=False)) if n < total else np.arange(total)
    samples = values.shape[1]
    rows = _block_rows(values)
    out = [np.zeros(0, dtype=np.float32)]
    for start in range(0, values.shape[0], rows):
        lo, hi = np.searchsorted(picks, [start * samples, (start + rows) * samples])
        if hi > lo:
            block = np.asarray(values[start : start + rows], dtype=np.float32).ravel()
            out.append(log_tpm(block[picks[lo:hi] - start * samples]))
    sampled = np.concatenate(out).astype(np.float32)
    return sampled[np.isfinite(sampled)]


def _unique_among(symbols: np.ndarray, candidates: np.ndarray) -> np.ndarray:
    """Mask of candidates whose symbol appears once among the candidates (all copies of a repeat go)."""
    names, counts = np.unique(symbols[candidates], return_counts=True)
    repeated = names[counts > 1]
    return candidates & ~np.isin(symbols, repeated)


def gene_filter_mask(
    expression: Expression, params: GeneFilterParams = GeneFilterParams()
) -> tuple[np.ndarray, list[tuple[str, int]]]:
    """(kept-gene mask, funnel) without building the filtered matrix: what the overview needs."""
    symbols = np.asarray(expression.symbols, dtype=str)
    max_log, sd = _gene_stats(expression.values)
    expressed = max_log > params.min_log_tpm  # NaN (a gene with a missing value) is never above
    variable = expressed & (sd > params.min_sd)
    standard = np.array([is_standard_symbol(s) for s in symbols], dtype=bool)
    named = _unique_among(symbols, variable & standard)
    funnel = [
        (STEP_ALL, len(symbols)),
        (STEP_EXPRESSED, int(expressed.sum())),
        (STEP_VARIABLE, int(variable.sum())),
        (STEP_NAMED, int(named.sum())),
    ]
    return named, funnel


def filter_genes(expression: Expression, params: GeneFilterParams = GeneFilterParams()) -> GeneFilterResult:
    """Filter genes of a TPM matrix step by step; returns logTPM of the survivors and the funnel.

    Steps (each applied to the survivors of the previous one): expressed (logTPM > min_log_tpm in at
    least one sample), variable (SD > min_sd across samples), standard unique names (HGNC-style symbol,
    not repeated among the remaining genes).
    """
    symbols = np.asarray(expression.symbols, dtype=str)
    named, funnel = gene_filter_mask(expression, params)
    kept = np.flatnonzero(named)
    kept_values = log_tpm(np.asarray(expression.values[kept], dtype=np.float32))
    filtered = Expression(
        np.asarray(expression.gene_ids)[kept],
        symbols[kept],
        np.asarray(expression.sample_ids).copy(),
        kept_values.reshape(len(kept), len(expression.sample_ids)),
        list(expression.warnings),
    )
    return GeneFilterResult(filtered, funnel)
