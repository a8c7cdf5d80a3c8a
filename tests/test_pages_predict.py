"""The Predict page through AppTest (Streamlit 1.67's AppTest drives st.file_uploader: `upload(name, bytes)`):
an uploaded real SVS is saved, hashed and predicted in the background, the result is drawn and read back after a
reload; each bad input gets a clear message naming the file; no trained run links to the Training page.

The background job is replaced by an in-process stand-in (`FakePredictor`): it records what the page launched
and answers with a prediction built from the real slide's thumbnail, or with the DataError a bad file raises."""

from __future__ import annotations

import hashlib
import json
import sys
import types
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from core import jobs, runs
from core.config import Workspace, workspace
from core.errors import DataError
from core.fileio import atomic_write_json
from core.ranking.cv import RankParams
from core.slides import open_slide

APP = str(Path(__file__).resolve().parents[1] / "app.py")
PAGE = "pages/predict.py"
TISSUES = ["Adipose", "Lung", "Muscle"]


@dataclass
class FakePrediction:
    """The SlidePrediction fields the page draws (tests/contract: /work/coord/predict-api.md)."""

    file_sha256: str
    slide_name: str
    info: dict
    thumbnail: np.ndarray
    thumb_scale: float
    tiles: pd.DataFrame
    tile_summary: dict
    tissue: str
    top3: list
    warnings: list
    genes: pd.DataFrame
    transcriptome: pd.DataFrame
    map: dict
    neighbours: pd.DataFrame
    seconds: dict = field(default_factory=dict)
    cached: bool = False
    classes: list = field(default_factory=lambda: list(TISSUES))
    notes: dict = field(default_factory=lambda: {"epoch": "epoch 2: selected by validation accuracy"})

    def tile_gene_map(self, gene_id: str) -> np.ndarray:
        row = int(np.flatnonzero(self.genes["gene_id"] == gene_id)[0])
        values = np.full(len(self.tiles), np.nan)
        kept = self.tiles["passed_qc"].to_numpy()
        values[kept] = self.genes["predicted"].iloc[row] + np.linspace(-1, 1, kept.sum())
        return values

    def to_json(self) -> dict:
        return {"tissue": self.tissue, "top3": self.top3, "tiles": self.tile_summary,
                "genes": self.genes[["symbol", "predicted", "r2"]].to_dict("records"), "warnings": self.warnings}

    def to_csv(self) -> str:
        return self.genes.to_csv(index=False)


def fake_prediction(slide: Path, sha: str, name: str) -> FakePrediction:
    with open_slide(slide) as opened:
        thumb, scale = opened.thumbnail(512)
        info = opened.info
    step = 448
    xs, ys = np.meshgrid(np.arange(0, info.width - step, step), np.arange(0, info.height - step, step))
    n = xs.size
    rng = np.random.default_rng(0)
    passed = rng.random(n) > 0.25
    tissue = np.where(passed, rng.choice(TISSUES, n), "")
    tiles = pd.DataFrame({"x": xs.ravel(), "y": ys.ravel(), "read_size": step, "passed_qc": passed,
                          "reason": np.where(passed, "", "blur"), "predicted_tissue": tissue,
                          "confidence": np.where(passed, rng.uniform(0.4, 1.0, n), np.nan)})
    genes = pd.DataFrame({"gene_id": [f"ENSG0000{i}" for i in range(4)], "symbol": ["LEP", "SFTPC", "ACTA1", "XIST"],
                          "predicted": [7.5, 3.0, 2.0, 1.0], "r2": [0.62, 0.35, 0.12, 0.02],
                          "ref_tissue": "Adipose", "ref_low": 5.0, "ref_median": 7.0, "ref_high": 9.0})
    reference = pd.DataFrame({"sample_id": [f"GTEX-R{i}-0001" for i in range(9)], "tissue": TISSUES * 3,
                              "x": np.arange(9.0), "y": np.arange(9.0) % 3})
    return FakePrediction(
        file_sha256=sha, slide_name=name,
        info={"width": info.width, "height": info.height, "magnification": 20.0, "magnification_assumed": True,
              "mpp": 0.499, "mpp_assumed": False},
        thumbnail=thumb, thumb_scale=scale, tiles=tiles,
        tile_summary={"considered": n, "kept": int(passed.sum()), "rejected": {"blur": int((~passed).sum())}},
        tissue="Adipose", top3=[{"tissue": "Adipose", "probability": 0.71}, {"tissue": "Lung", "probability": 0.2},
                                {"tissue": "Muscle", "probability": 0.09}],
        warnings=["This slide is farther from every reference slide than reference slides are from each other: "
                  "it may be unlike the reference (out of distribution)."],
        genes=genes, transcriptome=genes[["gene_id", "symbol", "predicted"]],
        map={"method": "umap", "reference": reference, "point": (4.0, 1.0)},
        neighbours=pd.DataFrame({"sample_id": ["GTEX-R0-0001", "GTEX-R3-0001"], "tissue": ["Adipose", "Adipose"],
                                 "distance": [0.5, 0.7], "slide_path": [str(slide), "/nowhere/missing.svs"]}),
        seconds={"read": 0.2, "tiles": 1.0}, cached=False,
    )


