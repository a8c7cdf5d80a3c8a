"""Small tables the overview shows, computed from the cohort and the tile index."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd


def per_tissue_table(info: dict, tile_index: pd.DataFrame | None) -> pd.DataFrame:
    """Per tissue: slides, tiles after QC, samples with expression, joined (tiles 0 before tiling)."""
    table = pd.DataFrame(info.get("per_tissue", {})).T
    table = table.reindex(columns=["slides", "samples_with_expression", "joined"]).fillna(0).astype(int)
    if tile_index is not None and len(tile_index):
        kept = tile_index[tile_index["passed_qc"]].groupby("tissue").size()
        table.insert(1, "tiles after QC", kept.reindex(table.index).fillna(0).astype(int))
    return table.sort_index()


def example_tiles(tile_index: pd.DataFrame, tissue: str, n: int = 6, seed: int = 0) -> dict[str, pd.DataFrame]:
    """Up to `n` passed and `n` rejected tiles of one tissue (rejected ones spread over the stages)."""
    rows = tile_index[tile_index["tissue"] == tissue]
    passed = rows[rows["passed_qc"]]
    rejected = rows[~rows["passed_qc"]]
    passed = passed.sample(min(n, len(passed)), random_state=seed) if len(passed) else passed
    if len(rejected):
        # One per stage first, so every kind of rejection is seen.
        order = rejected.sample(frac=1.0, random_state=seed)
        order = order.assign(_rank=order.groupby("reason").cumcount()).sort_values("_rank", kind="stable")
        rejected = order.head(n).drop(columns="_rank")
    return {"passed": passed, "rejected": rejected}


def demographics(samples: pd.DataFrame) -> dict[str, pd.Series]:
    """One row per donor for sex and age bracket; per sample for Hardy scale (as GTEx reports)."""
    known = samples.dropna(subset=["subject_id"])
    donors = known.drop_duplicates("subject_id")
    return {"Sex (donors)": donors["sex"], "Age bracket (donors)": donors["age_bracket"],
            "Hardy scale (donors)": donors["hardy_scale"]}


def tiling_errors(index_path: Path) -> dict[str, str]:
    """Slides the tiling run could not read ({sample_id: message}), from the summary saved beside the index."""
    try:
        saved = json.loads((Path(index_path).parent / "summary.json").read_text())
    except (OSError, ValueError):
        return {}
    return dict(saved.get("errors") or {})
