"""A prediction as a background job (kind "predict") that never takes the workspace's one-writer lock."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from core import jobs
from core.base.config import Workspace
from core.base.errors import DataError
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


def _request_part(argv: list[str]) -> list[str]:
    """What of a predict command line decides its result: not the slide's path (argv[1]), whether the file is
    deleted afterwards, nor the name the file was uploaded under."""
    values = list(argv)
    if "--name" in values:
        at = values.index("--name")
        values = values[:at] + values[at + 2:]
    return [v for i, v in enumerate(values) if i != 1 and v != "--delete-slide"]


def same_request(argv: list[str], expected: list[str]) -> bool:
    """Whether a predict job's argv asks for the expected request (its slide path and delete flag aside)."""
    return _request_part(argv) == _request_part(expected)


def find_prediction_job(ws: Workspace, sha256: str, request: PredictRequest,
                        known: str | Path | None = None) -> jobs.Job | None:
    """The job `known` (the folder of the job a session launched for this slide and request) while it exists,
    else a running predict job of another session (a reload) for the same slide content and request: its
    argv names the SHA-256 and every setting."""
    if known and Path(known).is_dir():
        return jobs.Job(known)  # its status names the workspace whose lock it probes
    expected = predict_argv(None, "slide", request, sha256=sha256)
    for job in jobs.list_jobs(ws, kind=KIND)[:20]:
        try:
            status = job.status()
        except DataError:
            continue
        if status.get("state") == jobs.RUNNING and same_request(status.get("argv") or [], expected):
            return job
    return None


def last_attempt(ws: Workspace, sha256: str, request: PredictRequest) -> dict[str, Any] | None:
    """The newest prediction of this slide content and request when it failed or was cancelled (its status and
    log tail), else None."""
    return jobs.last_failure(ws, KIND, predict_argv(None, "slide", request, sha256=sha256), same=_request_part)
