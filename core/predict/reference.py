"""The reference a slide is compared with: the run's dataset, its slides embedded by the same checkpoint.

The reference slide embeddings are core.embed.compute's cached ones (the Explorer and Gene rankings pages use the
same entry); when missing they are computed once (tiling the dataset first if needed) and cached there.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from core.base.config import Workspace
from core.base.errors import DataError
from core.base.types import Cancel, Progress
from core.data.dataset import Cohort, load_cohort
from core.embed.features import FeatureSource


@dataclass
class Reference:
    data_dir: Path
    cohort: Cohort
    sample_ids: np.ndarray  # reference slides with an embedding, sorted
    values: np.ndarray  # float32 (n, dim): slide embeddings (mean of their tiles)
    tissues: np.ndarray  # str per slide
    slide_paths: np.ndarray  # str per slide ("" when unknown)
    key: str  # the slides-level points key (what the Explorer's maps are cached under)
    embeddings: object  # core.embed.compute.SlideEmbeddings


def check_tissues_fit(cohort: Cohort, data_dir: Path, classes: tuple[str, ...]) -> list[str]:
    """Warnings about tissues the reference lacks; DataError when the run and the dataset share none."""
    notes: list[str] = []
    tissues = set(cohort.samples.loc[cohort.samples["has_slide"].astype(bool), "tissue"].astype(str))
    shared = tissues & set(classes)
    if not shared:
        raise DataError(data_dir, f"the run's tissues ({', '.join(sorted(classes))}) do not fit this reference "
                                  f"dataset ({', '.join(sorted(tissues)) or 'no slides'}): no tissue in common")
    if len(shared) < len(classes):
        missing = sorted(set(classes) - shared)
        notes.append(f"the reference dataset has no slides of {len(missing)} of the run's tissues "
                     f"({', '.join(missing[:5])})")
    return notes


def load_reference(ws: Workspace, data_dir: Path, source: FeatureSource, classes: tuple[str, ...],
                   progress: Progress | None = None,
                   cancel: Cancel | None = None, cohort: Cohort | None = None
                   ) -> tuple[Reference, list[str]]:
    """(the reference, warnings). DataError when the run's tissues and the dataset's do not fit."""
    from core.embed import compute as embed
    from core.maps.points import slides_level

    cohort = cohort if cohort is not None else load_cohort(data_dir, ws)
    notes = check_tissues_fit(cohort, data_dir, classes)
    slides = embed.cached_slide_embeddings(ws, data_dir, source)
    if slides is None:
        slides = embed.slide_embeddings(ws, data_dir, source, progress, cancel)
    if len(slides.sample_ids) < 2:
        raise DataError(data_dir, "fewer than 2 reference slides have embeddings: nothing to compare with")
    samples = cohort.samples.set_index(cohort.samples["sample_id"].astype(str))
    ids = np.asarray(slides.sample_ids).astype(str)
    tissue = (np.asarray(slides.tissues).astype(str) if slides.tissues is not None
              else samples["tissue"].reindex(ids).fillna("").astype(str).to_numpy())
    paths = samples["slide_path"].reindex(ids).fillna("").astype(str).to_numpy()
    key = slides_level(slides, cohort.samples).key
    reference = Reference(data_dir, cohort, ids, np.asarray(slides.values, np.float32), tissue, paths, key, slides)
    return reference, notes


def nearest(reference: Reference, point: np.ndarray, k: int) -> pd.DataFrame:
    """The k reference slides nearest to `point` in embedding space (Euclidean), nearest first."""
    distance = np.linalg.norm(reference.values.astype(np.float64) - np.asarray(point, np.float64), axis=1)
    order = np.argsort(distance, kind="stable")[:k]
    return pd.DataFrame({"sample_id": reference.sample_ids[order], "tissue": reference.tissues[order],
                         "distance": distance[order], "slide_path": reference.slide_paths[order]})


def reference_nn_distances(values: np.ndarray) -> np.ndarray:
    """Each reference slide's distance to its nearest other reference slide."""
    x = np.asarray(values, np.float64)
    squared = (x * x).sum(axis=1)
    d2 = np.maximum(squared[:, None] + squared[None, :] - 2 * x @ x.T, 0.0)
    np.fill_diagonal(d2, np.inf)
    return np.sqrt(d2.min(axis=1))
