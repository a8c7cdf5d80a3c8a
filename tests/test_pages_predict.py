"""The Predict page through AppTest (Streamlit 1.67's AppTest drives st.file_uploader: `upload(name, bytes)`), on
the real core.predict and a tiny workspace (tests/predict_helpers: a finished run with random-weight checkpoints
and its gene ranking). An uploaded real SVS is saved, hashed, predicted and drawn, and found again after a reload;
two sessions get their own results; each bad input gets a clear message naming the file.

The one seam: `launch_prediction` runs `predict_slide` in this process (the worker process is exercised by
tests/test_predict.py and the browser test tests/e2e/test_predict_upload.py); its job folder records the outcome as the
worker would (done, or failed with the DataError's text)."""

from __future__ import annotations

import hashlib
import io
import json
import shutil
import tempfile
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import tifffile
from PIL import Image
from streamlit.testing.v1 import AppTest

import core.predict
from core import jobs
from core.base.config import Workspace, workspace
from core.base.errors import DataError
from core.base.fileio import atomic_write_json
from core.predict import predict_slide
from core.tiles.index import dataset_tiling_params, record_dataset_tiling_params

APP = str(Path(__file__).resolve().parents[1] / "app.py")
PAGE = "pages/predict.py"


class InlineLauncher:
    """launch_prediction stand-in: predicts in this process, then writes the job folder the worker would."""

    def __init__(self) -> None:
        self.launched: list[dict] = []

    def __call__(self, ws, data_dir, slide_path, request, delete_slide=False, sha256=None, name=None) -> jobs.Job:
        slide_path = Path(slide_path)
        record = {"path": slide_path, "request": request, "delete": delete_slide, "sha": sha256, "name": name}
        self.launched.append(record)
        job_dir = Path(tempfile.mkdtemp(prefix="predict-inline-", dir=ws.jobs_dir))
        status = {"id": job_dir.name, "kind": "predict", "state": "done", "progress": {"done": 1, "total": 1},
                  "argv": [], "error": None}
        try:
            predict_slide(ws, data_dir, slide_path, request, sha256=sha256, display_name=name)
        except DataError as exc:
            status.update(state="failed", error=jobs.one_line_error(exc))  # what the worker records
        finally:
            if delete_slide:
                slide_path.unlink(missing_ok=True)
        atomic_write_json(job_dir / "status.json", status)
        return jobs.Job(job_dir)


@pytest.fixture
def tiny(predict_workspace):
    """(workspace, run folder) of the session's tiny predict workspace (tests/conftest.py)."""
    ws, run_dir, _ = predict_workspace
    return ws, run_dir


@pytest.fixture(autouse=True)
def fresh_caches():
    import streamlit as st

    st.cache_resource.clear()
    st.cache_data.clear()


@pytest.fixture
def launcher(tiny, monkeypatch: pytest.MonkeyPatch) -> InlineLauncher:
    ws, _ = tiny
    monkeypatch.setenv("HISTOGENE_WORKSPACE", str(ws.root))
    monkeypatch.delenv("HISTOGENE_DATA", raising=False)
    inline = InlineLauncher()
    monkeypatch.setattr(core.predict, "launch_prediction", inline)
    return inline


def open_page(query: dict | None = None) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=300)
    if query:
        at.query_params.update(query)
    at.run()
    at.switch_page(PAGE)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    if at.radio(key="predict-map").value != "pca":  # PCA placement: no UMAP fit in a unit test
        at.radio(key="predict-map").set_value("pca").run()
    return at


def upload(at: AppTest, name: str, data: bytes) -> AppTest:
    at.file_uploader(key="predict-file").upload(name, data)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def errors(at: AppTest) -> list[str]:
    return [e.value for e in at.error]


def headings(at: AppTest) -> list[str]:
    return [m.value for m in at.markdown if m.value.startswith("### ")]


def uploads_left(ws: Workspace) -> list[Path]:
    return sorted((ws.root / "uploads").glob("upload-*"))


def test_no_trained_run_links_to_training(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, testdata: Path):
    ws = workspace(tmp_path / "workspace")
    data = tmp_path / "data" / "slides"
    data.mkdir(parents=True)
    (data / "GTEX-1117F-0126.svs").symlink_to(testdata / "CMU-1-Small-Region.svs")
    monkeypatch.setenv("HISTOGENE_WORKSPACE", str(ws.root))
    monkeypatch.setenv("HISTOGENE_DATA", str(data.parent))
    at = AppTest.from_file(APP, default_timeout=120)
    at.run()
    at.switch_page(PAGE)
    at.run()
    assert not at.exception
    assert any("No trained run yet" in e for e in errors(at))
    assert [link.proto.page for link in at.get("page_link")] == ["training"]  # the Training page's URL path
    assert len(at.file_uploader) == 0