@dataclass(frozen=True)
class FakeRequest:
    run_dir: str
    epoch: int | None = None
    ranking: RankParams = field(default_factory=RankParams)
    r2_threshold: float = 0.1
    neighbours: int = 5
    map_method: str = "umap"
    compute_ranking: bool = False

    @property
    def key(self) -> str:
        return hashlib.sha256(repr(self).encode()).hexdigest()[:16]


class FakePredictor:
    """launch_prediction / cached_prediction stand-ins: a launch 'runs' at once, in process."""

    def __init__(self, ws: Workspace) -> None:
        self.ws = ws
        self.saved: dict[tuple[str, str], Any] = {}
        self.launched: list[dict] = []
        self.error_for: dict[str, str] = {}  # file name -> DataError problem

    def cached_prediction(self, ws, sha, request):
        return self.saved.get((sha, request.key))

    def launch_prediction(self, ws, data_dir, slide_path, request, delete_slide=False, sha256=None):
        slide_path = Path(slide_path)
        data = slide_path.read_bytes()
        sha = hashlib.sha256(data).hexdigest()
        self.launched.append({"path": slide_path, "request": request, "delete": delete_slide, "sha": sha,
                              "existed": slide_path.exists()})
        job_dir = ws.jobs_dir / f"predict-{len(self.launched)}"
        job_dir.mkdir(parents=True)
        status = {"id": job_dir.name, "kind": "predict", "state": "done", "progress": {"done": 1, "total": 1},
                  "error": None, "file_sha256": sha}
        problem = next((p for name, p in self.error_for.items() if data.startswith(name.encode())), None)
        if problem is not None:
            status.update(state="failed", error=str(DataError(slide_path, problem)))
        else:
            self.saved[(sha, request.key)] = fake_prediction(self.slide, sha, "CMU-1-Small-Region.svs")
        atomic_write_json(job_dir / "status.json", status)
        if delete_slide:
            slide_path.unlink()
        return jobs.Job(job_dir)


@pytest.fixture(autouse=True)
def fresh_caches():
    import streamlit as st

    st.cache_resource.clear()
    st.cache_data.clear()


