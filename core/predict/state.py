"""What the Predict page draws for one slide and request: the result, the running job, how the last job ended,
or what to offer. Decided here from the caches and the job folders, so the page only draws it."""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core import jobs
from core.base.config import Workspace
from core.predict.jobs import find_prediction_job
from core.predict.request import PredictRequest

AUTO, BUTTON, LINK = "auto", "button", "link"


@dataclass(frozen=True)
class PredictionState:
    """Exactly one of: `prediction` (draw it), `running` (its progress panel), `ended` (the status of the job this
    session started when it failed or was cancelled: its outcome, no new start), else `offer`: AUTO (start at once:
    a new upload), BUTTON (a Predict button) or LINK (a linked slide without its file: nothing to start)."""

    prediction: Any = None
    running: jobs.Job | None = None
    ended: dict[str, Any] | None = None
    offer: str = ""


def prediction_state(ws: Workspace, sha256: str, request: PredictRequest, request_key: str,
                     lookup: Callable[[], Any], *, source: str, known_job: str | Path | None = None,
                     launched: Collection[str] = ()) -> PredictionState:
    """The state of slide `sha256` (from `source`: "upload", "dataset" or "link") for `request` (whose key is
    `request_key`). `lookup` reads
    the cached prediction (None while there is none); `known_job` is the folder of the job this session launched
    for it; `launched` holds the request keys this session has started for the slide already."""
    prediction = lookup()
    if prediction is None:
        job = find_prediction_job(ws, sha256, request, known_job)
        status = job.status() if job is not None else {}
        if status.get("state") == jobs.RUNNING:
            return PredictionState(running=job)
        if status.get("state") in (jobs.FAILED, jobs.CANCELLED):
            return PredictionState(ended=status)
        if job is not None:  # done: its result was saved after our cached miss
            prediction = lookup()
    if prediction is not None:
        return PredictionState(prediction=prediction)
    if source == "link":
        return PredictionState(offer=LINK)
    return PredictionState(offer=AUTO if source == "upload" and request_key not in launched else BUTTON)
