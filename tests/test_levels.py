"""core.maps.points: point sets per level on a tiny demo cohort, unified weighting, splits, gene look-up."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from core.base.config import Workspace, workspace
from core.base.errors import DataError, DataWarning
from core.data.dataset import load_cohort
from core.data.genes import GeneFilterParams
from core.demo import ensure_demo_cohort
from core.embed.compute import SlideEmbeddings, TileEmbeddings
from core.maps.points import (
    PointSet,
    add_split,
    gene_expression,
    genes_level,
    sample_top_genes,
    slides_level,
    tiles_level,
    unified_level,
)

TINY = {"n_donors": 3, "n_tissues": 3, "slide_size": (640, 512), "n_genes": 200, "workers": 1}


@pytest.fixture(scope="module")
def cohort_ws(tmp_path_factory: pytest.TempPathFactory) -> Workspace:
    ws = workspace(tmp_path_factory.mktemp("levels") / "workspace")
    ensure_demo_cohort(ws, **TINY)
    return ws


@pytest.fixture(scope="module")
def cohort(cohort_ws):
    return load_cohort(cohort_ws.demo_dir, cohort_ws)


def _slide_embeddings(cohort, dim: int = 16, seed: int = 0) -> SlideEmbeddings:
    ids = np.sort(cohort.samples.loc[cohort.samples["has_slide"], "sample_id"].astype(str).to_numpy())
    values = np.random.default_rng(seed).normal(size=(len(ids), dim)).astype(np.float32)
    return SlideEmbeddings(ids, values, "src-1", tile_counts=np.full(len(ids), 3))


def test_genes_level_is_the_joined_samples_filtered_log_tpm(cohort):
    level = genes_level(cohort, GeneFilterParams(min_log_tpm=1.0, min_sd=0.1))
    joined = set(cohort.samples.loc[cohort.samples["joined"], "sample_id"])
    assert set(level.ids) == joined and len(level) == len(joined)
    assert level.values.shape[0] == len(joined) and 0 < level.values.shape[1] <= 200
    assert level.values.dtype == np.float32 and level.values.min() >= 0  # log2(1 + TPM)
    truth = cohort.samples.set_index("sample_id").loc[level.ids, "tissue"].to_numpy()
    np.testing.assert_array_equal(level.meta["tissue"].to_numpy(), truth)
    assert list(level.meta["id"]) == list(level.ids)
    stricter = genes_level(cohort, GeneFilterParams(min_log_tpm=1.0, min_sd=0.5))
    assert stricter.key != level.key and stricter.values.shape[1] <= level.values.shape[1]


def test_genes_level_without_expression_is_a_data_error(cohort):
    empty = type(cohort.files)(cohort.files.root, cohort.files.slides_dir, cohort.files.histology_csv, None)
    no_expression = type(cohort)(empty, cohort.samples, cohort.expression, [])
    with pytest.raises(DataError, match="GCT"):
        genes_level(no_expression)


def test_slides_level_carries_sample_metadata(cohort):
    embeddings = _slide_embeddings(cohort)
    level = slides_level(embeddings, cohort.samples)
    assert len(level) == len(embeddings.sample_ids)
    row = cohort.samples.set_index("sample_id").loc[level.ids[0]]
    assert level.meta.loc[0, "tissue"] == row["tissue"] and level.meta.loc[0, "subject_id"] == row["subject_id"]
    assert {"sex", "age_bracket", "hardy_scale", "tiles"} <= set(level.meta.columns)
    changed = SlideEmbeddings(embeddings.sample_ids, embeddings.values + 1, "src-1")
    assert slides_level(changed, cohort.samples).key != level.key


def test_tiles_level_subset_and_qc_metrics(cohort):
    slides = cohort.samples.loc[cohort.samples["has_slide"], "sample_id"].astype(str).to_numpy()
    tiles = pd.DataFrame({"sample_id": np.repeat(slides, 10), "x": np.tile(np.arange(10) * 448, len(slides)),
                          "y": 0})
    tiles.insert(0, "tile_id", [f"{s}:{x}:{y}" for s, x, y in zip(tiles.sample_id, tiles.x, tiles.y, strict=True)])
    tiles["tissue"], tiles["subject_id"] = "t", "d"
    values = np.random.default_rng(0).normal(size=(len(tiles), 8)).astype(np.float32)
    embeddings = TileEmbeddings(tiles["tile_id"].to_numpy(), tiles["sample_id"].to_numpy(), values, "src",
                                tiles, path=None)
    index = tiles[["sample_id", "x", "y"]].assign(blur=np.arange(len(tiles), dtype=float), jpeg_kb=1.0)
    level = tiles_level(embeddings, cohort.samples, tile_index=index, limit=7, seed=1)
    assert len(level) == 7 and level.values.shape == (7, 8)
    rows = tiles.set_index("tile_id").index.get_indexer(level.ids)
    np.testing.assert_array_equal(level.values, values[rows])
    np.testing.assert_array_equal(level.meta["blur"].to_numpy(), rows.astype(float))  # joined by (slide, x, y)
    assert level.meta["tissue"].isin(set(cohort.samples["tissue"])).all()  # histology wins over the index
    assert tiles_level(embeddings, cohort.samples, limit=7, seed=2).key != level.key


def _block(n: int, dim: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, dim)).astype(np.float32)


def _points(level: str, ids: np.ndarray, values: np.ndarray) -> PointSet:
    meta = pd.DataFrame({"id": ids, "sample_id": ids, "tissue": "t"})
    return PointSet(level, ids, values, meta, key=f"{level}-{values.sum():.3f}")


@pytest.mark.parametrize("weight", [0.5, 0.2, 0.9])
def test_unified_weight_sets_each_blocks_share_of_variance(weight):
    ids = np.array([f"S{i}" for i in range(40)])
    # Very different scales and dimensions: standardizing must remove both.
    image = _points("slides", ids, _block(40, 64, 0) * 100)
    genes = _points("genes", ids, _block(40, 300, 1) * 0.01)
    unified = unified_level(image, genes, weight=weight, n_components=10)
    assert unified.values.shape == (40, 20)
    image_var = unified.values[:, :10].var(axis=0).sum()
    gene_var = unified.values[:, 10:].var(axis=0).sum()
    assert image_var / (image_var + gene_var) == pytest.approx(weight, abs=1e-4)


def test_unified_weight_one_reproduces_image_neighbours_and_zero_expression_ones():
    ids = np.array([f"S{i}" for i in range(30)])
    image_values, gene_values = _block(30, 12, 2), _block(30, 40, 3)
    image, genes = _points("slides", ids, image_values), _points("genes", ids, gene_values)

    def neighbours(x: np.ndarray) -> np.ndarray:
        d = np.linalg.norm(x[:, None] - x[None], axis=2)
        np.fill_diagonal(d, np.inf)
        return d.argmin(axis=1)

    only_image = unified_level(image, genes, weight=1.0, n_components=12)
    only_genes = unified_level(image, genes, weight=0.0, n_components=40)
    np.testing.assert_array_equal(neighbours(only_image.values), neighbours(image_values))
    np.testing.assert_array_equal(neighbours(only_genes.values), neighbours(gene_values))
    assert not np.array_equal(neighbours(only_image.values), neighbours(only_genes.values))


def test_unified_keeps_only_samples_with_both_and_rejects_bad_weights():
    image = _points("slides", np.array(["A", "B", "C", "D"]), _block(4, 5, 0))
    genes = _points("genes", np.array(["D", "C", "B", "X"]), _block(4, 5, 1))
    unified = unified_level(image, genes, n_components=2)
    assert list(unified.ids) == ["B", "C", "D"]
    with pytest.raises(DataError, match="weight"):
        unified_level(image, genes, weight=1.5)
    with pytest.raises(DataError, match="both"):
        unified_level(image, _points("genes", np.array(["Y", "Z"]), _block(2, 5, 1)))


def test_split_colours_train_validation_and_test_donors_from_the_runs_split_csv(cohort, tmp_path):
    from core.train.split import save_split

    run = tmp_path / "run"
    run.mkdir()
    donors = sorted(cohort.samples["subject_id"].unique())
    side = dict(zip(donors, ["train", "validation", "test"], strict=True))  # 3 donors: one on each side
    split = cohort.samples[["sample_id", "subject_id"]].assign(split=cohort.samples["subject_id"].map(side))
    save_split(run, split)
    level = add_split(slides_level(_slide_embeddings(cohort), cohort.samples), run, cohort.samples)
    side_of = split.drop_duplicates("subject_id").set_index("subject_id")["split"]
    expected = level.meta["subject_id"].map(side_of).to_numpy()
    np.testing.assert_array_equal(level.meta["split"].to_numpy(), expected)
    assert "validation" in set(level.meta["split"])


def test_a_run_without_a_saved_split_still_draws_without_split_colours(cohort, tmp_path):
    (tmp_path / "run").mkdir()
    with pytest.warns(DataWarning, match="no saved split"):
        level = add_split(slides_level(_slide_embeddings(cohort), cohort.samples), tmp_path / "run",
                          cohort.samples)
    assert "split" not in level.meta.columns


def test_split_from_a_split_table(cohort, monkeypatch):
    from core.train import runs

    first = cohort.samples["sample_id"].iloc[0]
    monkeypatch.setattr(runs, "run_split", lambda run_dir: pd.DataFrame(
        {"sample_id": [first], "subject_id": ["?"], "split": ["validation"]}))
    level = add_split(slides_level(_slide_embeddings(cohort), cohort.samples), "run", cohort.samples)
    assert dict(zip(level.meta["sample_id"], level.meta["split"], strict=True))[first] == "validation"
    assert (level.meta["split"] == "").sum() == len(level) - 1


def test_gene_lookup_by_symbol_or_ensembl_id(cohort):
    symbol, gene_id = str(cohort.expression.symbols[5]), str(cohort.expression.gene_ids[5])
    label, values = gene_expression(cohort, symbol.lower())
    assert symbol in label and len(values) == len(cohort.expression.sample_ids)
    expected = np.log2(1 + np.asarray(cohort.expression.values[5], dtype=np.float64))
    np.testing.assert_allclose(values.to_numpy(), expected, rtol=1e-5)
    assert gene_expression(cohort, gene_id)[0] == label
    assert gene_expression(cohort, gene_id.split(".")[0])[0] == label
    with pytest.raises(DataError, match="NOT_A_GENE"):
        gene_expression(cohort, "NOT_A_GENE")


def test_top_genes_are_the_samples_highest(cohort):
    sample = str(cohort.expression.sample_ids[0])
    top = sample_top_genes(cohort, sample, n=5)
    assert len(top) == 5 and top["log2(1+TPM)"].is_monotonic_decreasing
    assert top["log2(1+TPM)"].iloc[0] == pytest.approx(
        np.log2(1 + np.asarray(cohort.expression.values[:, 0], dtype=np.float64).max()), abs=0.01)


def test_slide_pca_points_are_the_cached_slides_first_two_components(tmp_path, monkeypatch):
    """The Gene rankings page's slide map (core.maps.points.slide_pca_points): one row per cached slide, never
    embedding; None before the embeddings are cached or for fewer than 3 slides."""
    from types import SimpleNamespace

    from core.embed import compute
    from core.maps.points import slide_pca_points
    from core.maps.reduce import pca

    rng = np.random.default_rng(0)
    slides = SimpleNamespace(sample_ids=["S1", "S2", "S3", "S4"], values=rng.normal(size=(4, 6)).astype(np.float32))
    tissues = {"sample_id": ["S1", "S2", "S3"], "tissue": ["Lung", "Liver", "Lung"]}
    cohort = SimpleNamespace(samples=pd.DataFrame(tissues))
    cached = {"s": slides}
    monkeypatch.setattr(compute, "cached_slide_embeddings", lambda ws, data_dir, source: cached.get("s"))
    frame = slide_pca_points(None, tmp_path, cohort, None)
    assert list(frame["id"]) == list(frame["sample_id"]) == ["S1", "S2", "S3", "S4"]
    assert list(frame["tissue"]) == ["Lung", "Liver", "Lung", ""]  # a slide the cohort lacks has no tissue
    expected = pca(slides.values, 2).components
    assert np.allclose(frame[["x", "y"]].to_numpy(), expected[:, :2])
    cached["s"] = SimpleNamespace(sample_ids=["S1", "S2"], values=slides.values[:2])
    assert slide_pca_points(None, tmp_path, cohort, None) is None
    cached.clear()
    assert slide_pca_points(None, tmp_path, cohort, None) is None