@pytest.fixture
def predict_ws(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, testdata: Path) -> tuple[Workspace, FakePredictor]:
    ws = workspace(tmp_path / "workspace")
    monkeypatch.setenv("HISTOGENE_WORKSPACE", str(ws.root))
    data = tmp_path / "data"
    (data / "slides").mkdir(parents=True)
    (data / "slides" / "GTEX-1117F-0126.svs").symlink_to(testdata / "CMU-1-Small-Region.svs")
    monkeypatch.setenv("HISTOGENE_DATA", str(data))
    fake = FakePredictor(ws)
    fake.slide = testdata / "CMU-1-Small-Region.svs"
    module = types.ModuleType("core.predict")
    module.PredictRequest = FakeRequest
    module.cached_prediction = fake.cached_prediction
    module.launch_prediction = fake.launch_prediction
    module.default_run = lambda ws: next((Path(p) for p in runs.list_runs(ws)["path"]), None)
    module.file_sha256 = lambda path: hashlib.sha256(Path(path).read_bytes()).hexdigest()
    module.predict_argv = lambda data_dir, path, request, delete_slide=False, sha256=None: [
        "predict", str(path), repr(request), str(sha256)]
    monkeypatch.setitem(sys.modules, "core.predict", module)
    return ws, fake


def make_run(ws: Workspace) -> Path:
    run_dir = ws.runs_dir / "20261129-0400-pred"
    (run_dir / "checkpoints").mkdir(parents=True)
    (run_dir / "config.json").write_text(json.dumps({"arch": "efficientnet_b0", "image_size": 64, "epochs": 3,
                                                     "classes": TISSUES}))
    (run_dir / "summary.json").write_text(json.dumps({"status": "done", "epochs_done": 3, "selected_epoch": 2,
                                                      "val_acc_selected": 0.9}))
    for epoch in (1, 2, 3):
        (run_dir / "checkpoints" / f"epoch_{epoch:03d}.pt").write_bytes(b"fake")
    return run_dir


def open_page() -> AppTest:
    at = AppTest.from_file(APP, default_timeout=120)
    at.run()
    at.switch_page(PAGE)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def upload(at: AppTest, name: str, data: bytes) -> AppTest:
    at.file_uploader(key="predict-file").upload(name, data)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def errors(at: AppTest) -> list[str]:
    return [e.value for e in at.error]


def test_no_trained_run_links_to_training(predict_ws):
    at = open_page()
    assert any("No trained run yet" in e for e in errors(at))
    assert [link.proto.page for link in at.get("page_link")] == ["training"]  # the Training page's URL path
    assert len(at.file_uploader) == 0


def test_upload_is_predicted_drawn_and_found_again_after_a_reload(predict_ws, testdata):
    ws, fake = predict_ws
    run_dir = make_run(ws)
    at = open_page()
    assert at.selectbox(key="predict-run").value == run_dir
    assert at.selectbox(key="predict-epoch").value == 2  # selected on validation
    data = (testdata / "CMU-1-Small-Region.svs").read_bytes()
    upload(at, "CMU-1-Small-Region.svs", data)
    sha = hashlib.sha256(data).hexdigest()
    assert len(fake.launched) == 1  # started by the upload itself
    launched = fake.launched[0]
    assert launched["sha"] == sha and launched["delete"] is True and launched["request"].epoch == 2
    assert launched["path"].parent == ws.root / "uploads" and launched["path"].suffix == ".svs"
    assert not launched["path"].exists()  # deleted when done
    assert not errors(at)
    assert "### Adipose" in [m.value for m in at.markdown]
    assert any("out of distribution" in w.value for w in at.warning)
    assert any("20x (assumed" in c.value for c in at.caption)
    charts = at.get("plotly_chart")
    assert len(charts) == 5  # top 3, tiles, tissue heatmap, gene heatmap, reference map
    tables = at.dataframe
    assert list(tables[0].value["Gene"]) == ["LEP", "SFTPC", "ACTA1"]  # R² >= 0.1, most reliable first
    at.slider(key="predict-r2").set_value(0.3).run()
    assert list(at.dataframe[0].value["Gene"]) == ["LEP", "SFTPC"]
    assert at.selectbox(key="predict-gene").options == ["LEP (ENSG00000)", "SFTPC (ENSG00001)"]
    at.selectbox(key="predict-gene").set_value("ENSG00001").run()
    assert not at.exception
    assert len(fake.launched) == 1  # the threshold and the gene never start a prediction
    assert any("the coarser method" in e.proto.label for e in at.expander)
    downloads = [d.proto.label for d in at.get("download_button")]
    assert downloads == ["Download the report (JSON)", "Download the report (CSV)"]
    assert at.query_params["slide"] in (sha, [sha])

    # a reload: a new session with only the URL finds the saved prediction (no upload, no new job)
    again = AppTest.from_file(APP, default_timeout=120)
    again.query_params.update({"slide": sha, "run": run_dir.name, "epoch": "2"})
    again.run()
    again.switch_page(PAGE)
    again.run()
    assert not again.exception
    assert "### Adipose" in [m.value for m in again.markdown] and len(fake.launched) == 1


