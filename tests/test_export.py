"""core.maps.export: CSV of coordinates + metadata, standalone HTML, and the slide level as .h5ad read back."""

from __future__ import annotations

import io

import h5py
import numpy as np
import pandas as pd
import plotly.graph_objects as go
import pytest

from core.base.errors import DataError
from core.maps.export import coordinates_csv, coordinates_table, figure_html, write_h5ad
from core.maps.points import PointSet


def _slides(n: int = 6) -> PointSet:
    ids = np.array([f"GTEX-{i:04d}-0001" for i in range(n)])
    meta = pd.DataFrame({"id": ids, "sample_id": ids, "tissue": ["Lung", "Liver"] * (n // 2),
                         "subject_id": [f"GTEX-{i:04d}" for i in range(n)], "tiles": np.arange(n) + 10,
                         "pathology_notes": [f"note {i}" for i in range(n)]})
    values = np.random.default_rng(0).normal(size=(n, 7)).astype(np.float32)
    return PointSet("slides", ids, values, meta, key="k", label="random resnet50")


def _genes(ids: np.ndarray) -> PointSet:
    values = np.random.default_rng(1).random(size=(len(ids), 4)).astype(np.float32) * 10
    meta = pd.DataFrame({"id": ids, "sample_id": ids})
    meta.attrs["genes"] = np.array(["ALB", "SFTPC", "TG", "MYH7"])
    meta.attrs["gene_ids"] = np.array(["ENSG1.1", "ENSG2.1", "ENSG3.1", "ENSG4.1"])
    return PointSet("genes", ids, values, meta, key="g")


def test_coordinates_csv_round_trips_with_metadata():
    slides = _slides()
    coords = np.arange(12, dtype=np.float32).reshape(6, 2)
    table = pd.read_csv(io.BytesIO(coordinates_csv(slides, coords, extra={"ALB": np.ones(6)})))
    assert list(table.columns[:4]) == ["level", "id", "map_x", "map_y"]
    assert table["id"].tolist() == slides.ids.tolist()
    np.testing.assert_allclose(table[["map_x", "map_y"]].to_numpy(), coords)
    assert table["tissue"].tolist() == slides.meta["tissue"].tolist() and (table["ALB"] == 1).all()
    with pytest.raises(DataError, match="shape"):
        coordinates_table(slides, coords[:3])


def test_figure_html_is_standalone():
    html = figure_html(go.Figure(go.Scattergl(x=[1, 2], y=[3, 4])))
    assert "<html>" in html[:100] and "Plotly.newPlot" in html and "scattergl" in html


def _decode(node) -> np.ndarray:
    if isinstance(node, h5py.Group) and node.attrs["encoding-type"] == "categorical":
        categories = node["categories"].asstr()[...]
        return categories[node["codes"][...]]
    if node.attrs["encoding-type"] == "string-array":
        return node.asstr()[...]
    return node[...]


def test_h5ad_follows_the_anndata_layout(tmp_path):
    slides = _slides()
    genes = _genes(slides.ids[[5, 0, 1, 2, 3]])  # one slide without expression, another order
    umap = np.random.default_rng(2).normal(size=(6, 2))
    path = write_h5ad(tmp_path / "slides.h5ad", slides, {"umap": umap, "pca": umap * 2}, genes)
    with h5py.File(path, "r") as f:
        assert f.attrs["encoding-type"] == "anndata"
        obs = f["obs"]
        assert obs.attrs["encoding-type"] == "dataframe" and obs.attrs["_index"] == "_index"
        index = obs["_index"].asstr()[...]
        assert index.tolist() == slides.ids[[0, 1, 2, 3, 5]].tolist()  # slide order, slide 4 left out
        assert set(obs.attrs["column-order"]) == {"sample_id", "tissue", "subject_id", "tiles", "pathology_notes"}
        assert _decode(obs["tissue"]).tolist() == slides.meta["tissue"].iloc[[0, 1, 2, 3, 5]].tolist()
        np.testing.assert_array_equal(_decode(obs["tiles"]), [10, 11, 12, 13, 15])
        np.testing.assert_allclose(f["obsm"]["X_embedding"][...], slides.values[[0, 1, 2, 3, 5]])
        np.testing.assert_allclose(f["obsm"]["X_umap"][...], umap[[0, 1, 2, 3, 5]], rtol=1e-6)
        expected = genes.values[[1, 2, 3, 4, 0]]
        np.testing.assert_allclose(f["layers"]["log2_1p_tpm"][...], expected)
        np.testing.assert_allclose(f["X"][...], expected)
        assert f["var"]["_index"].asstr()[...].tolist() == ["ALB", "SFTPC", "TG", "MYH7"]
        assert f["uns"]["left_out"][()] == 1


def test_h5ad_without_expression_and_mismatched_maps(tmp_path):
    slides = _slides()
    path = write_h5ad(tmp_path / "s.h5ad", slides, {"umap": np.zeros((6, 2))})
    with h5py.File(path, "r") as f:
        assert f["X"].shape == (6, 0) and f["obsm"]["X_umap"].shape == (6, 2)
    with pytest.raises(DataError, match="umap"):
        write_h5ad(tmp_path / "bad.h5ad", slides, {"umap": np.zeros((5, 2))})


def test_h5ad_round_trips_through_anndata(tmp_path):
    """anndata (a dev requirement) reads the file back: obs values, categories and index, var, obsm, X."""
    anndata = pytest.importorskip("anndata")
    slides = _slides()
    genes = _genes(slides.ids[[5, 0, 1, 2, 3]])  # slide 4 has no expression: left out
    umap = np.random.default_rng(2).normal(size=(6, 2))
    path = write_h5ad(tmp_path / "a.h5ad", slides, {"umap": umap}, genes)
    adata = anndata.read_h5ad(path)
    kept = [0, 1, 2, 3, 5]
    assert adata.shape == (5, 4)
    assert adata.obs_names.tolist() == slides.ids[kept].tolist()
    assert list(adata.obs.columns) == ["sample_id", "tissue", "subject_id", "tiles", "pathology_notes"]
    expected_obs = slides.meta.drop(columns=["id"]).iloc[kept].reset_index(drop=True)
    for column in ("sample_id", "tissue", "subject_id", "pathology_notes"):
        assert isinstance(adata.obs[column].dtype, pd.CategoricalDtype), column
        assert adata.obs[column].tolist() == expected_obs[column].tolist(), column
    assert adata.obs["tissue"].cat.categories.tolist() == ["Liver", "Lung"]
    assert not adata.obs["tissue"].cat.ordered
    np.testing.assert_array_equal(adata.obs["tiles"].to_numpy(), [10, 11, 12, 13, 15])
    assert adata.var_names.tolist() == ["ALB", "SFTPC", "TG", "MYH7"]
    assert adata.var["gene_ids"].tolist() == ["ENSG1.1", "ENSG2.1", "ENSG3.1", "ENSG4.1"]
    assert sorted(adata.obsm.keys()) == ["X_embedding", "X_umap"]
    np.testing.assert_allclose(adata.obsm["X_embedding"], slides.values[kept])
    np.testing.assert_allclose(adata.obsm["X_umap"], umap[kept], rtol=1e-6)
    expected_x = genes.values[[1, 2, 3, 4, 0]]
    np.testing.assert_allclose(adata.X, expected_x)
    np.testing.assert_allclose(adata.layers["log2_1p_tpm"], expected_x)
    assert adata.uns["left_out"] == 1 and adata.uns["description"] == "random resnet50"


def test_h5ad_opens_in_anndata_when_installed(tmp_path):
    anndata = pytest.importorskip("anndata")
    slides = _slides()
    path = write_h5ad(tmp_path / "a.h5ad", slides, {"umap": np.zeros((6, 2))}, _genes(slides.ids))
    adata = anndata.read_h5ad(path)
    assert adata.shape == (6, 4) and "X_umap" in adata.obsm and "log2_1p_tpm" in adata.layers
    assert adata.obs["tissue"].tolist() == slides.meta["tissue"].tolist()
