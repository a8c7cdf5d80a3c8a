"""Each page through Streamlit's AppTest, on a tiny demo cohort in a temp workspace."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from core import jobs
from core.base.config import Workspace, workspace
from core.data.dataset import load_cohort
from core.demo import ensure_demo_cohort
from core.tiles.index import TilingParams, build_tile_index
from core.train import runs
from core.train.config import TrainConfig
from tests.run_helpers import run_with_epochs

APP = str(Path(__file__).resolve().parents[1] / "app.py")
TINY = {"n_donors": 4, "n_tissues": 4, "slide_size": (1792, 1792), "n_genes": 300, "workers": 1}


@pytest.fixture(scope="module")
def tiny_demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny demo cohort, generated once per module and only read (each test links it into its own workspace)."""
    ws = workspace(tmp_path_factory.mktemp("pages") / "workspace")
    return ensure_demo_cohort(ws, **TINY)


@pytest.fixture
def app_env(tiny_demo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Workspace:
    """A fresh workspace per test (no tile index, cache, runs or jobs from other tests) with the demo
    cohort hard-linked in, so no test depends on what ran before it."""
    ws = workspace(tmp_path / "workspace")
    shutil.copytree(tiny_demo, ws.demo_dir, copy_function=os.link, dirs_exist_ok=True)
    monkeypatch.setenv("HISTOGENE_WORKSPACE", str(ws.root))
    monkeypatch.delenv("HISTOGENE_DATA", raising=False)
    return ws


def _run(page: str | None = None) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=120)
    at.run()
    if page:
        at.switch_page(page)
        at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def test_overview_before_tiling_offers_to_tile(app_env):
    at = _run()
    labels = {m.label: m.value for m in at.metric}
    assert labels["Donors"] == "4"
    assert labels["Slides"] == str(len(list((app_env.demo_dir / "slides").glob("*.svs"))))
    assert any("Tile the slides" in b.label for b in at.button)
    assert len(at.get("plotly_chart")) >= 4  # per-tissue, sex, age, Hardy (+ genes)


def test_overview_after_tiling_shows_qc_and_examples(app_env):
    cohort = load_cohort(app_env.demo_dir, app_env)
    result = build_tile_index(cohort.samples[cohort.samples["has_slide"]], TilingParams(), app_env, workers=1)
    at = _run()
    labels = {m.label: m.value for m in at.metric}
    assert labels["Tiles after QC"] == str(int(result.index["passed_qc"].sum()))
    assert not any("Tile the slides" in b.label for b in at.button)
    tissues = [s for s in at.selectbox if s.label == "Example tiles of"]
    assert tissues and set(tissues[0].options) == set(result.index["tissue"].unique())
    assert len(at.get("image")) >= 1  # example tiles drew


def test_overview_rerun_rebuilds_no_figure_and_reads_no_slide(app_env, monkeypatch):
    # A rerun (every click) rebuilt every Plotly figure, re-read example tiles and re-hashed slides:
    # seconds per run. Now it reuses them while the index and the slides are unchanged.
    import streamlit as st

    import core.base.cache
    from core.data import figures as data_figures
    from core.tiles import figures
    from core.tiles import index as tiling

    cohort = load_cohort(app_env.demo_dir, app_env)
    build_tile_index(cohort.samples[cohort.samples["has_slide"]], TilingParams(), app_env, workers=1)
    st.cache_resource.clear()
    st.cache_data.clear()
    calls: list[str] = []

    def counted(name, fn):
        def wrapper(*args, **kwargs):
            calls.append(name)
            return fn(*args, **kwargs)
        return wrapper

    for module, name in ((data_figures, "per_tissue_counts_bar"), (data_figures, "breakdown_bar"),
                         (figures, "qc_funnel"), (figures, "rejections_per_tissue"),
                         (figures, "thumbnail_with_tiles"), (data_figures, "gene_filter_funnel"),
                         (data_figures, "log_tpm_histogram")):
        monkeypatch.setattr(module, name, counted(name, getattr(module, name)))
    monkeypatch.setattr(tiling, "read_tile", counted("read_tile", tiling.read_tile))
    monkeypatch.setattr(tiling, "index_key", counted("index_key", tiling.index_key))
    import core.data.dataset

    monkeypatch.setattr(core.data.dataset, "cohort_info", counted("cohort_info", core.data.dataset.cohort_info))
    monkeypatch.setattr(core.base.cache, "_content_fingerprint",
                        counted("hash", core.base.cache._content_fingerprint))
    at = _run()
    first = set(calls)
    assert {"per_tissue_counts_bar", "qc_funnel", "thumbnail_with_tiles", "log_tpm_histogram", "index_key",
            "cohort_info"} <= first
    calls.clear()
    at.run()
    assert not at.exception
    assert calls == [], f"a rerun rebuilt or re-read: {sorted(set(calls))}"
    assert len(at.get("plotly_chart")) >= 8 and len(at.get("image")) >= 1  # still all drawn