def test_a_dataset_slide_is_predicted_on_request_and_never_deleted(predict_ws, testdata):
    ws, fake = predict_ws
    make_run(ws)
    at = open_page()
    at.radio(key="predict-mode").set_value("A slide of the dataset").run()
    assert not fake.launched
    next(b for b in at.button if b.label.startswith("Predict")).click().run()
    assert not at.exception
    assert fake.launched[0]["delete"] is False and fake.launched[0]["path"].name == "GTEX-1117F-0126.svs"
    assert (Path(fake.launched[0]["path"])).exists()
    assert "### Adipose" in [m.value for m in at.markdown]


def test_kept_upload_stays_in_the_workspace(predict_ws, testdata):
    ws, fake = predict_ws
    make_run(ws)
    at = open_page()
    at.checkbox(key="predict-keep").check().run()
    data = (testdata / "CMU-1-Small-Region.svs").read_bytes()
    upload(at, "CMU-1-Small-Region.svs", data)
    kept = ws.root / "uploads" / "kept" / f"{hashlib.sha256(data).hexdigest()}.svs"
    assert fake.launched[0]["delete"] is False and fake.launched[0]["path"] == kept and kept.exists()


@pytest.mark.parametrize(("name", "content", "problem"), [
    ("notes.txt", b"hello", "notes.txt: not a slide file"),
    ("empty.svs", b"", "empty.svs: the file is empty"),
])
def test_refused_uploads_name_the_file(predict_ws, name, content, problem):
    ws, fake = predict_ws
    make_run(ws)
    at = upload(open_page(), name, content)
    assert any(problem in e for e in errors(at)), errors(at)
    assert not fake.launched and list((ws.root / "uploads").glob("upload-*")) == []


def test_over_the_upload_limit(predict_ws):
    from streamlit import config

    ws, fake = predict_ws
    make_run(ws)
    before = config.get_option("server.maxUploadSize")
    config.set_option("server.maxUploadSize", 1)  # megabytes
    try:
        at = upload(open_page(), "huge.svs", b"\0" * (2 * 1024 * 1024))
    finally:
        config.set_option("server.maxUploadSize", before)
    assert any("huge.svs: the file is 2.0 MB, over the upload limit of 1.0 MB" in e for e in errors(at)), errors(at)
    assert not fake.launched


@pytest.mark.parametrize("problem", [
    "not a slide: no reader opens it (OpenSlide, slideio, TIFF, PIL)",
    "truncated or corrupt: the image data ends early",
    "a grayscale image: predictions need RGB H&E",
    "a 16-bit image: predictions need 8-bit RGB",
    "no tissue found: the tissue mask is empty",
    "the run was trained on 64 px tiles at 20x: this slide states 5x",
])
def test_bad_slides_get_their_message_and_nothing_else_changes(predict_ws, problem):
    ws, fake = predict_ws
    make_run(ws)
    fake.error_for["BAD"] = problem
    at = upload(open_page(), "my-slide.tiff", b"BAD slide bytes")
    assert f"my-slide.tiff: {problem}" in errors(at)  # the user's name, not the temporary file's
    assert not any("upload-" in e for e in errors(at))
    assert len(at.get("plotly_chart")) == 0
    assert list((ws.root / "uploads").glob("upload-*")) == []
    # the app still works: another page opens
    at.switch_page("pages/training.py")
    at.run()
    assert not at.exception
