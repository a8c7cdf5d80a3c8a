"""Tile and slide embeddings: slide means, the disk cache (a hit does no model work), resume after cancel,
and the `embed` command on a tiny demo cohort."""

from __future__ import annotations

import json
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from core import jobs
from core.base.config import Workspace
from core.embed import compute as embed
from core.embed import features
from core.embed.compute import (
    TileEmbeddings,
    cached_slide_embeddings,
    selected_tiles,
    slide_embeddings,
    slide_means,
    tile_embeddings,
)
from core.embed.features import FeatureSource
from core.embed.jobs import launch_embedding
from core.jobs import JobCancelled
from core.tiles import pack as tilepack

REPO = Path(__file__).resolve().parents[1]
COLOURS = {"Lung": (200, 80, 90), "Liver": (90, 60, 50)}
SOURCE = FeatureSource.random("resnet50", seed=0, image_size=32)


def fake_read_tile(row: pd.Series, out_size: int | None = None) -> np.ndarray:
    size = out_size or 64
    rng = np.random.default_rng(int(row["x"]) + zlib.crc32(str(row["sample_id"]).encode()))
    image = np.array(COLOURS[row["tissue"]], dtype=np.float32) + rng.normal(0, 25, size=(size, size, 3))
    return np.clip(image, 0, 255).astype(np.uint8)


def fake_index() -> pd.DataFrame:
    """4 donors x 2 tissues, 5 tiles a slide of which 4 are selected and pass QC."""
    rows = []
    for d in range(4):
        for t, tissue in enumerate(COLOURS):
            sample = f"GTEX-D{d}-{t:04d}"
            for k in range(5):
                rows.append({"sample_id": sample, "tissue": tissue, "subject_id": f"GTEX-D{d}",
                             "slide_path": f"/nowhere/{sample}.svs", "level": 0, "x": 448 * k, "y": 0,
                             "read_size": 448, "tile_size": 448, "passed_qc": k != 4, "selected": k != 4})
    return pd.DataFrame(rows)


@pytest.fixture
def fake_dataset(monkeypatch: pytest.MonkeyPatch) -> pd.DataFrame:
    """tile_embeddings on the fake index, its pixels from fake_read_tile (no slides, no cohort)."""
    tiles = selected_tiles(fake_index())
    monkeypatch.setattr(embed, "dataset_tiles", lambda ws, data_dir, progress=None: tiles)
    monkeypatch.setattr(tilepack, "_default_read_tile", lambda: fake_read_tile)
    return tiles


