"""Embedding as a background job: what the Explorer page calls. A cancelled job keeps its finished rows;
launching the same source again resumes from them (core.embed.compute keeps the partial result on disk)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from core import jobs
from core.base.config import Workspace
from core.embed.features import FeatureSource

KIND = "embed"


def launch_embedding(ws: Workspace, data_dir: str | Path, source: FeatureSource) -> jobs.Job:
    """Start `python -m core embed` for `source` as the workspace's one background job (JobBusyError
    names the running job). The job's result is the CLI's JSON (tiles, slides, dim, scores, ...)."""
    return jobs.launch(ws, KIND, embed_argv(data_dir, source))


def launch_separation_across_epochs(ws: Workspace, data_dir: str | Path, run_dir: str | Path,
                                    epochs: list[int] | None = None) -> jobs.Job:
    """Embed every checkpoint of a run (or `epochs`) and random weights, and score each (slides and tiles);
    result: {"epochs": [rows]}. Each embedding's scores are also cached (core.embed.separability.scored_epochs)."""
    return jobs.launch(ws, KIND, embed_argv(data_dir, FeatureSource.checkpoint(run_dir), all_epochs=True,
                                               epochs=epochs))


def embed_argv(data_dir: str | Path, source: FeatureSource, *, all_epochs: bool = False,
               epochs: list[int] | None = None) -> list[str]:
    """The `embed` command line for `source` (what pages hand to core.jobs.launch)."""
    argv = ["embed", "--data", str(data_dir), "--json"]
    if source.kind == "checkpoint":
        argv += ["--run", str(source.run_dir), "--epoch", str(source.epoch)]
    elif source.kind == "timm":
        argv += ["--timm", str(source.timm_name), "--timm-weights", str(source.weights_file)]
    else:
        argv += ["--weights", source.kind, "--arch", str(source.arch), "--seed", str(source.seed)]
    if source.kind != "checkpoint":
        argv += ["--image-size", str(source.image_size)]
    if not all_epochs:
        return argv
    return [*argv, "--all-epochs"] + (["--epochs", ",".join(str(e) for e in epochs)] if epochs else [])


def last_attempt(ws: Workspace, data_dir: str | Path, source: FeatureSource, *, all_epochs: bool = False,
                 epochs: list[int] | None = None) -> dict[str, Any] | None:
    """The newest embedding of `source` (or scoring across epochs) when it failed or was cancelled (its status
    and log tail), else None."""
    return jobs.last_failure(ws, KIND, embed_argv(data_dir, source, all_epochs=all_epochs, epochs=epochs))
