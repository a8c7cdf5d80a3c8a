"""The reference a slide is compared with: the run's dataset, its slides embedded by the same checkpoint.

The reference slide embeddings are core.embed.compute's cached ones (the Explorer and Gene rankings pages use the
same entry); when missing they are computed once (tiling the dataset first if needed) and cached there.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
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
    # Rows of the full reference (embeddings, cached maps) these slides are; None: every slide.
    rows: np.ndarray | None = None
    excluded_ids: tuple[str, ...] = ()  # slides left out: the predicted slide's donor's


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


@dataclass(frozen=True)
class SlideDonor:
    """Whose slide is predicted: the dataset sample it is (None for an upload not in the dataset), its donor."""

    sample_id: str | None
    subject_id: str | None
    how: str  # how it was found, or why not


def slide_donor(cohort: Cohort, path: Path, sha256: str) -> SlideDonor:
    """The dataset sample whose slide file is `path` (same file, else same size and SHA-256): an upload of a
    dataset slide is found too. Only files of the same size are hashed (usually none)."""
    from core.predict.pipeline import file_sha256

    samples = cohort.samples[cohort.samples["has_slide"].astype(bool)]
    paths = samples["slide_path"].astype(str)
    target = Path(path).resolve()
    same = samples[[Path(p).resolve() == target for p in paths]]
    how = "the slide file is the dataset's"
    if same.empty:
        size = target.stat().st_size
        sized = [i for i, p in zip(samples.index, paths, strict=True) if _size(p) == size]
        same = samples.loc[[i for i in sized if file_sha256(samples.at[i, "slide_path"]) == sha256]]
        how = "the slide's content (SHA-256) is a dataset slide's"
    if same.empty:
        return SlideDonor(None, None, "the slide is not in the reference dataset (no donor known): nothing left out")
    row = same.iloc[0]
    return SlideDonor(str(row["sample_id"]), str(row["subject_id"]), how)


def _size(path: str) -> int:
    try:
        return Path(path).stat().st_size
    except OSError:
        return -1


def without_donor(reference: Reference, subject_id: str) -> Reference:
    """The reference less every slide of `subject_id` (unchanged when the donor has none in it)."""
    subjects = (reference.cohort.samples.drop_duplicates("sample_id").set_index("sample_id")["subject_id"]
                .astype(str).reindex(reference.sample_ids).fillna("").to_numpy())
    keep = subjects != subject_id
    if keep.all():
        return reference
    rows = np.flatnonzero(keep) if reference.rows is None else reference.rows[keep]
    return replace(reference, sample_ids=reference.sample_ids[keep], values=reference.values[keep],
                   tissues=reference.tissues[keep], slide_paths=reference.slide_paths[keep], rows=rows,
                   excluded_ids=tuple(reference.excluded_ids) + tuple(reference.sample_ids[~keep].tolist()))


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
