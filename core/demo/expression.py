"""Simulated expression: tissue programs + factor-driven genes + noise, as TPM, written as GCT 1.2."""

from __future__ import annotations

import gzip
import io
from dataclasses import dataclass

import numpy as np
import pandas as pd

from core.demo.spec import DEFAULT_GENES, FACTORS, HARD_PAIRS

_FACTOR_GENES = {
    "nuclear_density": ("MKI67", "TOP2A", "PCNA", "MCM2", "TYMS", "CCNB1", "HMGB2", "CDK1"),
    "adipocyte_fraction": ("ADIPOQ", "PLIN1", "LEP", "CIDEA", "CIDEC", "FABP4", "LIPE", "PLIN4"),
    "immune_infiltrate": ("PTPRC", "CD3E", "MS4A1", "CD79A", "CD52", "CORO1A", "LCK", "CD19"),
    "fibrosis": ("COL1A1", "COL1A2", "COL3A1", "FN1", "POSTN", "LUM", "DCN", "THBS2"),
}
_FAMILIES = (
    "ZNF",
    "SLC",
    "TMEM",
    "CCDC",
    "KLHL",
    "ANKRD",
    "LRRC",
    "RBM",
    "TRIM",
    "WDR",
    "ZBTB",
    "KIF",
    "USP",
    "RNF",
    "PRR",
    "FBXO",
    "ARHGAP",
    "DNAH",
    "SPATA",
    "TBC1D",
)
# Names a gene filter should drop: clone-based, accession-based and repeated non-coding RNA names.
_NONSTANDARD_REPEATED = ("Y_RNA", "Metazoa_SRP", "snoU13", "5S_rRNA", "7SK", "U3")


@dataclass
class SimulatedExpression:
    """`tpm[g, s]` is gene `genes.iloc[g]` in RNA sample `sample_ids[s]`."""

    genes: pd.DataFrame  # gene_id, symbol, kind, factor ("" unless kind == "image"), effect
    sample_ids: list[str]
    tpm: np.ndarray


