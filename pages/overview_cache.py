"""What a rerun of the overview would otherwise rebuild, cached in the server process.

Streamlit reruns the whole page on every click, and building Plotly figures (templates, validation)
cost seconds per run. Each builder here is keyed by cheap identities only: a file's stat (path,
size, mtime) or its memoized content fingerprint, and small tables hashed by Streamlit; the big
inputs (tile index, cohort) are passed as `_`-prefixed arguments, which Streamlit does not hash.
`st.cache_resource` hands back the same object each run (no copy): callers treat results as
read-only. Figures are handed out frozen (`frozen`): `st.plotly_chart` turns a figure into a dict on
every run (a deep copy with every array base64-encoded, about half of a warm rerun's CPU time), so
a frozen figure builds that dict once.
"""

from __future__ import annotations

import io
import json
import threading
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import streamlit as st
from PIL import Image

from core.base import DataError, Workspace, file_fingerprint
from core.data import Cohort, GeneFilterParams, dataset
from core.data import figures as data_figures
from core.data import views as summary
from core.tiles import figures
from core.tiles import index as tiling
from core.tiles import views as tile_views

# (path, size, mtime_ns, inode): any rewrite of the index file moves its stat, so the stat names its content.
IndexKey = tuple[str, int, int, int]


class FrozenFigure(go.Figure):
    """A figure that is never changed after it is cached: its `to_dict()` (what st.plotly_chart
    serializes on each run) is built once and reused."""

    _frozen_dict: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        if self._frozen_dict is None:
            self._frozen_dict = super().to_dict()
        return self._frozen_dict


def frozen(figure: go.Figure) -> FrozenFigure:
    return FrozenFigure(figure)


# Values derived from one loaded cohort, kept while that cohort object lives: pages.common caches the
# cohort itself (reloaded as a new object when the dataset's files change), so a rerun gets the same
# object and its counts, demographics and tile-index lookup need not be recomputed (nor hashed by
# Streamlit, as cache arguments, on every run).
_BY_COHORT: dict[int, tuple[weakref.ref, dict[str, Any]]] = {}
_BY_COHORT_LOCK = threading.Lock()


def _cohort_memo(cohort: Cohort) -> dict[str, Any]:
    with _BY_COHORT_LOCK:
        entry = _BY_COHORT.get(id(cohort))
        if entry is None or entry[0]() is not cohort:
            for stale in [k for k, (ref, _) in _BY_COHORT.items() if ref() is None]:
                del _BY_COHORT[stale]
            entry = _BY_COHORT[id(cohort)] = (weakref.ref(cohort), {})
        return entry[1]


def _memo(cohort: Cohort, name: Any, build: Callable[[], Any]) -> Any:
    memo = _cohort_memo(cohort)
    if name not in memo:
        memo[name] = build()
    return memo[name]


def cohort_info(cohort: Cohort) -> dict[str, Any]:
    """core.data.dataset.cohort_info, once per loaded cohort."""
    return _memo(cohort, "info", lambda: dataset.cohort_info(cohort))


def find_tile_index(cohort: Cohort, params: tiling.TilingParams, ws: Workspace) -> Path | None:
    """core.tiles.index.find_tile_index of the cohort's slides. The index key (fingerprints, parameters) is
    computed once per cohort, params and slide stats: a rerun stats each slide (memoized fingerprints),
    then checks whether that index exists (it may have been built since the last run)."""
    slides = _memo(cohort, "slides", lambda: cohort.samples[cohort.samples["has_slide"]])
    if slides.empty:
        return None
    stats = tuple(_stat(path) for path in _memo(cohort, "slide_paths", lambda: slides["slide_path"].tolist()))
    identity = (json.dumps(tiling.params_to_dict(params), sort_keys=True, default=str), stats)
    key = _memo(cohort, ("index_key", identity), lambda: tiling.index_key(slides, params))
    return tiling.saved_index(key, ws)


def _stat(path: Any) -> tuple[int, int, int] | None:
    try:
        stat = Path(path).stat()
    except (OSError, TypeError):
        return None
    return stat.st_size, stat.st_mtime_ns, stat.st_ino


def demographic_figures_of(cohort: Cohort) -> list[go.Figure]:
    """The donor demographics bars, once per loaded cohort."""
    return _memo(cohort, "demographics", lambda: demographic_figures(summary.demographics(cohort.samples)))


def index_key(path: Path) -> IndexKey:
    stat = path.stat()
    return str(path), stat.st_size, stat.st_mtime_ns, stat.st_ino


