"""core.ranking.saved: the rankings already saved for one checkpoint of a run (what Predict offers first)."""

from __future__ import annotations

import json
import os
from dataclasses import asdict

from core.base.config import Workspace
from core.ranking.cv import RankParams
from core.ranking.saved import saved_ranking_params
from core.ranking.store import rankings_dir


def _save(ws: Workspace, name: str, source: dict, params: RankParams, age_s: float) -> None:
    folder = rankings_dir(ws) / name
    folder.mkdir(parents=True)
    path = folder / "summary.json"
    path.write_text(json.dumps({"params": asdict(params), "source": source}))
    os.utime(path, (1e9 - age_s, 1e9 - age_s))


def test_only_this_checkpoints_rankings_newest_first(ws: Workspace):
    run = ws.runs_dir / "run-a"
    run.mkdir(parents=True)
    mine = {"kind": "checkpoint", "run_dir": str(run), "epoch": 2}
    quick = RankParams(folds=3, repeats=1)
    _save(ws, "r1", mine, RankParams(), age_s=100)
    _save(ws, "r2", mine, quick, age_s=10)
    _save(ws, "r3", {**mine, "epoch": 3}, RankParams(components=7), age_s=1)
    _save(ws, "r4", {"kind": "random", "run_dir": None, "epoch": None}, RankParams(components=9), age_s=1)
    _save(ws, "r5", {**mine, "run_dir": str(ws.runs_dir / "run-b")}, RankParams(components=11), age_s=1)
    (rankings_dir(ws) / "broken").mkdir()
    (rankings_dir(ws) / "broken" / "summary.json").write_text("{not json")
    assert saved_ranking_params(ws, run, 2) == [quick, RankParams()]
    assert saved_ranking_params(ws, run, 3) == [RankParams(components=7)]
    assert saved_ranking_params(ws, run, 1) == []