def test_upload_is_predicted_drawn_and_found_again_after_a_reload(tiny, launcher, testdata):
    ws, run_dir = tiny
    at = open_page()
    assert at.selectbox(key="predict-run").value == run_dir
    assert at.selectbox(key="predict-epoch").value == 1  # selected on validation (epoch 2 is best on test)
    data = (testdata / "CMU-1-Small-Region.svs").read_bytes()
    sha = hashlib.sha256(data).hexdigest()
    upload(at, "CMU-1-Small-Region.svs", data)
    assert len(launcher.launched) == 1  # started by the upload itself
    launched = launcher.launched[0]
    assert launched["sha"] == sha and launched["delete"] is True and launched["request"].epoch == 1
    assert launched["name"] == "CMU-1-Small-Region.svs"
    assert launched["request"].ranking.folds == 3  # the run's saved ranking, not the defaults
    assert launched["path"].parent == ws.root / "uploads" and launched["path"].suffix == ".svs"
    assert uploads_left(ws) == []  # deleted when done
    assert not errors(at), errors(at)
    assert at.subheader[0].value == "CMU-1-Small-Region.svs"  # the user's name, never the temporary file's
    prediction = core.predict.cached_prediction(ws, sha, launched["request"])
    assert headings(at) == [f"### {prediction.tissue}"]
    assert any("magnification 20x" in c.value and "assumed" not in c.value for c in at.caption)
    assert any(f"{prediction.tile_summary['considered']:,} tiles considered" in c.value for c in at.caption)
    assert len(at.get("plotly_chart")) == 5  # top 3, tiles, tissue heatmap, gene heatmap, reference map
    assert not any("draw scene 0 only" in i.value for i in at.info)  # a one-scene file: nothing to say
    table = at.dataframe[0].value
    assert table["R² (reliability)"].is_monotonic_decreasing and (table["R² (reliability)"] >= 0.1).all()
    at.slider(key="predict-r2").set_value(0.0).run()
    shown = at.dataframe[0].value
    assert len(shown) == (prediction.genes["r2"] >= 0).sum() >= len(table)
    gene = at.selectbox(key="predict-gene")
    assert len(gene.options) == len(shown)
    gene.set_value(str(prediction.genes.sort_values("r2")["gene_id"].iloc[-1])).run()
    assert not at.exception
    assert len(launcher.launched) == 1  # neither the threshold nor the gene starts a prediction
    assert any("coarser method" in e.proto.label for e in at.expander)
    assert [d.proto.label for d in at.get("download_button")] == ["Download the report (JSON)",
                                                                  "Download the report (CSV)"]
    assert at.query_params["slide"] in (sha, [sha])

    # a reload: a new session with only the URL finds the saved prediction (no upload, no new job)
    again = open_page({"slide": sha, "run": run_dir.name, "epoch": "1"})
    assert headings(again) == [f"### {prediction.tissue}"] and len(launcher.launched) == 1


class RunningLauncher:
    """launch_prediction stand-in whose job stays at the embedding step until `finish()`."""

    def __init__(self, ws: Workspace) -> None:
        self.ws = ws
        self.calls: list[tuple] = []

    def __call__(self, ws, data_dir, slide_path, request, delete_slide=False, sha256=None, name=None) -> jobs.Job:
        self.job_dir = Path(tempfile.mkdtemp(prefix="predict-running-", dir=ws.jobs_dir))
        self.calls.append((data_dir, Path(slide_path), request, delete_slide, sha256))
        self._write("running", {"done": 0.6, "total": 1.0, "message": "embedding 3 of 9 tiles", "step": "embed"})
        return jobs.Job(self.job_dir)

    def _write(self, state: str, progress: dict) -> None:
        atomic_write_json(self.job_dir / "status.json", {"id": self.job_dir.name, "kind": "predict", "state": state,
                                                         "progress": progress, "argv": [], "error": None})

    def finish(self) -> None:
        data_dir, path, request, delete, sha = self.calls[-1]
        predict_slide(self.ws, data_dir, path, request, sha256=sha)
        if delete:
            path.unlink()
        self._write("done", {"done": 1.0, "total": 1.0, "step": "report"})


