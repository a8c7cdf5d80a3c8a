"""The demo tour's chain on a tiny cohort with a tiny model (core.tour.steps.TourParams is the seam; its defaults are
the real ones): steps in order, a cancel mid-training resumed from the last complete epoch, a rerun that skips
every step, a failing step named with its message, no second tour while one runs; and the pages opening on
the tour's results (Overview's links, the explorer's map, the ranking) through AppTest."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from core import jobs
from core.__main__ import main
from core.base.config import Workspace, workspace
from core.base.errors import JobBusyError
from core.demo import ensure_demo_cohort
from core.jobs import JobReporter
from core.maps.reduce import MapParams
from core.predict import cached_prediction, file_sha256
from core.ranking.cv import RankParams
from core.tour.jobs import latest_tour, launch_tour, tour_argv
from core.tour.steps import (
    CACHED,
    CANCELLED,
    DONE,
    FAILED,
    KIND,
    PENDING,
    STEP_NAMES,
    TourParams,
    TourStepError,
    predict_request,
    run_tour,
    step_rows,
    tour_record,
)
from core.train import runs
from core.train.config import TrainConfig

APP = str(Path(__file__).resolve().parents[1] / "app.py")
TINY = TourParams(
    demo={"n_donors": 6, "n_tissues": 2, "slide_size": (1024, 1024), "n_genes": 300, "workers": 1},
    train=replace(TrainConfig(), epochs=2, image_size=32, batch_size=16, threads=1),
)


class Recorder:
    """The job's reporter, recording the order of the steps it reports and asking for a cancel (through the
    job's cancel flag, as the page's button does) once `cancel_when(extra, message)` holds."""

    def __init__(self, job: JobReporter, cancel_when=None) -> None:
        self.job, self.cancel_when = job, cancel_when
        self.steps: list[str] = []

    @property
    def result(self):
        return self.job.result

    @result.setter
    def result(self, value) -> None:  # the tour's result is the job's (status.json), as in the CLI
        self.job.result = value

    def progress(self, done, total, message="", **extra) -> None:
        self.job.progress(done, total, message, **extra)
        step = extra.get("step")
        if step and (not self.steps or self.steps[-1] != step):
            self.steps.append(step)
        if self.cancel_when is not None and self.cancel_when(extra, message):
            jobs.request_cancel(self.job.job)
            self.cancel_when = None

    def cancel_requested(self) -> bool:
        return self.job.cancel_requested()


def _tour(ws: Workspace, params: TourParams = TINY, cancel_when=None) -> tuple[Recorder, dict]:
    with JobReporter(ws, KIND) as job:
        recorder = Recorder(job, cancel_when)
        run_tour(ws, params, recorder)  # a cancel ends the job `cancelled` (JobReporter swallows JobCancelled)
    return recorder, job.job.status()


def _states(status: dict) -> dict[str, str]:
    return {row["name"]: row["state"] for row in step_rows(status)}


def _in_epoch_2(extra: dict, message: str) -> bool:
    return extra.get("step") == "train" and message.startswith("Train the default model: epoch 2/")


@pytest.fixture(scope="module")
def toured(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """One tiny tour cancelled during its second epoch, resumed to the end, then run once more."""
    ws = workspace(tmp_path_factory.mktemp("tour") / "workspace")
    first, first_status = _tour(ws, cancel_when=_in_epoch_2)
    first_run = tour_record(ws).get("trained_run")
    first_epochs = runs.read_metrics(first_run)[1]["epoch"].tolist() if first_run else None
    second, second_status = _tour(ws)
    third, third_status = _tour(ws)
    return {"ws": ws, "first": (first, first_status, first_run, first_epochs), "second": (second, second_status),
            "third": (third, third_status)}


def test_default_params_are_the_real_defaults_and_round_trip():
    params = TourParams()
    assert params.train == TrainConfig() and params.rank == RankParams()
    assert params.map_params == MapParams(method="pca") and params.data_dir is None and params.demo == {}
    assert TourParams.from_dict(json.loads(json.dumps(TINY.to_dict()))) == TINY
    assert tour_argv() == ["tour", "--json"] and "--params-json" in tour_argv(TINY)


def test_a_cancel_during_training_stops_the_chain_there(toured):
    recorder, status, run_dir, epochs_then = toured["first"]
    assert status["state"] == jobs.CANCELLED
    assert recorder.steps == ["demo", "tiles", "train"]
    states = _states(status)
    assert [states[n] for n in STEP_NAMES] == [DONE, DONE, CANCELLED, PENDING, PENDING, PENDING, PENDING]
    assert run_dir is not None
    assert epochs_then == [1]  # epoch 1 kept; epoch 2 was under way


def test_a_rerun_resumes_the_same_run_and_runs_the_rest_in_order(toured):
    recorder, status = toured["second"]
    run_dir = toured["first"][2]
    assert status["state"] == jobs.DONE
    assert recorder.steps == list(STEP_NAMES)
    states = _states(status)
    assert [states[n] for n in STEP_NAMES] == [CACHED, CACHED, DONE, DONE, DONE, DONE, DONE]
    result = status["result"]
    assert result["run_dir"] == run_dir and result["epoch"] in (1, 2)
    assert len(runs.list_runs(toured["ws"])) == 1  # the cancelled run was continued, not started again
    _, epochs = runs.read_metrics(run_dir)
    assert epochs["epoch"].tolist() == [1, 2]
    steps = {row["name"]: row for row in result["steps"]}
    assert steps["rank"]["result"]["genes"] > 0 and steps["rank"]["result"]["repeats"] == RankParams().repeats
    assert all(row["seconds"] is not None and row["cpu_seconds"] is not None for row in result["steps"])


def test_the_predicted_slide_is_a_held_out_test_donors_and_the_predict_page_request_finds_it(toured):
    ws = toured["ws"]
    record = tour_record(ws)
    split = runs.run_split(record["run_dir"])
    assert split.set_index("sample_id").loc[record["predicted_sample"], "split"] == "test"
    step = {row["name"]: row for row in toured["second"][1]["result"]["steps"]}["predict"]["result"]
    assert step["sample_id"] == record["predicted_sample"] and step["tissue"]
    request = predict_request(record["run_dir"], record["epoch"], RankParams(**record["rank_params"]))
    found = cached_prediction(ws, file_sha256(record["predicted_slide"]), request)
    assert found is not None and found.tissue == step["tissue"]


def test_a_third_run_skips_every_step(toured):
    recorder, status = toured["third"]
    assert status["state"] == jobs.DONE and recorder.steps == list(STEP_NAMES)
    assert set(_states(status).values()) == {CACHED}
    assert len(runs.list_runs(toured["ws"])) == 1


def test_a_failing_step_is_named_with_its_message(tmp_path):
    ws = workspace(tmp_path / "workspace")
    empty = tmp_path / "no-slides"
    empty.mkdir()
    params = replace(TINY, data_dir=str(empty))
    with pytest.raises(TourStepError) as caught, JobReporter(ws, KIND) as job:
        run_tour(ws, params, Recorder(job))
    assert caught.value.step == "tiles"
    assert "tour step 'tiles'" in str(caught.value) and str(empty) in str(caught.value)
    status = job.job.status()
    assert status["state"] == jobs.FAILED
    rows = {row["name"]: row for row in step_rows(status)}
    assert rows["tiles"]["state"] == FAILED and str(empty) in rows["tiles"]["message"]
    assert rows["demo"]["state"] == CACHED and rows["train"]["state"] == PENDING


def test_the_cli_exits_2_naming_the_failing_step(tmp_path, capsys):
    empty = tmp_path / "no-slides"
    empty.mkdir()
    params = json.dumps(replace(TINY, data_dir=str(empty)).to_dict())
    code = main(["--workspace", str(tmp_path / "workspace"), "tour", "--params-json", params])
    err = capsys.readouterr().err
    assert code == 2
    assert "error: tour step 'tiles'" in err and str(empty) in err


def test_no_second_tour_while_one_runs(tmp_path):
    ws = workspace(tmp_path / "workspace")
    with JobReporter(ws, KIND) as running:
        with pytest.raises(JobBusyError, match="tour job is already running"):
            launch_tour(ws, TINY)
        assert latest_tour(ws) == running.job
    assert [job.id for job in jobs.list_jobs(ws, kind=KIND)] == [running.id]


def test_a_worker_that_died_mid_step_reads_failed_there():
    status = {"state": jobs.FAILED, "progress": {"steps": [{"name": "demo", "state": CACHED},
                                                           {"name": "tiles", "state": "running"}]}}
    states = _states(status)
    assert states["tiles"] == FAILED and states["train"] == PENDING


# Pages --------------------------------------------------------------------------------------------------

@pytest.fixture
def toured_app(toured, monkeypatch: pytest.MonkeyPatch) -> Workspace:
    monkeypatch.setenv("HISTOGENE_WORKSPACE", str(toured["ws"].root))
    monkeypatch.delenv("HISTOGENE_DATA", raising=False)
    return toured["ws"]


def _page(page: str | None = None) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=120)
    at.run()
    if page:
        at.switch_page(page)
        at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def test_overview_says_the_tour_is_done_and_links_every_page(toured_app):
    at = _page()
    assert any("demo tour is done" in s.value for s in at.success)
    labels = {link.proto.label for link in at.get("page_link")}
    assert {"Training", "Embeddings explorer", "Gene rankings"} <= labels


def test_the_explorer_opens_on_the_tours_map(toured_app):
    at = _page("pages/explorer.py")
    assert not [i.value for i in at.info if "not computed yet" in i.value]
    assert at.get("plotly_chart"), "the default slide map is drawn"
    assert at.selectbox(key="A-run").value == Path(tour_record(toured_app)["run_dir"])


def test_the_rankings_page_opens_on_the_tours_ranking(toured_app):
    at = _page("pages/rankings.py")
    assert not [i.value for i in at.info if "Not ranked yet" in i.value]
    assert any(m.label == "Genes recovered" for m in at.metric)


def test_the_predict_page_opens_on_the_tours_prediction(toured_app):
    record = tour_record(toured_app)
    at = _page("pages/predict.py")
    assert at.radio(key="predict-mode").value == "A slide of the dataset"  # the default is an upload
    assert "predict-go" not in {b.key for b in at.button}  # found: no button to predict it
    assert at.selectbox(key="predict-sample").value == record["predicted_sample"]
    assert any(h.value == Path(record["predicted_slide"]).name for h in at.subheader)
    step = {row["name"]: row for row in step_rows(latest_tour(toured_app).status())}["predict"]["result"]
    assert any(m.value == f"### {step['tissue']}" for m in at.markdown)


def test_the_button_launches_the_tour_and_its_steps_are_shown(tmp_path, monkeypatch):
    ws = workspace(tmp_path / "workspace")
    ensure_demo_cohort(ws, n_donors=2, n_tissues=2, slide_size=(640, 512), n_genes=200, workers=1)
    monkeypatch.setenv("HISTOGENE_WORKSPACE", str(ws.root))
    monkeypatch.delenv("HISTOGENE_DATA", raising=False)
    at = _page()
    at.button(key="tour-go").click().run()
    job = latest_tour(ws)
    assert job is not None and job.kind == KIND
    try:
        shown = " ".join(m.value for m in at.markdown)
        assert all(label in shown for label in ("Generate the demo cohort", "Train the default model",
                                                "Rank genes"))
        assert at.button(key="tour-cancel")
    finally:
        jobs.request_cancel(job)
        final = jobs.wait(job, timeout=180)
    assert final["state"] in (jobs.CANCELLED, jobs.DONE)
    at.run()
    assert not at.exception
    if final["state"] == jobs.CANCELLED:
        assert at.button(key="tour-go").label == "Resume the demo tour"


def test_first_start_shows_the_running_tour_instead_of_starting_a_demo_job(tmp_path, monkeypatch):
    ws = workspace(tmp_path / "workspace")  # no demo cohort yet: the tour's first step is generating it
    monkeypatch.setenv("HISTOGENE_WORKSPACE", str(ws.root))
    monkeypatch.delenv("HISTOGENE_DATA", raising=False)
    with JobReporter(ws, KIND, min_write_interval_s=0) as job:
        job.progress(0.05, 1.0, "Generate the demo cohort", step="demo",
                     steps=[{"name": "demo", "label": "Generate the demo cohort", "page": "overview",
                             "state": "running", "fraction": 0.5, "message": "slide 3 of 12"}])
        at = _page()
        shown = " ".join(m.value for m in at.markdown)
        assert "Generate the demo cohort" in shown and "Rank genes" in shown
        assert at.button(key="tour-cancel")
        assert jobs.list_jobs(ws, kind="demo") == []  # the page did not launch a second generation


def test_a_tour_that_found_everything_cached_does_not_claim_the_work_took_a_second():
    from pages.tour_panel import done_message

    steps = ["demo", "tiles", "train", "embed", "map", "rank", "predict"]
    all_cached = [{"name": name, "state": CACHED} for name in steps]
    assert done_message(all_cached, 1.2) == (
        "The demo tour is done: every step's result was already there (checked in 1 s). "
        "Every page opens on its results.")
    mixed = [{"name": "demo", "state": CACHED}] + [{"name": name, "state": "done"} for name in steps[1:]]
    assert done_message(mixed, 421.0) == (f"The demo tour is done ({runs.format_duration(421.0)}; 1 of 7 steps were "
                                          "already done): every page now opens on its results.")
    fresh = [{"name": name, "state": "done"} for name in steps]
    assert done_message(fresh, None) == "The demo tour is done: every page now opens on its results."
