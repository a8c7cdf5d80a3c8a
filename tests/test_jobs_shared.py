"""Non-exclusive jobs (predictions): they run beside the one-writer job and beside each other, each with its
own lock in its folder, and their state (running, done, cancelled, died) reads like any other job's."""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Callable

import pytest

from core.base.config import Workspace
from core.base.errors import JobBusyError
from core.jobs import (
    OWN_LOCK_NAME,
    Job,
    JobReporter,
    JobState,
    active_job,
    job_state,
    launch,
    request_cancel,
    wait,
)

pytestmark = pytest.mark.timeout(120)
WORKER = "tests.jobs_worker"


def sleeper(ws: Workspace, steps: int, exclusive: bool, step_s: float = 0.05) -> Job:
    argv = ["jobs", "--sleep-demo", str(steps), "--step-s", str(step_s)]
    if not exclusive:
        argv.append("--non-exclusive")
    return launch(ws, "sleep-demo", argv, module=WORKER, exclusive=exclusive)


def wait_until(condition: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.02)


def progress_of(job: Job) -> float:
    return json.loads((job.dir / "status.json").read_text())["progress"]["done"] or 0


def stop(job: Job) -> None:
    request_cancel(job)
    try:
        wait(job, timeout=20)
    except TimeoutError:
        os.kill(json.loads((job.dir / "status.json").read_text())["pid"], signal.SIGKILL)


def test_non_exclusive_jobs_run_beside_the_writer_and_each_other(ws: Workspace) -> None:
    writer = sleeper(ws, 400, exclusive=True)
    try:
        wait_until(lambda: progress_of(writer) >= 1)
        with pytest.raises(JobBusyError):  # the writer still refuses a second writer
            sleeper(ws, 3, exclusive=True)
        first, second = sleeper(ws, 200, exclusive=False), sleeper(ws, 200, exclusive=False)
        wait_until(lambda: progress_of(first) >= 2 and progress_of(second) >= 2)
        assert job_state(first) == job_state(second) == JobState.RUNNING  # both at once, with the writer
        assert job_state(writer) == JobState.RUNNING
        assert active_job(ws) == writer  # the page's "one writer" panel still shows the writer only
        assert (first.dir / OWN_LOCK_NAME).is_file()
        assert json.loads((first.dir / "status.json").read_text())["exclusive"] is False
        stop(first)
        assert first.status()["state"] == "cancelled" and job_state(second) == JobState.RUNNING
        stop(second)
        assert second.status()["state"] == "cancelled"
    finally:
        stop(writer)


def test_a_short_non_exclusive_job_finishes_done_while_the_writer_runs(ws: Workspace) -> None:
    writer = sleeper(ws, 400, exclusive=True)
    try:
        wait_until(lambda: progress_of(writer) >= 1)
        job = sleeper(ws, 3, exclusive=False, step_s=0.02)
        status = wait(job, timeout=30)
        assert status["state"] == "done" and status["result"] == {"steps": 3}
        assert job_state(job) == JobState.DONE and job_state(writer) == JobState.RUNNING
    finally:
        stop(writer)


def test_a_killed_non_exclusive_job_reads_failed(ws: Workspace) -> None:
    job = sleeper(ws, 400, exclusive=False)
    wait_until(lambda: progress_of(job) >= 1)
    os.kill(json.loads((job.dir / "status.json").read_text())["pid"], signal.SIGKILL)
    wait_until(lambda: job_state(job) == JobState.STALE)
    status = job.status()
    assert status["state"] == "failed" and status["error"] == "worker process died"


def test_in_process_non_exclusive_reporter_ignores_the_worker_lock(ws: Workspace) -> None:
    writer = sleeper(ws, 400, exclusive=True)
    try:
        wait_until(lambda: progress_of(writer) >= 1)
        with JobReporter(ws, "predict", exclusive=False) as job:
            assert job_state(job.job) == JobState.RUNNING
            job.result = {"ok": True}
        assert job.job.status()["state"] == "done"
        with pytest.raises(JobBusyError):  # an exclusive reporter still waits its turn
            with JobReporter(ws, "rank"):
                pass
    finally:
        stop(writer)
