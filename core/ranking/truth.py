"""Checking a ranking against the demo cohort's truth.json (what the generator planted)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd

TRUTH_JSON = "truth.json"


def truth_report(data_dir: str | Path, table: pd.DataFrame) -> dict[str, Any] | None:
    """`planted` image-linked genes in the table, `recall_top_2k` (their share among the top 2k by R²
    beyond tissue, k = planted), `noise_median_r2`, and of the genes significant beyond tissue how many are
    planted and how many noise; None when the dataset has no readable truth file."""
    path = Path(data_dir) / TRUTH_JSON
    try:
        truth = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    image = {g["gene_id"] for g in truth.get("image_genes", [])}
    noise = {g["gene_id"] for g in truth.get("genes", []) if g.get("kind") == "noise"}
    planted = table[table["gene_id"].isin(image)]
    k = len(planted)
    top = table.sort_values("r2_beyond_tissue", ascending=False, na_position="last").head(2 * k)
    noise_r2 = table.loc[table["gene_id"].isin(noise), "r2"]
    return {
        "planted": k,
        "recall_top_2k": round(float(top["gene_id"].isin(image).sum() / k), 4) if k else None,
        "noise_genes": int(len(noise_r2)),
        "noise_median_r2": None if noise_r2.empty else round(float(noise_r2.median()), 4),
        "planted_median_r2": None if planted.empty else round(float(planted["r2"].median()), 4),
        **_beyond_tissue_hits(table, image, noise),
    }


def _beyond_tissue_hits(table: pd.DataFrame, image: set[str], noise: set[str]) -> dict[str, int]:
    if "significant_beyond_tissue" not in table:
        return {}
    hits = table.loc[table["significant_beyond_tissue"].astype(bool), "gene_id"]
    return {"beyond_tissue_planted": int(hits.isin(image).sum()), "beyond_tissue_noise": int(hits.isin(noise).sum())}
