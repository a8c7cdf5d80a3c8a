"""What the Predict page draws for a slide and request, decided in core.predict.state (no AppTest needed)."""

from __future__ import annotations

import pytest

from core import jobs
from core.predict import state as predict_state
from core.predict.request import PredictRequest
from core.predict.state import AUTO, BUTTON, LINK, prediction_state

REQUEST = PredictRequest(run_dir="/ws/runs/r1", epoch=2)


class FakeJob:
    def __init__(self, state: str) -> None:
        self.state = state

    def status(self) -> dict:
        return {"state": self.state, "error": "DataError: planted"}


def _state(ws, monkeypatch, job=None, results=(None,), source="upload", launched=()):
    monkeypatch.setattr(predict_state, "find_prediction_job", lambda *args: job)
    found = iter(results)
    return prediction_state(ws, "ab" * 32, REQUEST, "key-1", lambda: next(found), source=source, launched=launched)


def test_a_cached_prediction_is_drawn_without_looking_for_a_job(ws, monkeypatch):
    assert _state(ws, monkeypatch, FakeJob(jobs.RUNNING), results=("result",)).prediction == "result"


def test_a_running_job_shows_its_panel(ws, monkeypatch):
    job = FakeJob(jobs.RUNNING)
    found = _state(ws, monkeypatch, job)
    assert found.running is job and found.prediction is None and not found.offer


@pytest.mark.parametrize("ended", [jobs.FAILED, jobs.CANCELLED])
def test_a_job_that_failed_or_was_cancelled_shows_its_outcome_and_offers_nothing(ws, monkeypatch, ended):
    found = _state(ws, monkeypatch, FakeJob(ended))
    assert found.ended["state"] == ended and not found.offer and found.running is None


def test_a_job_done_since_the_cached_miss_reads_the_result_again(ws, monkeypatch):
    assert _state(ws, monkeypatch, FakeJob(jobs.DONE), results=(None, "saved since")).prediction == "saved since"


def test_without_result_or_job_a_new_upload_starts_at_once_and_others_get_a_button(ws, monkeypatch):
    assert _state(ws, monkeypatch).offer == AUTO
    assert _state(ws, monkeypatch, launched=["key-1"]).offer == BUTTON  # started once: not again by itself
    assert _state(ws, monkeypatch, source="dataset").offer == BUTTON
    assert _state(ws, monkeypatch, source="link").offer == LINK  # a link has no file to predict