def test_a_running_prediction_shows_each_steps_share_then_its_result(tiny, launcher, testdata, monkeypatch):
    ws, _ = tiny
    running = RunningLauncher(ws)
    monkeypatch.setattr(core.predict, "launch_prediction", running)
    at = open_page()
    at.number_input(key="predict-neighbours").set_value(3).run()  # a request not predicted yet
    upload(at, "slow.svs", (testdata / "CMU-1-Small-Region.svs").read_bytes())
    assert len(running.calls) == 1 and not at.subheader
    bar = at.get("progress")[0]
    assert bar.proto.value == 60 and "slow.svs" in bar.proto.text and "embedding 3 of 9 tiles" in bar.proto.text
    steps = next(c.value for c in at.caption if "→" in c.value)
    assert steps.startswith("✓ read the slide 3% → ✓ tile + QC 52% → **embed tiles 30%** → tissue 5%"), steps
    assert any(b.label == "Cancel the prediction" for b in at.button)
    running.finish()
    at.run()
    assert not at.exception and at.subheader[0].value == "slow.svs"
    assert len(running.calls) == 1 and uploads_left(ws) == []


def test_without_a_ranking_the_tissue_is_shown_and_the_ranking_offered(tiny, launcher, testdata, monkeypatch):
    from core.ranking import jobs as rank_jobs

    ranked = []
    monkeypatch.setattr(rank_jobs, "launch_ranking", lambda ws, root, source, params: ranked.append((source, params)))
    ws, run_dir = tiny
    at = open_page()
    at.selectbox(key="predict-ranking").set_value("other parameters").run()
    at.number_input(key="predict-comp").set_value(5).run()  # no ranking of this checkpoint at these parameters
    upload(at, "CMU-1-Small-Region.svs", (testdata / "CMU-1-Small-Region.svs").read_bytes())
    assert not errors(at) and headings(at)  # the tissue is predicted all the same
    assert any("No gene ranking for this run" in i.value for i in at.info)
    assert any("No gene map" in i.value for i in at.info)
    assert len(at.get("plotly_chart")) == 4  # top 3, tiles, tissue heatmap, reference map
    next(b for b in at.button if b.label.startswith("Rank this run's genes")).click().run()
    source, params = ranked[0]
    assert (source.epoch, Path(source.run_dir).name, params.components) == (1, run_dir.name, 5)


def test_two_sessions_get_their_own_results(tiny, launcher, testdata):
    ws, _ = tiny
    svs = (testdata / "CMU-1-Small-Region.svs").read_bytes()
    first = upload(open_page(), "mine.svs", svs)
    second = open_page()
    second.radio(key="predict-mode").set_value("A slide of the dataset").run()
    assert not any(b.label.startswith("Predict ") for b in first.button)
    sample = second.selectbox(key="predict-sample")
    next(b for b in second.button if b.label.startswith("Predict ")).click().run()
    assert not second.exception and not errors(second), errors(second)
    dataset_slide = launcher.launched[-1]["path"]
    assert launcher.launched[-1]["delete"] is False and dataset_slide.exists()  # a dataset slide is never deleted
    assert dataset_slide.name.startswith(sample.value)
    assert second.subheader[0].value == dataset_slide.name
    assert first.subheader[0].value == "mine.svs"
    # issue 19 item 6: the page says whether the reference leaves the slide's donor out
    assert any(c.value.startswith("Reference: ") and "leaves that donor's" in c.value for c in second.caption)
    assert any(c.value.startswith("Reference: ") and "not in the reference dataset" in c.value for c in first.caption)
    first.run()  # each session keeps its own slide
    assert first.subheader[0].value == "mine.svs"
    assert first.query_params["slide"] != second.query_params["slide"]


def test_kept_upload_stays_in_the_workspace(tiny, launcher, testdata):
    ws, _ = tiny
    at = open_page()
    at.checkbox(key="predict-keep").check().run()
    data = (testdata / "CMU-1-Small-Region.svs").read_bytes()
    upload(at, "keep-me.svs", data)
    kept = ws.root / "uploads" / "kept" / f"{hashlib.sha256(data).hexdigest()}.svs"
    assert kept.read_bytes() == data and uploads_left(ws) == []
    assert at.subheader[0].value == "keep-me.svs"
    kept.unlink()
    at.file_uploader(key="predict-file").clear().run()  # removing the file clears its result
    assert not at.exception and not at.subheader and "slide" not in at.query_params


def test_refused_uploads_name_the_file(tiny, launcher):
    from streamlit import config

    ws, _ = tiny
    at = open_page()
    upload(at, "notes.txt", b"hello")
    assert any(e.startswith("notes.txt: not a slide file") for e in errors(at)), errors(at)
    upload(at, "empty.svs", b"")
    assert "empty.svs: the file is empty" in errors(at)
    before = config.get_option("server.maxUploadSize")
    config.set_option("server.maxUploadSize", 1)  # megabytes
    try:
        upload(at, "huge.svs", b"\0" * (2 * 1024 * 1024))
    finally:
        config.set_option("server.maxUploadSize", before)
    assert any(e.startswith("huge.svs: the file is 2.0 MB, over the upload limit of 1.0 MB") for e in errors(at))
    assert not launcher.launched and uploads_left(ws) == []