def test_a_frozen_figure_serializes_like_the_figure_and_only_once():
    import plotly.graph_objects as go

    from pages.overview_cache import frozen

    figure = go.Figure(go.Bar(x=["a", "b"], y=[3, 4]))
    shown = frozen(figure)
    assert shown.to_dict() == figure.to_dict()
    assert shown.to_dict() is shown.to_dict()  # built once: what st.plotly_chart asks for on every run


def test_overview_shows_a_clear_error_for_a_bad_dataset(app_env, tmp_path, monkeypatch):
    bad = tmp_path / "bad"
    (bad / "slides").mkdir(parents=True)
    shutil.copy(app_env.demo_dir / "GTEx_Portal_histology.csv", bad)
    (bad / "expression.gct").write_text("not a gct\n")
    monkeypatch.setenv("HISTOGENE_DATA", str(bad))
    at = AppTest.from_file(APP, default_timeout=60)
    at.run()
    assert not at.exception
    assert at.error and "expression.gct" in at.error[0].value


def test_first_start_generates_the_demo_in_a_background_job(tmp_path, monkeypatch):
    ws = workspace(tmp_path / "fresh")
    monkeypatch.setenv("HISTOGENE_WORKSPACE", str(ws.root))
    monkeypatch.delenv("HISTOGENE_DATA", raising=False)
    at = AppTest.from_file(APP, default_timeout=60)
    at.run()
    assert not at.exception
    assert any("generating the synthetic" in i.value for i in at.info)
    job = jobs.active_job(ws)
    assert job is not None and job.kind == "demo"
    jobs.request_cancel(job)
    final = jobs.wait(job, timeout=120)
    assert final["state"] in ("cancelled", "done")


def test_a_bad_slide_is_reported_and_the_rest_is_tiled(app_env, tmp_path, monkeypatch):
    data = tmp_path / "with-bad-slide"
    shutil.copytree(app_env.demo_dir, data, symlinks=True)
    bad = data / "slides" / "GTEX-BAD01-0001.svs"
    bad.write_text("this is not a slide")
    monkeypatch.setenv("HISTOGENE_DATA", str(data))
    cohort = load_cohort(data, app_env)
    result = build_tile_index(cohort.samples[cohort.samples["has_slide"]], TilingParams(), app_env, workers=1)
    assert "GTEX-BAD01-0001" in result.summary["errors"]
    at = AppTest.from_file(APP, default_timeout=120)
    at.run()
    assert not at.exception
    assert any("GTEX-BAD01-0001" in e.value for e in at.error)
    labels = {m.label: m.value for m in at.metric}
    assert int(labels["Tiles after QC"]) > 0


def _training_page() -> AppTest:
    return _run("pages/training.py")


