"""The demo tour as a background job: its `tour` command line, its launch, and the tour a page finds again."""

from __future__ import annotations

import json
from typing import Any

from core import jobs
from core.base.config import Workspace
from core.tour.steps import KIND, TourParams


def tour_argv(params: TourParams | None = None) -> list[str]:
    """The `tour` command line (core.cli.tour parses it); default parameters are not spelled out."""
    argv = ["tour", "--json"]
    if params is not None and not params.is_default():
        argv += ["--params-json", json.dumps(params.to_dict())]
    return argv


def launch_tour(ws: Workspace, params: TourParams | None = None) -> jobs.Job:
    """Start the tour as the workspace's one background job; JobBusyError names the running job (so a
    second tour, or any other job, cannot start while one runs)."""
    return jobs.launch(ws, KIND, tour_argv(params))


def latest_tour(ws: Workspace) -> jobs.Job | None:
    """The newest tour job (running or ended), from the jobs folder: what a reload or a new tab finds."""
    found = jobs.list_jobs(ws, kind=KIND)
    return found[0] if found else None


def last_attempt(ws: Workspace, params: TourParams | None = None) -> dict[str, Any] | None:
    """The newest tour with `params` when it failed or was cancelled (its status and log tail), else None."""
    return jobs.last_failure(ws, KIND, tour_argv(params))
