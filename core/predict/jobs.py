"""A prediction as a background job (kind "predict") that never takes the workspace's one-writer lock."""

from __future__ import annotations

from pathlib import Path

from core import jobs
from core.base.config import Workspace
from core.predict.request import PredictRequest

KIND = "predict"


def predict_argv(data_dir: str | Path | None, slide_path: str | Path, request: PredictRequest, *,
                 delete_slide: bool = False, sha256: str | None = None, name: str | None = None) -> list[str]:
    """The `predict` command line for a request (every setting spelled out, so the job computes the same key)."""
    rank = request.ranking
    argv = ["predict", str(Path(slide_path).resolve()), "--run", str(request.run_dir),
            f"--r2-threshold={float(request.r2_threshold)!r}", "--neighbours", str(request.neighbours),
            "--map", request.map_method, "--components", str(rank.components), "--folds", str(rank.folds),
            "--repeats", str(rank.repeats), "--cv-seed", str(rank.seed), "--clusters", str(rank.clusters),
            "--criterion", rank.criterion, "--json"]
    if request.epoch is not None:
        argv += ["--epoch", str(request.epoch)]
    if not rank.permutation_null:
        argv.append("--no-permutation")
    if request.compute_ranking:
        argv.append("--compute-ranking")
    if data_dir is not None:
        argv += ["--data", str(Path(data_dir).resolve())]
    if delete_slide:
        argv.append("--delete-slide")
    if sha256:
        argv += ["--sha256", sha256]
    if name:
        argv += ["--name", name]
    return argv


def launch_prediction(ws: Workspace, data_dir: str | Path | None, slide_path: str | Path, request: PredictRequest,
                      delete_slide: bool = False, sha256: str | None = None, name: str | None = None) -> jobs.Job:
    """Start `python -m core predict ...` beside whatever else runs (its own lock, not the worker lock).
    With `delete_slide` the worker deletes the slide file when it ends (an upload's temp file). The job's
    result is the CLI's JSON, with `folder` for core.predict.load_prediction. `name`: the user's file name,
    reported and named in errors instead of the slide's (temp) path."""
    argv = predict_argv(data_dir, slide_path, request, delete_slide=delete_slide, sha256=sha256, name=name)
    return jobs.launch(ws, KIND, argv, exclusive=False)
