"""Embedding as a background job: what the Explorer page calls. A cancelled job keeps its finished rows;
launching the same source again resumes from them (core.embed keeps the partial result on disk)."""

from __future__ import annotations

from pathlib import Path

from core import jobs
from core.cli.embed import embed_argv
from core.config import Workspace
from core.features import FeatureSource


def launch_embedding(ws: Workspace, data_dir: str | Path, source: FeatureSource) -> jobs.Job:
    """Start `python -m core embed` for `source` as the workspace's one background job (JobBusyError
    names the running job). The job's result is the CLI's JSON (tiles, slides, dim, scores, ...)."""
    return jobs.launch(ws, "embed", embed_argv(data_dir, source))


def launch_separation_across_epochs(ws: Workspace, data_dir: str | Path, run_dir: str | Path,
                                    epochs: list[int] | None = None) -> jobs.Job:
    """Embed every checkpoint of a run (or `epochs`) and random weights, and score each (slides and tiles);
    result: {"epochs": [rows]}. Each embedding's scores are also cached (core.separation.scored_epochs)."""
    return jobs.launch(ws, "embed", embed_argv(data_dir, FeatureSource.checkpoint(run_dir), all_epochs=True,
                                               epochs=epochs))