def test_training_form_shows_the_default_configuration(app_env):
    at = _training_page()
    defaults = TrainConfig()
    inputs = {n.label: n.value for n in at.number_input}
    assert inputs["Epochs"] == defaults.epochs
    assert inputs["Batch size"] == defaults.batch_size
    assert inputs["Learning rate"] == defaults.lr
    assert at.selectbox[0].value == defaults.arch


TORCH_PROBE = """
import sys
from streamlit.testing.v1 import AppTest
at = AppTest.from_file(sys.argv[1], default_timeout=120)
at.run()
at.switch_page("pages/training.py")
at.run()
assert not at.exception, [e.value for e in at.exception]
assert any(b.label == "Start training" for b in at.button), [b.label for b in at.button]
print("torch imported" if "torch" in sys.modules else "no torch")
"""


def test_the_training_form_draws_without_importing_torch(app_env):
    # In a fresh interpreter: this test process has imported torch long ago. Drawing the form (no run
    # selected, no ImageNet weights asked for) must not pay torch's seconds of import.
    done = subprocess.run([sys.executable, "-c", TORCH_PROBE, APP], cwd=Path(APP).parent, capture_output=True,
                          text=True, timeout=300, env=os.environ)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip().splitlines()[-1] == "no torch"


def test_launch_from_the_form_starts_a_worker_that_can_be_cancelled(app_env):
    at = _training_page()
    next(n for n in at.number_input if n.label == "Epochs").set_value(3)
    next(n for n in at.number_input if n.label == "Input resolution (px)").set_value(32)
    next(b for b in at.button if b.label == "Start training").click()
    at.run()
    assert not at.exception
    job = jobs.active_job(app_env)
    assert job is not None and job.kind == "train"
    assert job.dir.parent == app_env.runs_dir
    row = runs.list_runs(app_env).set_index("run_id").loc[job.id]
    assert (row["epochs_planned"], row["image_size"]) == (3, 32)  # from the request, before the worker's config
    jobs.request_cancel(job)
    assert jobs.wait(job, timeout=300)["state"] in ("cancelled", "done")
    history = runs.list_runs(app_env)
    assert job.id in set(history["run_id"])


def test_a_second_launch_is_refused_naming_the_running_job(app_env):
    # Long enough to outlast a slow first page run on a loaded machine; cancelled at the end.
    blocker = jobs.launch(app_env, "demo", ["jobs", "--sleep-demo", "3000", "--step-s", "0.2"],
                          module="tests.jobs_worker")
    try:
        before = set(app_env.runs_dir.glob("*"))
        at = _training_page()
        next(b for b in at.button if b.label == "Start training").click()
        at.run()
        assert not at.exception
        assert any(blocker.id in w.value for w in at.warning), [w.value for w in at.warning]
        assert set(app_env.runs_dir.glob("*")) == before, "a refused launch leaves no run folder"
    finally:
        jobs.request_cancel(blocker)
        jobs.wait(blocker, timeout=60)


def test_slide_browser_says_when_magnification_and_pixel_size_were_assumed(app_env, tmp_path, monkeypatch):
    import numpy as np
    from PIL import Image

    data = tmp_path / "with-png-slide"
    shutil.copytree(app_env.demo_dir, data, symlinks=True)
    svs = sorted((data / "slides").glob("*.svs"))[0]
    sample_id = svs.stem
    svs.unlink()
    rng = np.random.default_rng(0)
    pixels = np.full((1024, 1024, 3), 245, np.uint8)
    pixels[200:800, 200:800] = rng.integers(120, 220, (600, 600, 3), dtype=np.uint8)  # a stained square
    Image.fromarray(pixels).save(data / "slides" / f"{sample_id}.png")  # PNG carries no magnification or MPP
    monkeypatch.setenv("HISTOGENE_DATA", str(data))
    at = AppTest.from_file(APP, default_timeout=120)
    at.run()
    next(s for s in at.selectbox if s.label == "Slide").select(sample_id)
    at.run()
    assert not at.exception
    warnings = " ".join(w.value for w in at.warning)
    assert "20x assumed" in warnings and "µm/px assumed" in warnings
    facts = at.dataframe[-1].value
    assert facts.loc["Magnification", "value"] == "20x (assumed)"
    assert facts.loc["File", "value"] == f"{sample_id}.png"


