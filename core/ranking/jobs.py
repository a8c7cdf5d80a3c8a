"""Rankings for the page: find a cached one without computing anything (every page rerun), or start
`python -m core rank ...` as the workspace's one background job (which embeds what is missing first)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from core import jobs
from core.base.config import Workspace
from core.base.errors import DataError
from core.data.dataset import Cohort
from core.embed.features import FeatureSource
from core.ranking.cv import RankParams
from core.ranking.store import Ranking

KIND = "rank"


def baseline_source(source: FeatureSource) -> FeatureSource | None:
    """The random-weights features a source is judged against (SEQUOIA's rule): the same architecture and
    input size with seeded random weights; None when the source is random weights itself or has no
    architecture of ours (a timm model)."""
    if source.kind == "random" or source.arch is None:
        return None
    return FeatureSource.random(source.arch, 0, source.image_size)


@dataclass
class Lookup:
    """What the page found for one (source, params): the ranking, or which part is still missing."""

    ranking: Ranking | None
    missing: str = ""  # "tiles", "embeddings", "baseline embeddings" or "ranking" while ranking is None
    warnings: tuple[str, ...] = ()
    folder: Path | None = None  # where the ranking is (or will be) saved, once the embeddings are known


def cached_ranking_for(ws: Workspace, data_dir: str | Path, cohort: Cohort, source: FeatureSource,
                       params: RankParams) -> Lookup:
    """The cached ranking of `source` on `cohort` with `params`; never embeds, tiles or fits anything.
    DataError when the inputs cannot be ranked at all (no expression, too few donors, ...)."""
    from core.embed import compute as embed
    from core.ranking.inputs import ranking_inputs
    from core.ranking.store import load_ranking, ranking_key, rankings_dir

    if not is_tiled(ws, data_dir, cohort):
        return Lookup(None, "tiles")
    slides = embed.cached_slide_embeddings(ws, data_dir, source)
    if slides is None:
        return Lookup(None, "embeddings")
    baseline = baseline_source(source)
    random_slides = None
    if baseline is not None:
        random_slides = embed.cached_slide_embeddings(ws, data_dir, baseline)
        if random_slides is None:
            return Lookup(None, "baseline embeddings")
    inputs = ranking_inputs(cohort, slides, random_slides)
    check_params(params, int(inputs.samples["subject_id"].nunique()))
    folder = rankings_dir(ws) / ranking_key(inputs, params)
    return Lookup(load_ranking(folder), "ranking", tuple(inputs.warnings), folder)


def is_tiled(ws: Workspace, data_dir: str | Path, cohort: Cohort) -> bool:
    """Whether the dataset's slides have a saved tile index (with the parameters the dataset uses)."""
    from core.tiles import index as tiling

    slides = cohort.samples[cohort.samples["has_slide"].astype(bool)]
    return tiling.find_tile_index(slides, tiling.dataset_tiling_params(ws, data_dir), ws) is not None


def check_params(params: RankParams, donors: int) -> None:
    """DataError when the folds cannot be filled (donor-grouped: at most one fold per donor)."""
    if params.folds < 2:
        raise DataError(None, "cross-validation needs at least 2 folds")
    if donors < params.folds:
        raise DataError(None, f"{donors} donors cannot fill {params.folds} donor-grouped folds: choose at most "
                              f"{donors} folds")
    if params.repeats < 1 or params.components < 1:
        raise DataError(None, "repeats and components must be at least 1")


NONLINEAR_FLAG = "--nonlinear-top"


def rank_argv(data_dir: str | Path, source: FeatureSource, params: RankParams, nonlinear_top: int = 0) -> list[str]:
    """The `rank` command line for a source and parameters (what the page hands to core.jobs.launch); with
    `nonlinear_top`, the job also fits kernel ridge for that many best genes (saved beside the ranking)."""
    argv = ["rank", "--data", str(data_dir), "--components", str(params.components), "--folds", str(params.folds),
            "--repeats", str(params.repeats), "--json"]
    if nonlinear_top > 0:
        argv += [NONLINEAR_FLAG, str(int(nonlinear_top))]
    if source.kind == "checkpoint":
        argv += ["--run", str(source.run_dir), "--epoch", str(source.epoch)]
    elif source.kind == "timm":
        argv += ["--timm", str(source.timm_name), "--timm-weights", str(source.weights_file),
                 "--image-size", str(source.image_size)]
    else:
        argv += ["--weights", source.kind, "--arch", str(source.arch), "--seed", str(source.seed),
                 "--image-size", str(source.image_size)]
    return argv


def _without_nonlinear(argv: list[str]) -> list[str]:
    if NONLINEAR_FLAG not in argv:
        return argv
    at = argv.index(NONLINEAR_FLAG)
    return argv[:at] + argv[at + 2:]


def last_attempt(ws: Workspace, data_dir: str | Path, source: FeatureSource, params: RankParams,
                 nonlinear_top: int | None = None) -> dict | None:
    """The status of the latest `rank` job for exactly this request when it failed or was cancelled (so the
    page can say why there is no ranking), else None. With `nonlinear_top` None, a job that also fitted
    kernel ridge counts as a request for the ranking; with a number, only a job with that --nonlinear-top."""
    argv = rank_argv(data_dir, source, params, nonlinear_top or 0)
    return jobs.last_failure(ws, KIND, argv, same=_without_nonlinear if nonlinear_top is None else None)


def launch_ranking(ws: Workspace, data_dir: str | Path, source: FeatureSource, params: RankParams,
                   nonlinear_top: int = 0) -> jobs.Job:
    """Start the ranking (and the embeddings it needs; with `nonlinear_top`, then kernel ridge for that many
    best genes) as the one background job; JobBusyError names the running job."""
    return jobs.launch(ws, KIND, rank_argv(data_dir, source, params, nonlinear_top))
