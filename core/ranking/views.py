"""What the Gene rankings page shows of a saved ranking, beyond its table: per-tissue R² (the tissue filter
and a gene's detail), each gene's tissue of highest expression, searching and filtering the table.

"Filter by tissue" means: score every gene within one tissue's samples only (the out-of-fold predictions of
the embedding model against that tissue's observed mean), so a gene that merely differs between tissues
scores near zero there; optionally keep only the genes most expressed in that tissue. Nothing is refitted.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from core.ranking.store import Ranking

MIN_TISSUE_SAMPLES = 3  # an R² over fewer samples of one tissue says nothing
# The table's columns as the page shows them, in order (optional ones are skipped when absent).
DISPLAY_COLUMNS = {
    "rank": "Rank", "symbol": "Symbol", "gene_id": "Ensembl ID", "r2": "R²", "r2_kernel": "R² kernel ridge",
    "r2_beyond_tissue": "R² beyond tissue", "significant_beyond_tissue": "Beyond tissue (FDR < 0.05)",
    "r2_tissue": "R² tissue only", "r2_within_tissue": "R² within tissue", "r": "r", "fdr": "FDR",
    "recovered": "Recovered", "r2_random": "R² random weights", "top_tissue": "Most expressed in",
}


def _within_r2(observed: np.ndarray, predicted: np.ndarray) -> np.ndarray:
    """Per column: 1 - SSE / SST with SST around the column's own mean (NaN where constant)."""
    observed = observed.astype(np.float64)
    sse = ((observed - predicted.astype(np.float64)) ** 2).sum(axis=0)
    sst = ((observed - observed.mean(axis=0)) ** 2).sum(axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(sst > 1e-12, 1.0 - sse / np.where(sst > 1e-12, sst, 1.0), np.nan)


def tissue_r2(ranking: Ranking, model: str = "predicted") -> pd.DataFrame:
    """Genes x tissues: R² of `model`'s out-of-fold predictions within each tissue's samples (NaN for a
    tissue with fewer than MIN_TISSUE_SAMPLES samples). Index: gene_id in the ranking's array order."""
    tissues = ranking.samples["tissue"].astype(str).to_numpy()
    observed, predicted = ranking.arrays["observed"], ranking.arrays[model]
    columns = {}
    for tissue in sorted(set(tissues)):
        rows = np.flatnonzero(tissues == tissue)
        if len(rows) < MIN_TISSUE_SAMPLES:
            columns[tissue] = np.full(len(ranking.gene_ids), np.nan)
            continue
        columns[tissue] = _within_r2(np.asarray(observed[rows]), np.asarray(predicted[rows]))
    return pd.DataFrame(columns, index=pd.Index(ranking.gene_ids, name="gene_id"))


def top_tissue(ranking: Ranking) -> pd.Series:
    """Per gene_id: the tissue where its mean observed logTPM is highest."""
    tissues = ranking.samples["tissue"].astype(str).to_numpy()
    names = sorted(set(tissues))
    observed = ranking.arrays["observed"]
    means = np.vstack([np.asarray(observed[tissues == t], dtype=np.float64).mean(axis=0) for t in names])
    return pd.Series(np.asarray(names)[means.argmax(axis=0)], index=pd.Index(ranking.gene_ids, name="gene_id"),
                     name="top_tissue")


def gene_tissue_table(ranking: Ranking, gene_id: str) -> pd.DataFrame:
    """One gene per tissue: samples, mean observed logTPM, R² of the embedding model and of embedding +
    tissue within the tissue, Pearson r within the tissue."""
    frame = ranking.gene_frame(gene_id)
    rows = []
    for tissue, group in frame.groupby("tissue", sort=True):
        obs = group["observed"].to_numpy(dtype=float)
        enough = len(group) >= MIN_TISSUE_SAMPLES
        r = np.nan
        if enough and obs.std() > 0 and group["predicted"].std() > 0:
            r = float(np.corrcoef(obs, group["predicted"].to_numpy(dtype=float))[0, 1])
        rows.append({
            "tissue": tissue, "samples": len(group), "mean_log_tpm": float(obs.mean()),
            "r2": float(_within_r2(obs[:, None], group[["predicted"]].to_numpy())[0]) if enough else np.nan,
            "r2_emb_tissue": float(_within_r2(obs[:, None], group[["predicted_tissue"]].to_numpy())[0])
            if enough else np.nan,
            "r": r,
        })
    return pd.DataFrame(rows)


def search(table: pd.DataFrame, query: str) -> pd.DataFrame:
    """Rows whose symbol or Ensembl ID contains `query` (case-insensitive; the version suffix optional)."""
    query = (query or "").strip()
    if not query:
        return table
    needle = query.lower()
    hit = (table["symbol"].astype(str).str.lower().str.contains(needle, regex=False)
           | table["gene_id"].astype(str).str.lower().str.contains(needle, regex=False))
    return table[hit]


def view_table(
    table: pd.DataFrame,
    query: str = "",
    tissue: str | None = None,
    per_tissue: pd.DataFrame | None = None,
    tops: pd.Series | None = None,
    only_top_tissue: bool = False,
    recovered_only: bool = False,
    order: str = "r2",
) -> pd.DataFrame:
    """The rows the page lists: searched, optionally recovered only, best `order` first (a table column,
    e.g. r2_beyond_tissue); with a tissue, a column with each gene's R² within that tissue (sorted by it),
    optionally only the genes most expressed there."""
    out = table.copy()
    if order in out and order != "r2":
        out = out.sort_values(order, ascending=False, na_position="last", kind="stable")
    if tops is not None:
        out["top_tissue"] = out["gene_id"].map(tops)
    if tissue and per_tissue is not None and tissue in per_tissue.columns:
        out[f"r2_in_{tissue}"] = out["gene_id"].map(per_tissue[tissue])
        if only_top_tissue and tops is not None:
            out = out[out["top_tissue"] == tissue]
        out = out.sort_values(f"r2_in_{tissue}", ascending=False, na_position="last", kind="stable")
    if recovered_only and "recovered" in out:
        out = out[out["recovered"].astype(bool)]
    return search(out, query).reset_index(drop=True)


def display_frame(view: pd.DataFrame) -> pd.DataFrame:
    """The listed columns with their page names (a tissue's R² column named 'R² in TISSUE')."""
    columns = [c for c in DISPLAY_COLUMNS if c in view.columns]
    columns += [c for c in view.columns if c.startswith("r2_in_")]
    names = {**DISPLAY_COLUMNS, **{c: f"R² in {c[len('r2_in_'):]}" for c in columns if c.startswith("r2_in_")}}
    return view[columns].rename(columns=names)