def test_slide_browser_shows_an_svs_slides_own_metadata(app_env):
    at = _run()
    facts = at.dataframe[-1].value
    assert facts.loc["Format (slideio driver)", "value"] == "SVS"
    assert "(assumed)" not in facts.loc["Magnification", "value"]
    assert not any("assumed" in w.value for w in at.warning)


def test_overview_warns_when_samples_are_their_own_donors_and_saves_the_chosen_column(app_env, tmp_path,
                                                                                       monkeypatch):
    from core.base.settings import load_dataset_settings

    data = tmp_path / "patients"
    data.mkdir()
    (data / "histology.csv").write_text("Tissue Sample ID,Tissue,Patient\nP1-a,Lung,P1\nP1-b,Liver,P1\n")
    monkeypatch.setenv("HISTOGENE_DATA", str(data))
    at = AppTest.from_file(APP, default_timeout=60)
    at.run()
    assert not at.exception
    assert any("2 of 2 sample(s) have no donor ID" in w.value for w in at.warning)
    assert {m.label: m.value for m in at.metric}["Donors"] == "2"
    next(s for s in at.selectbox if s.label == "Donor column").select("Patient")
    at.run()
    assert not at.exception
    assert load_dataset_settings(app_env, data)["donor_column"] == "Patient"
    assert {m.label: m.value for m in at.metric}["Donors"] == "1"
    assert not any("have no donor ID" in w.value for w in at.warning)


def test_run_history_shows_the_selected_epoch_and_disk_use_and_prunes_checkpoints(app_env):
    import json

    run_dir = runs.new_run_dir(app_env)
    (run_dir / "config.json").write_text(json.dumps({**TrainConfig(epochs=3).to_dict(), "classes": ["A", "B"]}))
    (run_dir / "summary.json").write_text(json.dumps({
        "status": "done", "epochs_done": 3, "selected_epoch": 2, "val_acc_selected": 0.9,
        "test_acc_selected": 0.8, "test_acc_final": 0.7, "train_seconds": 4000}))
    (run_dir / "checkpoints").mkdir()
    for epoch in (1, 2, 3):
        (run_dir / "checkpoints" / f"epoch_{epoch:03d}.pt").write_bytes(b"x" * 2**20)
    try:
        at = _training_page()
        history = at.dataframe[0].value.set_index("run_id").loc[run_dir.name]
        assert (history["selected_epoch"], history["test_acc_selected"], history["test_acc_final"]) == (2, 0.8, 0.7)
        assert history["duration"] == "1 h 06 min" and history["disk_mb"] >= 3
        assert "best_test_acc" not in at.dataframe[0].value.columns
        next(s for s in at.selectbox if s.label == "Run").select(run_dir.name)
        at.run()
        assert next(m for m in at.multiselect if m.label == "Keep the checkpoints of epochs").value == [2]
        next(b for b in at.button if b.label == "Delete the other checkpoints").click()
        at.run()
        assert not at.exception
        assert runs.checkpoint_epochs(run_dir) == [2, 3]  # the selected one and the latest
    finally:
        runs.delete_run(app_env, run_dir.name)


