"""Predicting one slide (issue 11) on a tiny demo workspace with a random-weight run: the CLI's JSON, each
step on the real SVS and on demo slides, the tile-to-slide linearity of gene predictions, the caches, the
bad inputs (each a DataError naming the file), and the background job that runs beside the writer."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import tifffile
from PIL import Image

from core import jobs
from core.__main__ import main
from core.base.config import workspace
from core.base.errors import DataError
from core.data.dataset import UNKNOWN_TISSUE
from core.data.slides import open_slide
from core.jobs import JobCancelled
from core.predict import (
    PredictRequest,
    cached_prediction,
    default_run,
    file_sha256,
    launch_prediction,
    load_prediction,
    predict_slide,
    request_for,
)
from core.predict.expression import fit_gene_models
from core.predict.reference import load_reference
from core.predict.request import run_model
from core.predict.tiles import predict_tiling_params
from core.ranking.jobs import cached_ranking_for
from core.ranking.params import RankParams
from core.tiles.index import TilingParams, build_tile_index, dataset_tiling_params, record_dataset_tiling_params
from tests.predict_helpers import FAST_RANKING

pytestmark = pytest.mark.timeout(300)
ISSUE_FIELDS = {"tissue", "top3", "tiles", "genes", "neighbours", "warnings", "seconds", "cached"}


@pytest.fixture(scope="module")
def setup(predict_workspace, testdata):
    """The session's tiny predict workspace (tests/conftest.py, shared with the page's tests: what a test here
    adds to it, it removes or leaves harmless) and the real SVS predicted once."""
    ws, run_dir, request = predict_workspace
    svs = testdata / "CMU-1-Small-Region.svs"
    prediction = predict_slide(ws, None, svs, request)
    return ws, run_dir, request, svs, prediction


def _ranking(ws, run_dir, params: RankParams = FAST_RANKING):
    model = run_model(PredictRequest(run_dir=str(run_dir), ranking=params))
    reference, _ = load_reference(ws, model.data_dir, model.source, model.classes)
    return cached_ranking_for(ws, model.data_dir, reference.cohort, model.source, params).ranking, reference


# ---------------------------------------------------------------- the report and each step


def test_cli_prints_the_issue_fields_and_the_same_slide_again_is_cached(setup, capsys, tmp_path: Path) -> None:
    ws, run_dir, request, svs, prediction = setup
    argv = ["--workspace", str(ws.root), "predict", str(svs), "--run", str(run_dir), "--components", "4",
            "--folds", "3", "--repeats", "1", "--clusters", "2", "--no-permutation", "--r2-threshold=-1e9",
            "--neighbours", "3", "--map", "pca", "--csv", str(tmp_path / "report.csv"), "--json"]
    assert main(argv) == 0
    report = json.loads(capsys.readouterr().out)
    assert ISSUE_FIELDS <= set(report)
    assert report["cached"] is True  # the fixture predicted the same file content with the same request
    assert report["tissue"] == prediction.tissue == report["top3"][0]["tissue"]
    assert [set(t) for t in report["top3"]] == [{"tissue", "probability"}] * min(3, len(prediction.classes))
    assert set(report["tiles"]) == {"considered", "kept", "rejected"}
    assert report["tiles"]["considered"] == report["tiles"]["kept"] + sum(report["tiles"]["rejected"].values())
    assert report["genes"] and all(set(g) == {"symbol", "predicted", "r2"} for g in report["genes"])
    assert [g["symbol"] for g in report["genes"]] == prediction.genes["symbol"].tolist()
    assert [set(n) for n in report["neighbours"]] == [{"sample_id", "tissue", "distance"}] * 3
    assert report["epoch"] == 1
    csv = pd.read_csv(tmp_path / "report.csv")
    assert csv.loc[csv["section"] == "tissue", "item"].item() == prediction.tissue
    assert (csv["section"] == "gene").sum() == len(prediction.genes)
    neighbours = csv[csv["section"] == "neighbour"]
    assert neighbours["tissue"].tolist() == prediction.neighbours["tissue"].tolist()


def test_default_epoch_is_the_one_validation_selects_not_the_best_on_test(setup) -> None:
    ws, run_dir, request, svs, prediction = setup
    assert prediction.epoch == 1 and "validation" in prediction.notes["epoch"]
    assert default_run(ws) == run_dir
    assert request_for(ws).run_dir == str(run_dir.resolve())


def test_tiles_are_the_training_tilers_full_grid_with_the_same_qc(setup) -> None:
    ws, run_dir, request, svs, prediction = setup
    model = run_model(request)
    params = predict_tiling_params(dataset_tiling_params(ws, model.data_dir), model.classes)
    samples = pd.DataFrame({"sample_id": ["cmu"], "tissue": [UNKNOWN_TISSUE], "subject_id": ["x"],
                            "slide_path": [str(svs)]})
    index = build_tile_index(samples, params, ws, workers=1).index
    tiles = prediction.tiles
    assert tiles[["x", "y"]].to_numpy().tolist() == index[["x", "y"]].to_numpy().tolist()
    assert tiles["reason"].tolist() == index["reason"].astype(str).tolist()
    summary = prediction.tile_summary
    assert summary["considered"] == len(tiles) and summary["kept"] == int(tiles["passed_qc"].sum()) > 0
    assert summary["considered"] == summary["kept"] + sum(summary["rejected"].values())
    assert prediction.info["magnification"] == 20.0 and prediction.info["magnification_assumed"] is False
    assert prediction.thumbnail.dtype == np.uint8 and prediction.tissue_mask.shape == prediction.thumbnail.shape[:2]


def test_slide_tissue_is_the_mean_of_its_tile_probabilities(setup) -> None:
    prediction = setup[4]
    kept = prediction.tiles[prediction.tiles["passed_qc"]]
    probs = kept[[f"p_{c}" for c in prediction.classes]].to_numpy()
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)
    mean = probs.mean(axis=0)
    order = np.argsort(-mean)
    assert prediction.tissue == prediction.classes[order[0]]
    for entry, i in zip(prediction.top3, order[:3], strict=True):  # 2 tissues here: a top 2
        assert entry["tissue"] == prediction.classes[i] and entry["probability"] == pytest.approx(mean[i], abs=1e-4)
    assert (kept["predicted_tissue"] == np.asarray(prediction.classes)[probs.argmax(axis=1)]).all()
    np.testing.assert_allclose(kept["confidence"], probs.max(axis=1), rtol=1e-6)
    rejected = prediction.tiles[~prediction.tiles["passed_qc"]]
    assert (rejected["predicted_tissue"] == "").all() and rejected["confidence"].isna().all()


def test_tile_gene_predictions_average_exactly_to_the_slide_prediction(setup) -> None:
    prediction = setup[4]
    assert len(prediction.genes) > 3
    kept = int(prediction.tiles["passed_qc"].sum())
    for row in prediction.genes.itertuples(index=False):
        tiles = prediction.tile_gene_predictions(row.gene_id)
        assert tiles.shape == (kept,)
        assert tiles.mean() == pytest.approx(row.predicted, rel=1e-6, abs=1e-5)
    heat = prediction.tile_gene_map(prediction.genes["symbol"].iloc[0])
    assert np.isnan(heat[~prediction.tiles["passed_qc"].to_numpy()]).all()
    assert np.isfinite(heat[prediction.tiles["passed_qc"].to_numpy()]).all()
    with pytest.raises(KeyError):
        prediction.tile_gene_predictions("NOT-A-GENE")


def test_gene_model_is_affine_so_tile_predictions_average_to_the_slides() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(30, 12)).astype(np.float32)
    y = (x[:, :3] @ rng.normal(size=(3, 5)) + rng.normal(size=(30, 5))).astype(np.float32)
    models = fit_gene_models(x, y, RankParams(components=4, clusters=3), np.array([f"g{i}" for i in range(5)]))
    tiles = rng.normal(size=(50, 12)).astype(np.float32) * 3 + 1
    columns = np.arange(5)
    per_tile = models.predict_scores(models.scores(tiles), columns)
    slide = models.predict_scores(models.scores(tiles.mean(axis=0, dtype=np.float64)), columns)[0]
    np.testing.assert_allclose(per_tile.mean(axis=0), slide, rtol=1e-5, atol=1e-5)
    # and it is a real fit: on its own training slides it beats predicting the mean
    fitted = models.predict_scores(models.scores(x), columns)
    assert ((fitted - y) ** 2).sum() < ((y - y.mean(axis=0)) ** 2).sum()


def test_threshold_keeps_genes_at_or_above_it_with_the_predicted_tissues_reference_range(setup) -> None:
    ws, run_dir, request, svs, prediction = setup
    ranking, _ = _ranking(ws, run_dir)
    threshold = float(np.median(ranking.table["r2"]))
    slides = ws.cache_dir / "predictions" / "slides"
    before = [p for p in slides.iterdir() if p.name.startswith(prediction.file_sha256[:32])]
    stricter = predict_slide(ws, None, svs, replace(request, r2_threshold=threshold))
    assert not stricter.cached
    expected = ranking.table.loc[ranking.table["r2"] >= threshold, "gene_id"].tolist()
    assert stricter.genes["gene_id"].tolist() == expected and 0 < len(expected) < len(ranking.table)
    assert (stricter.genes["r2"] >= threshold).all()
    slides = ws.cache_dir / "predictions" / "slides"
    assert [p for p in slides.iterdir() if p.name.startswith(prediction.file_sha256[:32])] == before
    row = stricter.genes.iloc[0]
    column = int(np.flatnonzero(ranking.gene_ids == row.gene_id)[0])
    observed = np.asarray(ranking.arrays["observed"])[(ranking.samples["tissue"] == stricter.tissue).to_numpy(),
                                                       column]
    assert row.ref_tissue == stricter.tissue
    np.testing.assert_allclose([row.ref_low, row.ref_median, row.ref_high],
                               np.quantile(observed, [0.05, 0.5, 0.95]), rtol=1e-6)
    transcriptome = stricter.transcriptome
    assert len(transcriptome) == len(ranking.gene_ids) and np.isfinite(transcriptome["predicted"]).all()


def test_neighbours_are_nearest_in_embedding_space_and_the_map_projects_the_slide(setup) -> None:
    ws, run_dir, request, svs, prediction = setup
    _, reference = _ranking(ws, run_dir)
    neighbours = prediction.neighbours
    assert len(neighbours) == 3 and neighbours["distance"].is_monotonic_increasing
    assert set(neighbours["sample_id"]) <= set(reference.sample_ids)
    tissue_of = dict(zip(reference.sample_ids, reference.tissues, strict=True))
    assert [tissue_of[s] for s in neighbours["sample_id"]] == neighbours["tissue"].tolist()
    assert all(Path(p).is_file() for p in neighbours["slide_path"])
    place = prediction.map
    assert place["method"] == "pca" and len(place["reference"]) == len(reference.sample_ids)
    assert np.isfinite(place["point"]).all()


def _toy_reference(tmp_path: Path, values: np.ndarray, tissues: np.ndarray | None = None):
    from core.predict.reference import Reference

    n = len(values)
    tissues = np.array(["A", "B"] * (n // 2) + ["A"] * (n % 2)) if tissues is None else tissues
    return Reference(tmp_path, None, np.array([f"S{i}" for i in range(n)]), values, tissues,
                     np.array([""] * n), "slides-level:test", None)


def test_an_old_umap_map_without_its_reducer_places_by_nearest_reference_slides_and_says_so(tmp_path: Path) -> None:
    from core.base.cache import open_cache
    from core.maps.reduce import MapParams, map_key
    from core.predict.placement import place_on_map

    ws = workspace(tmp_path / "ws")
    rng = np.random.default_rng(0)
    values = rng.normal(size=(12, 6)).astype(np.float32)
    reference = _toy_reference(tmp_path, values)
    point = values[3] + 0.01
    assert place_on_map(ws, reference, point, "umap")["method"] == "pca"  # no UMAP cached: PCA, said so
    coords = rng.uniform(-10, 10, size=(12, 2)).astype(np.float32)
    cache = open_cache(ws)  # a map entry as cached before reducers were kept: coordinates and PCA only
    cache.set(map_key(reference.key, MapParams(method="umap")), {"coords": coords, "pca": {
        "components": values[:, :2], "explained_variance_ratio": np.array([0.5, 0.3])}})
    cache.close()
    placed = place_on_map(ws, reference, point, "umap")
    assert placed["method"] == "umap" and placed["placement"] == "neighbours"
    assert "approximate" in placed["note"] and "without its fitted UMAP" in placed["note"]
    np.testing.assert_allclose(placed["reference"][["x", "y"]].to_numpy(), coords, rtol=1e-6)
    # the nearest slide (3, at distance ~0.01 in PCA space) dominates the inverse-distance weights
    assert np.linalg.norm(np.array(placed["point"]) - coords[3]) < 0.2 * np.ptp(coords, axis=0).max()


def _clustered(n_per: int = 15, dim: int = 24, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centres = rng.normal(scale=6.0, size=(3, dim))
    labels = np.repeat(np.arange(3), n_per)
    return (centres[labels] + rng.normal(size=(len(labels), dim))).astype(np.float32), labels


def test_on_a_umap_map_kept_with_its_reducer_the_slide_is_placed_by_umaps_transform(tmp_path: Path) -> None:
    from sklearn.decomposition import PCA

    from core.maps.reduce import MapParams, cached_map, lookup_reducer
    from core.predict.placement import place_on_map

    ws = workspace(tmp_path / "ws")
    values, labels = _clustered()
    reference = _toy_reference(tmp_path, values, np.array(["ABC"[c] for c in labels]))
    params = MapParams(method="umap")
    mapped = cached_map(ws, values, params, input_key=reference.key, keep_reducer=True)
    coords = mapped.coords.astype(np.float64)
    spread = np.ptp(coords, axis=0).max()
    centroids = np.stack([coords[labels == c].mean(axis=0) for c in range(3)])
    for k in (0, 20, 44):  # a reference slide lands on (very near) its own map point, inside its cluster
        placed = place_on_map(ws, reference, values[k].astype(np.float64), "umap")
        assert placed["method"] == "umap" and placed["placement"] == "transform"
        assert "transform" in placed["note"]
        np.testing.assert_allclose(placed["reference"][["x", "y"]].to_numpy(), coords, rtol=1e-6)
        xy = np.array(placed["point"])
        assert np.linalg.norm(xy - coords[k]) < 0.1 * spread
        assert np.argmin(np.linalg.norm(centroids - xy, axis=1)) == labels[k]
    # a new slide: exactly the kept UMAP's transform of its row in the map's PCA (fitted on the reference alone)
    model = lookup_reducer(ws, reference.key, params).umap
    own_pca = PCA(n_components=min(params.pca_components, *values.shape), svd_solver="full").fit(values)
    rng = np.random.default_rng(5)
    for k in (3, 30):
        new = values[k].astype(np.float64) + rng.normal(scale=0.5, size=values.shape[1])
        xy = np.array(place_on_map(ws, reference, new, "umap")["point"])
        scores = own_pca.transform(new[None, :].astype(np.float32))  # the slide's PCA row (float32, as embedded)
        np.testing.assert_allclose(xy, model.transform(scores)[0], atol=1e-6 * spread)
        assert np.argmin(np.linalg.norm(centroids - xy, axis=1)) == labels[k]
    # a new slide between clusters 0 and 1 but much nearer 1 lands in cluster 1's part of the map
    new = (0.1 * values[labels == 0].mean(axis=0) + 0.9 * values[labels == 1].mean(axis=0)).astype(np.float64)
    xy = np.array(place_on_map(ws, reference, new, "umap")["point"])
    assert np.argmin(np.linalg.norm(centroids - xy, axis=1)) == 1


def test_on_tsne_the_slide_is_placed_on_the_pca_map_and_the_note_says_so(tmp_path: Path) -> None:
    from core.maps.reduce import pca
    from core.predict.placement import place_on_map

    ws = workspace(tmp_path / "ws")
    values, _ = _clustered(n_per=4)
    reference = _toy_reference(tmp_path, values)
    placed = place_on_map(ws, reference, values[5].astype(np.float64), "tsne")
    assert placed["method"] == "pca" and placed["placement"] == "pca" and "t-SNE" in placed["note"]
    scores = pca(values).components
    np.testing.assert_allclose(placed["point"], scores[5, :2], atol=1e-3)
    np.testing.assert_allclose(placed["reference"][["x", "y"]].to_numpy(), scores[:, :2], atol=1e-3)


def test_a_reference_slide_finds_itself_nearest(setup) -> None:
    ws, run_dir, request, svs, prediction = setup
    slides = sorted((ws.demo_dir / "slides").iterdir())
    own = predict_slide(ws, None, slides[0], request)
    assert own.neighbours["sample_id"].iloc[0] == slides[0].name.split(".")[0]
    assert own.tile_summary["kept"] > 0


def test_a_png_crop_predicts_with_the_assumed_magnification_stated(setup, tmp_path: Path) -> None:
    ws, run_dir, request, svs, prediction = setup
    with open_slide(svs) as slide:
        pixels = slide.read_region(0, 600, 1400, 1400)
    png = tmp_path / "crop.png"
    Image.fromarray(pixels).save(png)
    result = predict_slide(ws, None, png, request)
    assert result.info["magnification_assumed"] is True and result.info["driver"] == "GDAL"
    assert any("assuming 20x" in note for note in result.warnings)
    assert result.tile_summary["kept"] > 0 and result.tissue in result.classes


def test_cached_prediction_never_computes_and_finds_the_saved_one(setup) -> None:
    ws, run_dir, request, svs, prediction = setup
    found = cached_prediction(ws, file_sha256(svs), request)
    assert found is not None and found.cached and found.tissue == prediction.tissue
    assert load_prediction(prediction.folder).genes.equals(found.genes)
    assert cached_prediction(ws, file_sha256(svs), replace(request, neighbours=4)) is None
    assert cached_prediction(ws, "0" * 64, request) is None


def test_a_missing_ranking_is_a_warning_and_a_later_ranking_is_picked_up(setup) -> None:
    ws, run_dir, request, svs, prediction = setup
    other = replace(request, ranking=replace(FAST_RANKING, components=3))
    first = predict_slide(ws, None, svs, other)
    assert first.genes.empty and first.tissue == prediction.tissue
    assert any("python -m core rank" in note for note in first.warnings)
    assert predict_slide(ws, None, svs, other).cached  # read back while the ranking is still missing
    computed = predict_slide(ws, None, svs, replace(other, compute_ranking=True))
    try:
        assert len(computed.genes) > 0
        again = predict_slide(ws, None, svs, other)  # the saved gene-less result is stale now
        assert not again.cached and len(again.genes) == len(computed.genes)
    finally:  # the shared workspace keeps its one ranking (the page's tests list a run's rankings)
        shutil.rmtree(computed.notes["ranking"])


def test_a_cancelled_prediction_stops_and_saves_no_result(setup, tmp_path: Path) -> None:
    ws, run_dir, request, svs, prediction = setup
    calls = []

    def cancel() -> bool:
        calls.append(1)
        return len(calls) > 2  # after the first steps have started

    with pytest.raises(JobCancelled):
        predict_slide(ws, None, svs, replace(request, neighbours=1), cancel=cancel)
    assert cached_prediction(ws, file_sha256(svs), replace(request, neighbours=1)) is None


# ---------------------------------------------------------------- bad input


def _expect(setup, path: Path, *words: str) -> None:
    ws, run_dir, request, svs, prediction = setup
    with pytest.raises(DataError) as info:
        predict_slide(ws, None, path, request)
    assert info.value.path == str(path), str(info.value)
    for word in words:
        assert word in info.value.problem, str(info.value)


def test_a_text_file_renamed_svs_is_not_a_slide(setup, tmp_path: Path) -> None:
    fake = tmp_path / "notes.svs"
    fake.write_text("just some text, not a slide\n" * 20)
    _expect(setup, fake, "not a slide")


def test_the_cli_prints_one_line_naming_the_file_for_bad_input(setup, tmp_path: Path, capsys) -> None:
    ws, run_dir, request, svs, prediction = setup
    fake = tmp_path / "fake.svs"
    fake.write_text("not a slide")
    code = main(["--workspace", str(ws.root), "predict", str(fake), "--run", str(run_dir), "--json"])
    captured = capsys.readouterr()
    assert code == 2 and captured.out == ""
    assert captured.err.strip().splitlines()[-1] == (f"error: {fake}: not a slide: extension says TIFF but the "
                                                     "content starts with b'not a sl'")  # after progress lines
    failed = [job for job in jobs.list_jobs(ws, kind="predict") if job.status()["state"] == "failed"]
    assert failed and "not a slide" in failed[0].status()["error"]


def test_an_uploads_own_name_replaces_its_temp_path_in_errors(setup, tmp_path: Path) -> None:
    ws, run_dir, request, svs, prediction = setup
    fake = tmp_path / "upload-x1y2.svs"
    fake.write_text("not a slide")
    with pytest.raises(DataError) as info:
        predict_slide(ws, None, fake, request, display_name="my slide.svs")
    assert str(info.value).startswith("my slide.svs: not a slide") and str(fake) not in str(info.value)


def test_a_truncated_svs_is_named(setup, tmp_path: Path) -> None:
    svs = setup[3]
    cut = tmp_path / "cut.svs"
    cut.write_bytes(svs.read_bytes()[: svs.stat().st_size // 2])
    _expect(setup, cut, "truncated")


def test_grayscale_and_16_bit_images_are_refused(setup, tmp_path: Path) -> None:
    grey = tmp_path / "grey.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 200, (1200, 1200), dtype=np.uint8)).save(grey)
    _expect(setup, grey, "grayscale")
    deep = tmp_path / "deep.tif"
    tifffile.imwrite(deep, np.random.default_rng(0).integers(0, 60000, (1200, 1200), dtype=np.uint16))
    _expect(setup, deep, "16-bit")
    grey_rgb = tmp_path / "grey_rgb.png"
    plane = np.random.default_rng(1).integers(0, 200, (1200, 1200), dtype=np.uint8)
    Image.fromarray(np.stack([plane] * 3, axis=2)).save(grey_rgb)
    _expect(setup, grey_rgb, "grayscale")


def test_a_blank_image_has_no_tissue(setup, tmp_path: Path) -> None:
    blank = tmp_path / "blank.png"
    Image.fromarray(np.full((1500, 1500, 3), 245, np.uint8)).save(blank)
    _expect(setup, blank, "no tissue")
    results = setup[0].cache_dir / "predictions" / "results"
    assert not any(p.name.startswith(file_sha256(blank)[:32]) and p.is_dir() for p in results.iterdir())


def test_no_trained_run_yet_is_a_clear_error(tmp_path: Path) -> None:
    ws = workspace(tmp_path / "empty")
    with pytest.raises(DataError, match="no trained run yet"):
        request_for(ws)


def test_a_run_without_checkpoints_or_with_unfit_tissues_is_refused(setup, tmp_path: Path) -> None:
    ws, run_dir, request, svs, prediction = setup
    bare = tmp_path / "bare-run"
    bare.mkdir()
    (bare / "config.json").write_text((run_dir / "config.json").read_text())
    with pytest.raises(DataError, match="no checkpoint"):
        predict_slide(ws, None, svs, replace(request, run_dir=str(bare)))
    alien = tmp_path / "alien-run"
    alien.mkdir()
    (alien / "checkpoints").symlink_to(run_dir / "checkpoints")
    config = json.loads((run_dir / "config.json").read_text())
    (alien / "config.json").write_text(json.dumps({**config, "classes": ["Brain - Cortex", "Testis"]}))
    with pytest.raises(DataError, match="do not fit") as info:
        predict_slide(ws, None, svs, replace(request, run_dir=str(alien)))
    assert info.value.path == str(ws.demo_dir)


def test_a_slide_too_coarse_for_the_runs_tiles_is_refused(setup, tmp_path: Path) -> None:
    ws, run_dir, request, svs, prediction = setup
    other = workspace(tmp_path / "ws80x")  # the same dataset tiled at 80x: 0.125 µm/px tiles
    record_dataset_tiling_params(other, ws.demo_dir, TilingParams(magnification=80.0))
    with pytest.raises(DataError, match="resolution too low") as info:
        predict_slide(other, ws.demo_dir, svs, request)
    assert info.value.path == str(svs)


# ---------------------------------------------------------------- the background job


def test_a_prediction_job_runs_while_a_writer_holds_the_lock_and_deletes_its_upload(setup, tmp_path: Path) -> None:
    ws, run_dir, request, svs, prediction = setup
    writer = jobs.launch(ws, "sleep-demo", ["jobs", "--sleep-demo", "100000", "--step-s", "0.05"],
                         module="tests.jobs_worker")  # holds the one-writer lock until cancelled
    upload = tmp_path / "upload-tmp.svs"
    shutil.copyfile(svs, upload)
    try:
        job = launch_prediction(ws, None, upload, replace(request, neighbours=2), delete_slide=True,
                                sha256=file_sha256(upload), name="CMU upload.svs")
        status = jobs.wait(job, timeout=240)
        assert status["state"] == "done", (status, job.log_tail())
        assert status["kind"] == "predict" and jobs.job_state(writer) == jobs.JobState.RUNNING
        result = status["result"]
        assert result["tissue"] == prediction.tissue and len(result["neighbours"]) == 2
        assert result["slide"] == "CMU upload.svs"
        assert load_prediction(result["folder"]).tissue == prediction.tissue
        assert not upload.exists()
    finally:
        jobs.request_cancel(writer)
        jobs.wait(writer, timeout=30)


def test_a_two_scene_slide_is_predicted_from_both_scenes_and_its_maps_draw_scene_0(setup, tmp_path: Path) -> None:
    """A multi-scene file: every scene with tissue gives tiles (each in its own scene's coordinates); the
    heatmaps are drawn over scene 0's thumbnail, so they show scene 0's tiles only and the page's statement
    counts the others (scene 1 here is wider than scene 0: drawn there, its tiles would fall off the image)."""
    from core.predict import figures as pf
    from tests.predict_helpers import two_scene_ome_tiff

    ws, run_dir, request, svs, prediction = setup
    result = predict_slide(ws, None, two_scene_ome_tiff(tmp_path / "two-scenes.ome.tif"), request)
    kept = pf.kept_tiles(result.tiles)
    per_scene = kept["scene"].value_counts().to_dict()
    assert result.info["scenes"] == 2 and set(per_scene) == {0, 1}, per_scene
    assert kept.loc[kept["scene"] == 1, "x"].max() >= 1344  # beyond scene 0's width
    statement = pf.scene_statement(result.tiles, result.info["scenes"])
    assert f"draw scene 0 only ({per_scene[0]:,} of the {len(kept):,} kept tiles)" in statement
    assert f"{per_scene[1]:,} kept tiles came from scene 1" in statement
    assert pf.scene_statement(prediction.tiles, prediction.info["scenes"]) is None  # the one-scene SVS
    overlay = pf.tissue_overlay(result.thumbnail, result.thumb_scale, result.tiles, result.classes)
    hover = np.asarray(overlay.data[1].text, dtype=object)
    assert (hover != "").sum() == per_scene[0]
    gene = str(result.genes["gene_id"].iloc[0])
    heat = pf.gene_overlay(result.thumbnail, result.thumb_scale, result.tiles, result.tile_gene_map(gene), gene)
    assert np.isfinite(np.asarray(heat.data[1].z, dtype=float)).sum() == per_scene[0]