def _png(array: np.ndarray) -> bytes:
    out = io.BytesIO()
    Image.fromarray(array).save(out, format="PNG")
    return out.getvalue()


def test_bad_slides_get_their_message_and_the_app_keeps_working(tiny, launcher, testdata):
    ws, _ = tiny
    svs = (testdata / "CMU-1-Small-Region.svs").read_bytes()
    rng = np.random.default_rng(0)
    deep = io.BytesIO()
    tifffile.imwrite(deep, rng.integers(0, 60000, (1200, 1200), dtype=np.uint16))
    cases = [
        ("holiday.svs", b"just some text, not a slide\n" * 20, "not a slide"),
        ("cut.svs", svs[: len(svs) // 2], "truncated"),
        ("grey.png", _png(rng.integers(0, 200, (1200, 1200), dtype=np.uint8)), "grayscale"),
        ("deep.tif", deep.getvalue(), "16-bit"),
        ("blank.png", _png(np.full((1500, 1500, 3), 245, np.uint8)), "no tissue found"),
    ]
    at = open_page()
    for name, data, problem in cases:
        upload(at, name, data)
        shown = errors(at)
        assert len(shown) == 1 and shown[0].startswith(f"{name}: ") and problem in shown[0], (name, shown)
        assert "upload-" not in shown[0]  # the user's file name, never the temporary file's
        assert len(at.get("plotly_chart")) == 0
    assert len(launcher.launched) == len(cases) and uploads_left(ws) == []
    at.switch_page("pages/overview.py")  # the rest of the app is untouched
    at.run()
    assert not at.exception


def _run_copy(ws: Workspace, run_dir: Path, name: str, **config_changes) -> Path:
    """A copy of the run with other checkpoint bytes (so no cached result of the first run answers for it)."""
    copy = ws.runs_dir / name
    shutil.copytree(run_dir / "checkpoints", copy / "checkpoints")
    with (copy / "checkpoints" / "epoch_001.pt").open("ab") as handle:
        handle.write(b"\0")
    config = json.loads((run_dir / "config.json").read_text())
    (copy / "config.json").write_text(json.dumps({**config, **config_changes}))
    return copy


def test_runs_whose_tissues_or_resolution_do_not_fit(tiny, launcher, testdata):
    ws, run_dir = tiny
    svs = (testdata / "CMU-1-Small-Region.svs").read_bytes()
    alien = _run_copy(ws, run_dir, "20250101-000000-alien", classes=["Brain - Cortex", "Testis"])
    coarse = _run_copy(ws, run_dir, "20250101-000000-coarse")
    tiling = dataset_tiling_params(ws, ws.demo_dir)
    try:
        at = open_page()
        at.selectbox(key="predict-run").set_value(alien).run()
        upload(at, "CMU-1-Small-Region.svs", svs)
        assert any("do not fit this reference dataset" in e for e in errors(at)), errors(at)
        record_dataset_tiling_params(ws, ws.demo_dir, replace(tiling, magnification=80.0))  # 0.125 µm/px tiles
        at = open_page()
        at.selectbox(key="predict-run").set_value(coarse).run()
        upload(at, "CMU-1-Small-Region.svs", svs)
        assert any(e.startswith("CMU-1-Small-Region.svs: resolution too low for the run") for e in errors(at)), \
            errors(at)
    finally:
        record_dataset_tiling_params(ws, ws.demo_dir, tiling)
        shutil.rmtree(alien)
        shutil.rmtree(coarse)


def test_a_multi_scene_slide_says_its_maps_show_scene_0_and_counts_the_other_scenes_tiles(tiny, launcher, tmp_path):
    from tests.predict_helpers import two_scene_ome_tiff

    ws, _ = tiny
    data = two_scene_ome_tiff(tmp_path / "sections.ome.tif").read_bytes()
    at = upload(open_page(), "sections.ome.tif", data)
    assert not errors(at), errors(at)
    prediction = core.predict.cached_prediction(ws, hashlib.sha256(data).hexdigest(), launcher.launched[0]["request"])
    kept = prediction.tiles[prediction.tiles["passed_qc"] & (prediction.tiles["predicted_tissue"] != "")]
    other = int((kept["scene"] == 1).sum())
    assert other > 0
    notes = [i.value for i in at.info if "scenes" in i.value]
    assert len(notes) == 1 and "draw scene 0 only" in notes[0], [i.value for i in at.info]
    assert f"{other:,} kept tiles came from scene 1" in notes[0]
