"""What the overview shows: small tables from the cohort and tile index, and its cached results.

The expensive ones (gene-filter funnel, slide thumbnails with masks) go through diskcache, keyed by
the input files' content fingerprints and the parameters, so a page load after the first is instant
and the UI and workers can share the cache safely.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import numpy as np
import pandas as pd

from core.base.cache import cache_key, cached, file_fingerprint, open_cache
from core.base.config import Workspace
from core.base.fileio import read_json_object
from core.data.dataset import Cohort
from core.data.genes import GeneFilterParams, gene_filter_mask, sample_log_tpm


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
    saved = read_json_object(Path(index_path).parent / "summary.json") or {}
    return dict(saved.get("errors") or {})


def _fingerprint_or_none(path: Path | None) -> str | None:
    return file_fingerprint(path) if path is not None and Path(path).is_file() else None


def gene_funnel(ws: Workspace, cohort: Cohort, params: GeneFilterParams,
                sample_values: int = 200_000) -> tuple[list[tuple[str, int]], np.ndarray]:
    """The gene-filter funnel and a seeded sample of logTPM values (for the histogram), cached."""
    key = cache_key("gene_funnel", _fingerprint_or_none(cohort.files.expression_gct),
                    _fingerprint_or_none(cohort.files.histology_csv), asdict(params), sample_values)

    def compute() -> tuple[list[tuple[str, int]], np.ndarray]:
        # Block-wise (core.data.genes): the whole logTPM matrix would be GBs of temporaries at GTEx size.
        _, funnel = gene_filter_mask(cohort.expression, params)
        values = sample_log_tpm(cohort.expression.values, sample_values, seed=0)
        return [(str(step), int(n)) for step, n in funnel], values

    with open_cache(ws) as cache:
        return cached(cache, key, compute)