class CountingModels:
    """Wraps load_feature_model: counts loads and images embedded."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.loads = 0
        self.images = 0
        real = features.load_feature_model

        def load(source, device=None, calibration=None):
            self.loads += 1
            model, size, dim = real(source, device, calibration)
            model.register_forward_hook(lambda _m, args, _out: setattr(self, "images", self.images + len(args[0])))
            return model, size, dim

        monkeypatch.setattr(features, "load_feature_model", load)


def run_embed(ws: Workspace, **options) -> TileEmbeddings:
    return tile_embeddings(ws, "/unused", SOURCE, batch_size=8, pack_workers=1, device="cpu", **options)


def test_slide_mean_of_its_tiles_whatever_the_row_order() -> None:
    tiles = pd.DataFrame({"tile_id": ["b:0:0", "a:0:0", "b:1:0", "a:1:0", "c:0:0"],
                          "sample_id": ["b", "a", "b", "a", "c"], "tissue": ["Lung", "Liver", "Lung", "Liver", "Skin"],
                          "subject_id": ["D2", "D1", "D2", "D1", "D3"], "x": 0, "y": 0})
    values = np.array([[1, 2], [10, 20], [3, 4], [30, 40], [7, 7]], dtype=np.float32)
    result = slide_means(TileEmbeddings(tiles["tile_id"].to_numpy(), tiles["sample_id"].to_numpy(), values, "k",
                                        tiles, Path("x")))
    assert result.sample_ids.tolist() == ["a", "b", "c"]
    np.testing.assert_allclose(result.values, [[20, 30], [2, 3], [7, 7]])
    assert result.values.dtype == np.float32
    assert result.tile_counts.tolist() == [2, 2, 1]
    assert result.tissues.tolist() == ["Liver", "Lung", "Skin"]
    assert result.subject_ids.tolist() == ["D1", "D2", "D3"]
    assert result.source_key == "k"


def test_embeds_the_selected_tiles_then_a_cache_hit_does_no_model_work(
    ws: Workspace, fake_dataset: pd.DataFrame, monkeypatch: pytest.MonkeyPatch
) -> None:
    counter = CountingModels(monkeypatch)
    first = run_embed(ws)
    assert not first.cached
    assert first.values.shape == (32, 2048) and first.values.dtype == np.float32
    assert first.tile_keys.tolist() == fake_dataset["tile_id"].tolist()
    assert (counter.loads, counter.images) == (1, 32)
    # Different tissues give different features (the model ran on the tiles' pixels).
    lung = first.tiles["tissue"].to_numpy() == "Lung"
    assert np.linalg.norm(first.values[lung].mean(0) - first.values[~lung].mean(0)) > 1e-3

    def must_not_run(*args, **kwargs):
        raise AssertionError("the model was loaded on a cache hit")

    monkeypatch.setattr(features, "load_feature_model", must_not_run)
    monkeypatch.setattr(tilepack, "_default_read_tile", lambda: must_not_run)
    second = run_embed(ws)
    assert second.cached
    np.testing.assert_array_equal(second.values, first.values)
    slides = slide_embeddings(ws, "/unused", SOURCE, batch_size=8, pack_workers=1, device="cpu")
    assert slides.cached and slides.values.shape == (8, 2048) and slides.tile_counts.tolist() == [4] * 8
    # Another source is another cache entry.
    with pytest.raises(AssertionError, match="loaded on a cache hit"):
        tile_embeddings(ws, "/unused", FeatureSource.random("resnet50", seed=1, image_size=32), pack_workers=1)


def test_slide_means_are_kept_beside_the_tile_embeddings_and_follow_them(tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    tiles = pd.DataFrame({"tile_id": ["b:0:0", "a:0:0", "b:1:0"], "sample_id": ["b", "a", "b"],
                          "tissue": ["Lung", "Liver", "Lung"], "subject_id": ["D2", "D1", "D2"], "x": 0, "y": 0})
    values_path = tmp_path / "values.npy"
    np.save(values_path, np.array([[1, 2], [10, 20], [3, 4]], dtype=np.float32))

    def embeddings() -> TileEmbeddings:
        return TileEmbeddings(tiles["tile_id"].to_numpy(), tiles["sample_id"].to_numpy(),
                              np.load(values_path, mmap_mode="r"), "k", tiles, values_path, cached=True)

    first = embed.saved_slide_means(embeddings())
    assert (tmp_path / "slide_means.npz").is_file()
    real = embed.slide_means
    monkeypatch.setattr(embed, "slide_means", lambda t: (_ for _ in ()).throw(AssertionError("recomputed")))
    again = embed.saved_slide_means(embeddings())  # read back: no averaging
    assert again.sample_ids.tolist() == first.sample_ids.tolist() == ["a", "b"]
    np.testing.assert_array_equal(again.values, first.values)
    assert again.tissues.tolist() == ["Liver", "Lung"] and again.subject_ids.tolist() == ["D1", "D2"]
    assert again.tile_counts.tolist() == [1, 2] and again.cached
    monkeypatch.setattr(embed, "slide_means", real)
    np.save(values_path, np.array([[5, 5], [10, 20], [3, 4]], dtype=np.float32))  # new embeddings: stale sidecar
    np.testing.assert_allclose(embed.saved_slide_means(embeddings()).values, [[10, 20], [4, 4.5]])
    (tmp_path / "slide_means.npz").write_bytes(b"not a zip")  # damaged: recomputed, never fatal
    np.testing.assert_allclose(embed.saved_slide_means(embeddings()).values, [[10, 20], [4, 4.5]])


def test_cancel_keeps_finished_rows_and_the_next_call_resumes(
    ws: Workspace, fake_dataset: pd.DataFrame, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from core.base.config import workspace

    reference = run_embed(workspace(tmp_path / "other"))
    counter = CountingModels(monkeypatch)
    calls = []

    def progress(done: int, total: int, message: str) -> None:
        if message.startswith("embedding"):
            calls.append(done)

    with pytest.raises(JobCancelled):
        run_embed(ws, progress=progress, cancel=lambda: len(calls) >= 2)
    assert calls == [8, 16]
    entry = next((ws.cache_dir / "embeddings").iterdir())
    assert json.loads((entry / "done.json").read_text())["done"] == 16
    assert not (entry / "values.npy").exists()  # not a complete entry yet
    done_before = counter.images
    resumed = run_embed(ws)
    assert counter.images - done_before == 16  # only the rows left (BatchNorm calibration runs the backbone alone)
    assert not resumed.cached
    np.testing.assert_allclose(resumed.values, reference.values, rtol=1e-5, atol=1e-5)
    assert not (entry / "done.json").exists() and not (entry / "values.partial.npy").exists()


@pytest.fixture(scope="module")
def tiny_demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("demo") / "cohort"
    subprocess.run([sys.executable, "-m", "core", "--workspace", str(out.parent / "ws"), "demo", "--out", str(out),
                    "--donors", "4", "--tissues", "3", "--size", "1400x1200", "--genes", "300", "--workers", "1"],
                   cwd=REPO, check=True, capture_output=True)
    return out


def embed_cli(ws: Workspace, *argv: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "core", "--workspace", str(ws.root), "embed", *argv], cwd=REPO,
                          capture_output=True, text=True, timeout=300)


def test_cli_embeds_a_cohort_scores_it_and_reuses_the_cache(ws: Workspace, tiny_demo: Path) -> None:
    argv = ("--data", str(tiny_demo), "--weights", "random", "--arch", "efficientnet_b0", "--image-size", "32",
            "--json")
    first = embed_cli(ws, *argv)
    assert first.returncode == 0, first.stderr
    result = json.loads(first.stdout)
    index = pd.read_parquet(next(ws.tiles_dir.glob("*/index.parquet")))
    assert result["tiles"] == int((index["selected"] & index["passed_qc"]).sum()) > 0
    assert result["slides"] == index.loc[index["selected"] & index["passed_qc"], "sample_id"].nunique()
    assert result["dim"] == 1280 and result["cached"] is False
    assert np.load(result["path"]).shape == (result["tiles"], 1280)
    for key in ("silhouette", "knn_accuracy", "knn_chance", "seconds", "source", "source_key"):
        assert key in result
    second = json.loads(embed_cli(ws, *argv).stdout)
    assert second["cached"] is True and second["path"] == result["path"]
    # What a page sees without tiling or running a model, and the same source launched as a background job.
    source = FeatureSource(**second["feature_source"])
    slides = cached_slide_embeddings(ws, tiny_demo, source)
    assert slides is not None and len(slides.sample_ids) == result["slides"]
    assert cached_slide_embeddings(ws, tiny_demo, FeatureSource.random("efficientnet_b0", 1, 32)) is None
    status = jobs.wait(launch_embedding(ws, tiny_demo, source), timeout=240)
    assert status["state"] == "done", status
    assert status["kind"] == "embed" and status["result"]["cached"] is True
    assert status["result"]["source_key"] == source.key


def test_cli_bad_options_are_one_line_errors(ws: Workspace, tiny_demo: Path, tmp_path: Path) -> None:
    missing = embed_cli(ws, "--data", str(tiny_demo), "--timm", "test_resnet", "--timm-weights",
                        str(tmp_path / "nope.safetensors"))
    assert missing.returncode == 2
    assert missing.stderr.strip() == (f"error: {tmp_path / 'nope.safetensors'}: weights file for timm model "
                                      "'test_resnet' not found")
    no_run = embed_cli(ws, "--data", str(tiny_demo))
    assert no_run.returncode == 2 and "name a --run" in no_run.stderr


def test_torch_stays_unimported_for_cache_lookups() -> None:
    code = ("import sys, core.embed.compute, core.embed.features, core.embed.separability; "
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
    assert torch.__version__  # (this test process has torch; the child must not need it)