def test_a_run_whose_latest_epoch_has_no_confusion_matrix_is_drawn_without_one(app_env):
    """Older and synthetic runs log no confusion (NaN in the epochs table): the page says so, no traceback;
    a run that logs one gets its heatmap."""
    run_dir = run_with_epochs(app_env, [{"confusion": [[3, 1], [0, 4]]}, {}])  # the latest line lacks it
    at = _training_page()
    assert not at.exception, [e.value for e in at.exception]
    captions = [c.value for c in at.caption]
    assert any("No confusion matrix in the metrics of epoch 2" in c for c in captions), captions
    assert _chart_keys(at) == {f"epochs-{run_dir.name}"}  # the epoch curves only
    runs.delete_run(app_env, run_dir.name)
    run_dir = run_with_epochs(app_env, [{"confusion": [[3, 1], [0, 4]], "val_confusion": [[2, 0], [1, 2]]}])
    at = _training_page()
    assert not at.exception, [e.value for e in at.exception]
    assert not any("No confusion matrix" in c.value for c in at.caption)
    assert _chart_keys(at) == {f"epochs-{run_dir.name}", f"confusion-{run_dir.name}"}


def _chart_keys(at: AppTest) -> set[str]:
    """The keys of the latest run's charts (the run history's own charts have none)."""
    return {chart.key for chart in at.get("plotly_chart") if getattr(chart, "key", None)}


def test_the_confusion_matrix_is_the_selected_epochs_and_the_latest_is_one_click_away(app_env):
    """The selected epoch is the model every other page uses: its test confusion is drawn first."""
    import base64
    import json

    import numpy as np

    matrices = {1: [[1, 3], [3, 1]], 2: [[4, 0], [1, 3]], 3: [[2, 2], [0, 4]]}
    run_dir = run_with_epochs(app_env, [{"val_acc": acc, "confusion": matrices[i + 1]}
                                         for i, acc in enumerate((0.5, 0.9, 0.6))])
    try:
        at = _training_page()
        assert not at.exception, [e.value for e in at.exception]

        def drawn() -> tuple[np.ndarray, str]:
            chart = next(c for c in at.get("plotly_chart") if c.key == f"confusion-{run_dir.name}")
            spec = json.loads(chart.proto.spec)
            z = spec["data"][0]["z"]  # plotly's typed array: base64 bytes, dtype and shape
            values = np.frombuffer(base64.b64decode(z["bdata"]), dtype=z["dtype"]).reshape(2, 2)
            return values, spec["layout"]["title"]["text"]

        choice = at.radio(key=f"confusion-epoch-{run_dir.name}")
        assert choice.options == ["epoch 2 (selected)", "epoch 3 (latest)"] and choice.value == "epoch 2 (selected)"
        z, title = drawn()
        assert np.allclose(z, np.array(matrices[2]) / 4) and "epoch 2 (selected)" in title
        choice.set_value("epoch 3 (latest)").run()
        z, title = drawn()
        assert np.allclose(z, np.array(matrices[3]) / 4) and "epoch 3 (latest)" in title
    finally:
        runs.delete_run(app_env, run_dir.name)


def test_epoch_confusion_reads_the_named_epoch():
    import pandas as pd

    epochs = pd.DataFrame({"epoch": [1, 2], "confusion": [[[1, 0], [0, 1]], [[5, 1], [2, 7]]]})
    assert runs.epoch_confusion(epochs, 1).tolist() == [[1, 0], [0, 1]]
    assert runs.epoch_confusion(epochs, None).tolist() == [[5, 1], [2, 7]]
    assert runs.epoch_confusion(epochs, 3) is None  # not logged


@pytest.mark.parametrize("value", [None, float("nan"), [[1, 2]], [[1, 2], [3]], "x", [[1, None], [0, 1]]])
def test_latest_confusion_is_none_unless_the_latest_epoch_has_a_square_matrix(value):
    import pandas as pd

    epochs = pd.DataFrame({"epoch": [1, 2], "confusion": [[[1, 0], [0, 1]], value]})
    assert runs.epoch_confusion(epochs, None) is None
    epochs.at[1, "confusion"] = [[5, 1], [2, 7]]
    assert runs.epoch_confusion(epochs, None).tolist() == [[5, 1], [2, 7]]
    assert runs.epoch_confusion(epochs.iloc[:0], None) is None