def _nonstandard_name(rng: np.random.Generator, i: int) -> str:
    pick = i % 4
    if pick == 0:
        letter = chr(65 + rng.integers(0, 26))
        return f"RP11-{rng.integers(1, 999)}{letter}{rng.integers(1, 24)}.{rng.integers(1, 9)}"
    if pick == 1:
        return f"AC0{rng.integers(10000, 99999)}.{rng.integers(1, 6)}"
    if pick == 2:
        letter = chr(65 + rng.integers(0, 26))
        return f"CTD-{rng.integers(2000, 3200)}{letter}{rng.integers(1, 24)}.{rng.integers(1, 4)}"
    return _NONSTANDARD_REPEATED[(i // 4) % len(_NONSTANDARD_REPEATED)]


def simulate_expression(plan: pd.DataFrame, n_genes: int = DEFAULT_GENES, seed: int = 0) -> SimulatedExpression:
    """log2(1+TPM) = tissue program + effect * factor + noise, for the plan's samples with RNA.

    Gene kinds (column `kind`), so each gene filter has something to remove:
    `low` (never above logTPM 5), `flat` (high but SD < 0.5), `nonstandard` and `duplicate`
    (expressed and variable, removable only by name), `tissue` (tissue programs), `noise`
    (variable, unrelated to anything) and `image` (driven by one morphology factor).
    """
    if n_genes < 100:
        raise ValueError("n_genes must be at least 100")
    rng = np.random.default_rng([seed, 4])
    samples = plan[plan["has_expression"]].sort_values("rna_sample_id").reset_index(drop=True)
    tissue_names = sorted(samples["tissue"].unique())
    t_index = samples["tissue"].map({t: i for i, t in enumerate(tissue_names)}).to_numpy()
    n_s, n_t = len(samples), len(tissue_names)
    per_factor = max(2, min(8, n_genes // 150))
    counts = {
        "image": per_factor * len(FACTORS),
        "nonstandard": max(8, round(0.04 * n_genes)),
        "duplicate": 2 * max(2, round(0.004 * n_genes)),
        "low": round(0.35 * n_genes),
        "flat": round(0.08 * n_genes),
        "tissue": round(0.3 * n_genes),
    }
    counts["noise"] = n_genes - sum(counts.values())
    kinds = np.concatenate([[k] * n for k, n in counts.items()])
    rng.shuffle(kinds)
    noise = rng.standard_normal((n_genes, n_s)).astype(np.float64)
    # Tissue programs; hard pairs share 80% of theirs.
    offsets = rng.normal(0, 1.2, (n_genes, n_t))
    markers = rng.integers(0, n_t, n_genes)
    offsets[np.arange(n_genes), markers] += rng.uniform(2, 5, n_genes)
    for a, b in HARD_PAIRS:
        if a in tissue_names and b in tissue_names:
            ia, ib = tissue_names.index(a), tissue_names.index(b)
            shared = rng.random(n_genes) < 0.8
            offsets[shared, ib] = offsets[shared, ia] + rng.normal(0, 0.3, int(shared.sum()))
    program = offsets[:, t_index]
    values = np.empty((n_genes, n_s))
    factor_of = np.full(n_genes, "", dtype=object)
    effect = np.zeros(n_genes)
    factor_cycle = iter(np.repeat(FACTORS, per_factor))
    for g, kind in enumerate(kinds):
        if kind == "low":
            values[g] = np.clip(rng.uniform(-1, 3) + 0.6 * noise[g], 0, 4.8)
        elif kind == "flat":
            values[g] = rng.uniform(6, 11) + 0.12 * noise[g]
        elif kind == "tissue":
            values[g] = rng.uniform(3, 7) + program[g] + 0.45 * noise[g]
        elif kind == "image":
            factor = next(factor_cycle)
            factor_of[g], effect[g] = factor, round(float(rng.uniform(2.5, 4.0)), 3)
            level = samples[factor].to_numpy()
            values[g] = rng.uniform(5, 8) + 0.4 * program[g] + effect[g] * level + 0.35 * noise[g]
        else:  # noise, nonstandard, duplicate: expressed and variable
            values[g] = rng.uniform(5, 9) + rng.uniform(0.6, 1.2) * noise[g]
    values = np.maximum(values, 0.0)
    symbols = _gene_symbols(rng, kinds, factor_of)
    ids = np.sort(rng.choice(np.arange(100_000, 300_000), n_genes, replace=False))
    versions = rng.integers(1, 18, n_genes)
    genes = pd.DataFrame(
        {
            "gene_id": [f"ENSG00000{i:06d}.{v}" for i, v in zip(ids, versions, strict=True)],
            "symbol": symbols,
            "kind": kinds,
            "factor": factor_of.astype(str),
            "effect": effect,
        }
    )
    return SimulatedExpression(genes, samples["rna_sample_id"].tolist(), np.exp2(values) - 1.0)


def _gene_symbols(rng: np.random.Generator, kinds: np.ndarray, factor_of: np.ndarray) -> list[str]:
    """Unique standard-looking symbols, except the `nonstandard` and `duplicate` kinds."""
    reserved = {s for names in _FACTOR_GENES.values() for s in names}
    pool = [f"{family}{n}" for family in _FAMILIES for n in range(1, 400)]
    pool = [s for s in rng.permutation(pool).tolist() if s not in reserved]
    used_factor = {f: 0 for f in FACTORS}
    symbols: list[str] = []
    duplicate_names: list[str] = []
    nonstandard_i = 0
    for g, kind in enumerate(kinds):
        if kind == "image":
            factor = factor_of[g]
            names = _FACTOR_GENES[factor]
            symbols.append(names[used_factor[factor]] if used_factor[factor] < len(names) else pool.pop())
            used_factor[factor] += 1
        elif kind == "nonstandard":
            symbols.append(_nonstandard_name(rng, nonstandard_i))
            nonstandard_i += 1
        elif kind == "duplicate":
            # Pairs: every name is used by exactly two Ensembl IDs (as e.g. PINX1 in GENCODE 26).
            if duplicate_names and len(duplicate_names) % 2 == 1:
                symbols.append(duplicate_names[-1])
            else:
                symbols.append(pool.pop())
            duplicate_names.append(symbols[-1])
        else:
            symbols.append(pool.pop())
    return symbols


def gct_bytes(expression: SimulatedExpression) -> bytes:
    """GCT 1.2 text, gzipped reproducibly (no timestamp or file name in the gzip header)."""
    lines = [
        "#1.2",
        f"{len(expression.genes)}\t{len(expression.sample_ids)}",
        "\t".join(["Name", "Description", *expression.sample_ids]),
    ]
    for (gene_id, symbol), row in zip(
        expression.genes[["gene_id", "symbol"]].itertuples(index=False), expression.tpm, strict=True
    ):
        lines.append("\t".join([gene_id, symbol, *(f"{v:.4g}" for v in row)]))
    raw = ("\n".join(lines) + "\n").encode()
    out = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=out, mtime=0, compresslevel=6) as handle:
        handle.write(raw)
    return out.getvalue()
