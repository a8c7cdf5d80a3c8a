"""One map request from the page or the CLI: which level, which features, which layout.

`points_for` builds the request's PointSet: with compute=False it only reads caches (what a page calls
on every rerun), with compute=True it embeds / tiles as needed (what the `map` worker calls).
`launch_map` runs `python -m core map ...` as the workspace's one background job.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from core import jobs
from core.base.config import Workspace
from core.base.errors import DataError, DataWarning
from core.base.types import Cancel, Progress
from core.data.dataset import Cohort
from core.data.genes import GeneFilterParams
from core.embed.features import FeatureSource
from core.maps.points import LEVELS, PointSet, add_split, genes_level, slides_level, tiles_level, unified_level
from core.maps.reduce import MapParams

KIND = "map"


@dataclass(frozen=True)
class MapRequest:
    level: str = "slides"
    params: MapParams = field(default_factory=MapParams)
    source: FeatureSource | None = None  # the image features; unused at the genes level
    run_dir: str | None = None  # colours points by this run's train / validation / test split
    limit: int | None = None  # tiles: draw a seeded random subset of this many
    subset_seed: int = 0
    weight: float = 0.5  # unified: the image block's share of the variance
    genes: GeneFilterParams = field(default_factory=GeneFilterParams)

    def checked(self) -> MapRequest:
        if self.level not in LEVELS:
            raise DataError(None, f"unknown level {self.level!r} (choose from {', '.join(LEVELS)})")
        if self.level != "genes" and self.source is None:
            raise DataError(None, f"the {self.level} level needs image features: a run, random weights or a model")
        self.params.checked()
        return self


def tile_index_path(ws: Workspace, data_dir: str | Path, cohort: Cohort) -> Path | None:
    """Where the dataset's saved tile index is, or None before tiling (reads no slide, loads no index)."""
    from core.tiles import index as tiling

    params = tiling.dataset_tiling_params(ws, data_dir)
    return tiling.find_tile_index(cohort.samples[cohort.samples["has_slide"].astype(bool)], params, ws)


def tile_index_for(ws: Workspace, data_dir: str | Path, cohort: Cohort) -> pd.DataFrame | None:
    """The dataset's saved tile index (QC metrics, slide paths), or None before tiling."""
    from core.tiles import index as tiling

    path = tile_index_path(ws, data_dir, cohort)
    return tiling.load_tile_index(path) if path is not None else None


def points_for(ws: Workspace, data_dir: str | Path, cohort: Cohort, request: MapRequest, compute: bool = False,
               progress: Progress | None = None, cancel: Cancel | None = None) -> PointSet | None:
    """The request's points, or None when compute is False and its embeddings are not cached yet."""
    from core.embed import compute as embed

    request = request.checked()
    data_dir = Path(data_dir)
    samples = cohort.samples
    if request.level == "genes":
        points = genes_level(cohort, request.genes)
    elif request.level == "tiles":
        tiles = (embed.tile_embeddings(ws, data_dir, request.source, progress, cancel) if compute
                 else embed.cached_tile_embeddings(ws, data_dir, request.source))
        if tiles is None:
            return None
        points = tiles_level(tiles, samples, tile_index_for(ws, data_dir, cohort), request.limit, request.subset_seed,
                             label=request.source.label)
        if request.source.kind == "checkpoint":  # embeddings held in memory only (no path) have no head beside them
            points = _with_predictions(points, request, Path(tiles.path).parent if tiles.path else None)
    else:
        slides = (embed.slide_embeddings(ws, data_dir, request.source, progress, cancel) if compute
                  else embed.cached_slide_embeddings(ws, data_dir, request.source))
        if slides is None:
            return None
        points = slides_level(slides, samples, label=request.source.label)
        if request.level == "slides" and request.source.kind == "checkpoint":
            points = _with_predictions(points, request, embed.cached_folders(ws, data_dir, [request.source])[0])
        if request.level == "unified":
            points = unified_level(points, genes_level(cohort, request.genes), request.weight)
    return add_split(points, request.run_dir, samples)


def _with_predictions(points: PointSet, request: MapRequest, folder: Path | None) -> PointSet:
    """Predicted tissue and correct / wrong from a checkpoint's head (core.embed.heads); a checkpoint whose head
    cannot be read leaves the map without them, warned."""
    from core.embed.heads import add_predictions

    try:
        return add_predictions(points, request.source, folder)
    except DataError as exc:
        warnings.warn(f"{exc}; no predicted tissue colouring", DataWarning, stacklevel=2)
        return points


def map_argv(data_dir: str | Path, request: MapRequest) -> list[str]:
    """The `map` command line for a request (what the page hands to core.jobs.launch)."""
    params = request.params
    argv = ["map", "--data", str(data_dir), "--level", request.level, "--method", params.method,
            "--pca-components", str(params.pca_components), "--n-neighbors", str(params.n_neighbors),
            "--min-dist", str(params.min_dist), "--perplexity", str(params.perplexity),
            "--map-seed", str(params.seed), "--weight", str(request.weight),
            "--min-log-tpm", str(request.genes.min_log_tpm), "--min-sd", str(request.genes.min_sd), "--json"]
    if request.limit:
        argv += ["--subset", str(request.limit), "--subset-seed", str(request.subset_seed)]
    source = request.source
    if source is not None:
        if source.kind == "checkpoint":
            argv += ["--run", str(source.run_dir), "--epoch", str(source.epoch)]
        elif source.kind == "timm":
            argv += ["--timm", str(source.timm_name), "--timm-weights", str(source.weights_file)]
        else:
            argv += ["--weights", source.kind, "--arch", str(source.arch), "--seed", str(source.seed),
                     "--image-size", str(source.image_size)]
    if request.run_dir and (source is None or source.kind != "checkpoint"):
        argv += ["--split-run", str(request.run_dir)]
    return argv


def launch_map(ws: Workspace, data_dir: str | Path, request: MapRequest) -> jobs.Job:
    """Start the map (and any embedding it needs) as the one background job; JobBusyError names the
    running job."""
    return jobs.launch(ws, KIND, map_argv(data_dir, request.checked()))


def last_attempt(ws: Workspace, data_dir: str | Path, request: MapRequest) -> dict[str, Any] | None:
    """The newest map of `request` when it failed or was cancelled (its status and log tail), else None."""
    return jobs.last_failure(ws, KIND, map_argv(data_dir, request))
