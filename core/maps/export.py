"""Export a map: coordinates with metadata as CSV, the figure as HTML, the slide level as an AnnData .h5ad.

The .h5ad is written with h5py following the AnnData on-disk format (encoding-type / encoding-version
attributes on every element), so scanpy, anndata or cellxgene open it without anndata being installed
here.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import plotly.graph_objects as go

from core.base.errors import DataError
from core.base.fileio import atomic_path
from core.maps.points import PointSet

# Columns with at most this many distinct strings are written as categoricals (what cellxgene colours by).
_MAX_CATEGORIES = 200


def coordinates_table(points: PointSet, coords: np.ndarray, extra: Mapping[str, np.ndarray] | None = None
                      ) -> pd.DataFrame:
    """One row per point: id, x, y, then the point's metadata (and any extra columns, e.g. a gene)."""
    coords = np.asarray(coords)
    if coords.shape != (len(points), 2):
        raise DataError(None, f"coordinates have shape {coords.shape}, expected ({len(points)}, 2)")
    table = pd.DataFrame({"id": points.ids, "map_x": coords[:, 0], "map_y": coords[:, 1]})
    meta = points.meta.drop(columns=["id"], errors="ignore").reset_index(drop=True)
    table = pd.concat([table, meta], axis=1)
    for name, values in (extra or {}).items():
        table[name] = np.asarray(values)
    table.insert(0, "level", points.level)
    return table


def coordinates_csv(points: PointSet, coords: np.ndarray, extra: Mapping[str, np.ndarray] | None = None) -> bytes:
    return coordinates_table(points, coords, extra).to_csv(index=False).encode()


def figure_html(fig: go.Figure) -> str:
    """A standalone HTML page of the figure (plotly.js inlined: opens offline)."""
    return fig.to_html(include_plotlyjs=True, full_html=True)


# ---------------------------------------------------------------- AnnData on-disk format


def _attrs(node: h5py.HLObject, kind: str, version: str) -> None:
    node.attrs["encoding-type"] = kind
    node.attrs["encoding-version"] = version


def _write_array(group: h5py.Group, name: str, values: np.ndarray) -> None:
    _attrs(group.create_dataset(name, data=np.asarray(values)), "array", "0.2.0")


def _write_strings(group: h5py.Group, name: str, values) -> None:
    data = np.asarray([str(v) for v in values], dtype=object)
    _attrs(group.create_dataset(name, data=data, dtype=h5py.string_dtype()), "string-array", "0.2.0")


def _write_column(group: h5py.Group, name: str, column: pd.Series) -> None:
    if pd.api.types.is_bool_dtype(column):
        _write_array(group, name, column.to_numpy(dtype=bool))
    elif pd.api.types.is_numeric_dtype(column):
        _write_array(group, name, column.to_numpy(dtype=np.float64 if column.isna().any() else None))
    else:
        text = column.fillna("").astype(str)
        categories = pd.unique(text)
        if len(categories) <= _MAX_CATEGORIES:
            sorted_categories = np.sort(categories)
            node = group.create_group(name)
            _attrs(node, "categorical", "0.2.0")
            node.attrs["ordered"] = False
            _write_strings(node, "categories", sorted_categories)
            codes = np.searchsorted(sorted_categories, text.to_numpy()).astype(np.int16)
            _write_array(node, "codes", codes)
        else:
            _write_strings(group, name, text)


def _write_dataframe(parent: h5py.Group, name: str, frame: pd.DataFrame, index: np.ndarray) -> None:
    group = parent.create_group(name)
    _attrs(group, "dataframe", "0.2.0")
    group.attrs["_index"] = "_index"
    group.attrs["column-order"] = np.asarray(list(frame.columns), dtype=object).astype(h5py.string_dtype()) \
        if len(frame.columns) else np.zeros(0, dtype=h5py.string_dtype())
    _write_strings(group, "_index", index)
    for column in frame.columns:
        _write_column(group, str(column), frame[column])


def _write_dict(parent: h5py.Group, name: str, arrays: Mapping[str, np.ndarray]) -> None:
    group = parent.create_group(name)
    _attrs(group, "dict", "0.1.0")
    for key, values in arrays.items():
        _write_array(group, key, values)


def _write_string(parent: h5py.Group, name: str, value: str) -> None:
    _attrs(parent.create_dataset(name, data=value, dtype=h5py.string_dtype()), "string", "0.2.0")


def write_h5ad(path: str | Path, slides: PointSet, maps: Mapping[str, np.ndarray],
               genes: PointSet | None = None, description: str = "") -> Path:
    """The slide level as AnnData: obs = slide metadata, obsm = "X_embedding" (the slide embeddings) and
    "X_<map>" coordinates, X and layers["log2_1p_tpm"] = filtered expression (var = genes) of slides
    that have it. Without `genes`, X has no variables. Slides without expression are left out when
    `genes` is given (cellxgene needs a full matrix); uns["left_out"] counts them."""
    for name, coords in maps.items():
        if np.asarray(coords).shape[0] != len(slides):
            raise DataError(None, f"map {name!r} has {np.asarray(coords).shape[0]} points, the slides {len(slides)}")
    rows = np.arange(len(slides))
    if genes is not None:
        gene_rows = pd.Index(genes.ids).get_indexer(slides.ids)
        rows = np.flatnonzero(gene_rows >= 0)
        matrix = np.asarray(genes.values, dtype=np.float32)[gene_rows[rows]]
        var_names = genes.meta.attrs.get("genes", np.array([f"gene_{i}" for i in range(matrix.shape[1])]))
        var = pd.DataFrame({"gene_ids": genes.meta.attrs.get("gene_ids", var_names)})
    else:
        matrix = np.zeros((len(rows), 0), dtype=np.float32)
        var_names, var = np.zeros(0, dtype=str), pd.DataFrame()
    if len(rows) == 0:
        raise DataError(None, "no slide has expression to export")
    obs = slides.meta.iloc[rows].drop(columns=["id"], errors="ignore").reset_index(drop=True)
    obsm = {"X_embedding": np.asarray(slides.values, dtype=np.float32)[rows]}
    obsm.update({f"X_{name}": np.asarray(coords, dtype=np.float32)[rows] for name, coords in maps.items()})
    path = Path(path)
    with atomic_path(path) as tmp:
        with h5py.File(tmp, "w") as handle:
            _attrs(handle, "anndata", "0.1.0")
            _write_array(handle, "X", matrix)
            _write_dataframe(handle, "obs", obs, slides.ids[rows])
            _write_dataframe(handle, "var", var, var_names)
            _write_dict(handle, "obsm", obsm)
            _write_dict(handle, "layers", {"log2_1p_tpm": matrix})
            for empty in ("obsp", "varm", "varp"):
                _write_dict(handle, empty, {})
            uns = handle.create_group("uns")
            _attrs(uns, "dict", "0.1.0")
            _write_string(uns, "description", description or slides.label)
            _attrs(uns.create_dataset("left_out", data=np.int64(len(slides) - len(rows))), "numeric-scalar", "0.2.0")
    return path