@st.cache_resource(show_spinner=False, max_entries=4)
def tile_index(key: IndexKey) -> pd.DataFrame:
    """The saved tile index (read-only: shared by every session and rerun)."""
    return tiling.load_tile_index(Path(key[0]))


@st.cache_resource(show_spinner=False, max_entries=8)
def per_tissue_figure(info: dict[str, Any], key: IndexKey | None, _index: pd.DataFrame | None) -> go.Figure:
    return frozen(data_figures.per_tissue_counts_bar(summary.per_tissue_table(info, _index)))


@st.cache_resource(show_spinner=False, max_entries=8)
def demographic_figures(values: dict[str, pd.Series]) -> list[go.Figure]:
    return [frozen(data_figures.breakdown_bar(series, title)) for title, series in values.items()]


@st.cache_resource(show_spinner=False, max_entries=4)
def qc_view(key: IndexKey, _index: pd.DataFrame) -> dict[str, Any]:
    """Passed count, QC funnel, rejections per tissue and the tissue list of one tile index."""
    rejected = _index.loc[~_index["passed_qc"], "reason"].value_counts().to_dict()
    return {
        "passed": int(_index["passed_qc"].sum()),
        "funnel": frozen(figures.qc_funnel(len(_index), rejected)),
        "rejections": frozen(figures.rejections_per_tissue(_index)),
        "tissues": sorted(_index["tissue"].unique()),
    }


def jpeg_bytes(image: np.ndarray) -> bytes:
    """The JPEG st.image would encode from this array on every run (quality 100), encoded once."""
    out = io.BytesIO()
    Image.fromarray(image).save(out, format="JPEG", quality=100)
    return out.getvalue()


@st.cache_resource(show_spinner=False, max_entries=64)
def example_tiles(key: IndexKey, tissue: str, _index: pd.DataFrame) -> dict[str, list[tuple[Any, str]]]:
    """Per outcome, (160 px JPEG bytes or the DataError text, caption) of the example tiles of one tissue."""
    shown: dict[str, list[tuple[Any, str]]] = {}
    for outcome, rows in summary.example_tiles(_index, tissue).items():
        shown[outcome] = []
        for row in rows.itertuples():
            caption = row.sample_id if outcome == "passed" else f"{row.reason} · {row.sample_id}"
            try:
                shown[outcome].append((jpeg_bytes(tiling.read_tile(row._asdict(), out_size=160)), caption))
            except DataError as exc:
                shown[outcome].append((str(exc), caption))
    return shown


def slide_view(ws: Workspace, slide_path: str, index: pd.DataFrame | None,
               key: IndexKey | None, sample_id: str) -> tuple[go.Figure, dict[str, Any]]:
    """Thumbnail figure with the tile grid, and the slide's metadata (DataError for an unreadable slide)."""
    return _slide_view(str(ws.root), slide_path, file_fingerprint(slide_path), key, sample_id, ws, index)


@st.cache_resource(show_spinner=False, max_entries=32)
def _slide_view(root: str, slide_path: str, fingerprint: str, key: IndexKey | None, sample_id: str,
                _ws: Workspace, _index: pd.DataFrame | None) -> tuple[go.Figure, dict[str, Any]]:
    shown = tile_views.slide_thumbnail(_ws, slide_path)
    tiles = _index[_index["sample_id"] == sample_id] if _index is not None else pd.DataFrame()
    figure = figures.thumbnail_with_tiles(shown["thumb"], shown["scale"], tiles, shown["mask"])
    return frozen(figure), shown["meta"]


def gene_view(ws: Workspace, cohort: Cohort, params: GeneFilterParams) -> tuple[go.Figure, go.Figure]:
    """Gene-filter funnel and logTPM histogram, keyed by the GCT's and CSV's fingerprints."""
    files = cohort.files
    fingerprints = tuple(file_fingerprint(p) if p is not None and Path(p).is_file() else None
                         for p in (files.expression_gct, files.histology_csv))
    return _gene_view(str(ws.root), fingerprints, params.min_log_tpm, params.min_sd, ws, cohort)


@st.cache_resource(show_spinner=False, max_entries=16)
def _gene_view(root: str, fingerprints: tuple[str | None, ...], min_log_tpm: float, min_sd: float,
               _ws: Workspace, _cohort: Cohort) -> tuple[go.Figure, go.Figure]:
    funnel, sample = summary.gene_funnel(_ws, _cohort, GeneFilterParams(min_log_tpm=min_log_tpm, min_sd=min_sd))
    return (frozen(data_figures.gene_filter_funnel(funnel)),
            frozen(data_figures.log_tpm_histogram(np.asarray(sample), threshold=min_log_tpm)))
