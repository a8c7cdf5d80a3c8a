"""A ranking computed once per (inputs, parameters, code version) and kept as a folder in the cache:
the table as CSV, the aligned samples, observed and out-of-fold predicted logTPM as memory-mapped .npy
(GTEx size: 1,800 x 17,000 float32 = 120 MB each, so never a pickle read whole on every page run)."""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from core.base.cache import cache_key
from core.base.config import Workspace
from core.base.fileio import atomic_write_json, temp_path_for
from core.base.types import Cancel, Progress
from core.ranking.cv import RankParams, cross_validate
from core.ranking.inputs import RankInputs
from core.ranking.table import build_table, summarize

TABLE_CSV = "ranking.csv"
SUMMARY_JSON = "summary.json"
SAMPLES_CSV = "samples.csv"
ARRAYS = ("observed", "predicted", "predicted_tissue")  # y, embedding model, embedding + tissue model
# Bumped whenever the ranking's numbers change for the same inputs (a cached ranking is then recomputed).
RANKING_VERSION = 4  # 4: SEQUOIA's exact rule, p-values with n = donors


@dataclass
class Ranking:
    """A finished ranking: `table` (one row per gene, best R² first), `summary`, and for the gene detail
    the aligned `samples` with `observed`/`predicted` logTPM columns in `gene_ids` order."""

    path: Path
    table: pd.DataFrame
    summary: dict[str, Any]
    samples: pd.DataFrame
    gene_ids: np.ndarray
    arrays: dict[str, np.ndarray]

    @property
    def csv(self) -> Path:
        return self.path / TABLE_CSV

    def gene_frame(self, gene_id: str) -> pd.DataFrame:
        """Per sample: sample_id, subject_id, tissue, observed, predicted, predicted_tissue for one gene."""
        column = int(np.flatnonzero(self.gene_ids == gene_id)[0])
        frame = self.samples.copy()
        for name, values in self.arrays.items():
            frame[name] = np.asarray(values[:, column], dtype=np.float64)
        return frame


def rankings_dir(ws: Workspace) -> Path:
    return ws.cache_dir / "rankings"


def ranking_key(inputs: RankInputs, params: RankParams) -> str:
    return cache_key("ranking", RANKING_VERSION, inputs.fingerprint(), asdict(params)).replace(":", "-")


def load_ranking(path: str | Path) -> Ranking | None:
    """The ranking saved in `path`, or None when absent or incomplete."""
    path = Path(path)
    try:
        summary = json.loads((path / SUMMARY_JSON).read_text())
        table = pd.read_csv(path / TABLE_CSV, dtype={"gene_id": str, "symbol": str})
        samples = pd.read_csv(path / SAMPLES_CSV, dtype=str)
        arrays = {name: np.load(path / f"{name}.npy", mmap_mode="r") for name in ARRAYS}
        gene_ids = np.load(path / "gene_ids.npy").astype(str)
    except (OSError, ValueError):
        return None
    return Ranking(path, table, summary, samples, gene_ids, arrays)


def compute_ranking(
    inputs: RankInputs, params: RankParams, progress: Progress | None = None, cancel: Cancel | None = None
) -> tuple[pd.DataFrame, dict[str, Any], dict[str, np.ndarray]]:
    """Run the cross-validation and build the table and summary (nothing written)."""
    started = time.perf_counter()
    cv = cross_validate(
        inputs.x, inputs.y, inputs.samples["subject_id"].to_numpy(), inputs.samples["tissue"].to_numpy(),
        params, x_random=inputs.x_random, progress=progress, cancel=cancel,
    )
    table = build_table(cv, inputs.y, inputs.gene_ids, inputs.symbols, inputs.samples["subject_id"].to_numpy())
    summary = {
        "genes": int(len(inputs.gene_ids)),
        "samples": int(len(inputs.samples)),
        "donors": int(inputs.samples["subject_id"].nunique()),
        "tissues": int(inputs.samples["tissue"].nunique()),
        "folds": params.folds,
        "repeats": params.repeats,
        "components": params.components,
        "params": asdict(params),
        **summarize(table),
        "seconds": round(time.perf_counter() - started, 3),
        "warnings": list(inputs.warnings),
    }
    arrays = {"observed": inputs.y, "predicted": cv.pred["emb"], "predicted_tissue": cv.pred["full"]}
    return table, summary, arrays


def save_ranking(
    folder: Path, table: pd.DataFrame, summary: dict[str, Any], inputs: RankInputs, arrays: dict[str, np.ndarray]
) -> Ranking:
    """Write into a temporary sibling and rename: a reader never sees half a ranking."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path_for(folder)  # unique per process and call: two writers never share it
    tmp.mkdir()
    table.to_csv(tmp / TABLE_CSV, index=False)
    inputs.samples.to_csv(tmp / SAMPLES_CSV, index=False)
    np.save(tmp / "gene_ids.npy", inputs.gene_ids.astype(str))
    for name in ARRAYS:
        np.save(tmp / f"{name}.npy", np.asarray(arrays[name], dtype=np.float32))
    atomic_write_json(tmp / SUMMARY_JSON, summary)
    try:
        os.replace(tmp, folder)
    except OSError:  # another process saved the same ranking first: keep theirs
        shutil.rmtree(tmp, ignore_errors=True)
    loaded = load_ranking(folder)
    if loaded is None:
        raise OSError(f"{folder}: ranking could not be read back after saving")
    return loaded


def rank_inputs(
    ws: Workspace,
    inputs: RankInputs,
    params: RankParams = RankParams(),
    progress: Progress | None = None,
    cancel: Cancel | None = None,
    extra_summary: dict[str, Any] | None = None,
) -> Ranking:
    """The ranking of `inputs`, from the cache when it was computed before, else computed and saved."""
    folder = rankings_dir(ws) / ranking_key(inputs, params)
    hit = load_ranking(folder)
    if hit is not None:
        hit.summary["cached"] = True
        return hit
    table, summary, arrays = compute_ranking(inputs, params, progress, cancel)
    summary.update(extra_summary or {})
    ranking = save_ranking(folder, table, summary, inputs, arrays)
    ranking.summary["cached"] = False
    return ranking
