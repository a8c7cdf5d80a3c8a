"""The one call that ranks genes for a feature source: embed what is missing (the source and its
random-weights baseline), join the embeddings to the filtered logTPM, and return the cached ranking or
compute and save it. The CLI (`python -m core rank`) and the page's background job both end here; the
page's cache-only lookup (core.ranking.jobs.cached_ranking_for) builds the same inputs, so it finds it."""

from __future__ import annotations

from pathlib import Path

from core.base.config import Workspace
from core.base.errors import DataError
from core.base.types import Cancel, Progress
from core.data.dataset import Cohort, load_cohort
from core.embed.features import FeatureSource
from core.ranking.cv import RankParams
from core.ranking.inputs import ranking_inputs
from core.ranking.store import Ranking, rank_inputs


def _phase(progress: Progress | None, name: str) -> Progress | None:
    if progress is None:
        return None

    def report(done: int, total: int, message: str = "") -> None:
        progress(done, total, f"{name}: {message}" if message else name)

    return report


def rank_genes(
    ws: Workspace,
    data_dir: str | Path,
    source: FeatureSource,
    params: RankParams = RankParams(),
    cohort: Cohort | None = None,
    progress: Progress | None = None,
    cancel: Cancel | None = None,
    with_baseline: bool = True,
) -> Ranking:
    """The ranking of every filtered gene of `data_dir`'s cohort from `source`'s slide embeddings.

    Cached under the workspace by (embeddings, random-weights embeddings, aligned samples, filtered
    logTPM, params, ranking code version): a second call with the same inputs reads it back
    (`summary["cached"]` True). Embeddings that are missing are computed first (tiling if needed),
    reporting progress as "embeddings: ..." / "random-weights embeddings: ..." then "ranking: ...".
    With `with_baseline`, the random-weights features of the same architecture (core.ranking.jobs.
    baseline_source) are ranked on the same folds, which gives `r2_random` and SEQUOIA's `recovered`.
    DataError when the cohort cannot be ranked (no expression, too few donors for the folds, ...).
    """
    from core.embed.compute import slide_embeddings
    from core.ranking.jobs import baseline_source, check_params

    data_dir = Path(data_dir)
    if cohort is None:
        cohort = load_cohort(data_dir, ws)
    if cohort.files.expression_gct is None:  # before embedding anything (minutes on a large cohort)
        raise DataError(cohort.files.root, "no expression file (*.gct or *.gct.gz): there is nothing to rank")
    slides = slide_embeddings(ws, data_dir, source, _phase(progress, "embeddings"), cancel)
    baseline = baseline_source(source) if with_baseline else None
    random_slides = None
    if baseline is not None:
        random_slides = slide_embeddings(ws, data_dir, baseline, _phase(progress, "random-weights embeddings"),
                                         cancel)
    inputs = ranking_inputs(cohort, slides, random_slides)
    check_params(params, int(inputs.samples["subject_id"].nunique()))
    extra = {"source": source.to_dict(), "baseline": None if baseline is None else baseline.to_dict()}
    return rank_inputs(ws, inputs, params, _phase(progress, "ranking"), cancel, extra_summary=extra)
