"""Which gene rankings are already saved for a trained run's checkpoint: what the Predict page offers as "that
run's ranking" (reads each saved ranking's summary.json only; never loads a table)."""

from __future__ import annotations

import json
from dataclasses import fields
from pathlib import Path

from core.base.config import Workspace
from core.ranking.cv import RankParams
from core.ranking.store import SUMMARY_JSON, rankings_dir


def saved_ranking_params(ws: Workspace, run_dir: str | Path, epoch: int) -> list[RankParams]:
    """The parameters of every finished ranking of the run's checkpoint `epoch` (the run known by its id, the
    folder's name), newest first, one entry per distinct parameters."""
    run = Path(run_dir).resolve()
    found: list[tuple[float, RankParams]] = []
    for summary_path in rankings_dir(ws).glob(f"*/{SUMMARY_JSON}"):
        try:
            summary = json.loads(summary_path.read_text())
            mtime = summary_path.stat().st_mtime
        except (OSError, ValueError):
            continue
        source = summary.get("source") or {}
        if source.get("kind") != "checkpoint" or source.get("epoch") != epoch or not source.get("run_dir"):
            continue
        if Path(source["run_dir"]).name != run.name:  # run ids are unique in a workspace (which may have moved)
            continue
        names = {f.name for f in fields(RankParams)}
        params = RankParams(**{k: v for k, v in (summary.get("params") or {}).items() if k in names})
        found.append((mtime, params))
    ordered: list[RankParams] = []
    for _, params in sorted(found, key=lambda item: -item[0]):
        if params not in ordered:
            ordered.append(params)
    return ordered
