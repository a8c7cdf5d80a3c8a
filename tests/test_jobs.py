"""Background jobs: launch, one-writer lock, progress, cancel, death of the worker, CLI."""

from __future__ import annotations

import errno
import fcntl
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from core.base.config import Workspace
from core.base.errors import DataError, JobBusyError
from core.jobs import (
    HOLDER_NAME,
    LOCK_NAME,
    Job,
    JobCancelled,
    JobReporter,
    JobState,
    active_job,
    job_state,
    launch,
    list_jobs,
    pid_alive,
    request_cancel,
    wait,
)
from core.train import runs
from tests import jobs_worker

pytestmark = pytest.mark.timeout(120)

# Workers run through the light test entry module (same launch path, no torch-heavy imports).
WORKER = "tests.jobs_worker"


def launch_demo(ws: Workspace, steps: int, step_s: float = 0.05, fail_at: int | None = None, **kw) -> Job:
    argv = ["jobs", "--sleep-demo", str(steps), "--step-s", str(step_s)]
    if fail_at is not None:
        argv += ["--fail-at", str(fail_at)]
    kw.setdefault("module", WORKER)
    return launch(ws, "sleep-demo", argv, **kw)


def wait_until(condition: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.02)


def disk_status(job: Job) -> dict:
    return json.loads((job.dir / "status.json").read_text())


@pytest.fixture
def running_job(ws: Workspace) -> Iterator[Job]:
    """A long sleep-demo worker that has made some progress; stopped after the test."""
    job = launch_demo(ws, steps=400, step_s=0.05)
    wait_until(lambda: (disk_status(job)["progress"]["done"] or 0) >= 2)
    yield job
    request_cancel(job)
    try:
        wait(job, timeout=20)
    except TimeoutError:
        os.kill(disk_status(job)["pid"], signal.SIGKILL)


def test_launch_through_python_m_core_runs_to_done(ws: Workspace) -> None:
    job = launch_demo(ws, steps=3, step_s=0.02, module="core")
    assert job.dir.parent == ws.jobs_dir and job.id.startswith("sleep-demo-")
    status = wait(job, timeout=30)
    assert status["state"] == "done", status
    assert status["result"] == {"steps": 3}
    assert status["progress"]["done"] == status["progress"]["total"] == 3
    assert isinstance(status["pid"], int) and status["pid"] != os.getpid()
    assert status["ended"] is not None and status["error"] is None
    assert "step 3/3" in job.log_tail()
    assert active_job(ws) is None


def test_progress_is_visible_on_disk_while_running(running_job: Job) -> None:
    first = disk_status(running_job)
    assert first["state"] == "running" and first["progress"]["total"] == 400
    wait_until(lambda: disk_status(running_job)["progress"]["done"] > first["progress"]["done"])
    assert disk_status(running_job)["progress"]["message"].startswith("step ")
    assert running_job.status()["state"] == "running"


def test_second_launch_is_refused_naming_the_running_job(ws: Workspace, running_job: Job) -> None:
    with pytest.raises(JobBusyError, match=running_job.id) as refused:
        launch_demo(ws, steps=1)
    assert "sleep-demo" in str(refused.value) and "since" in str(refused.value)
    assert [path.name for path in ws.jobs_dir.iterdir()] == [running_job.id]  # the refusal made no folder


def test_cli_style_reporter_refuses_while_a_launched_job_holds_the_lock(ws: Workspace, running_job: Job) -> None:
    with pytest.raises(JobBusyError, match=running_job.id):
        with JobReporter(ws, "tiles"):
            pass
    assert running_job.status()["state"] == "running"


def test_fresh_job_object_finds_the_running_job(ws: Workspace, running_job: Job) -> None:
    # A new tab or a restarted server knows only the workspace (or the folder).
    found = active_job(ws)
    assert found == running_job and found.kind == "sleep-demo"
    assert Job(running_job.dir).status()["state"] == "running"  # no workspace given: read from status.json
    assert list_jobs(ws)[0] == running_job


def test_cancel_ends_the_job_cancelled_and_frees_the_lock(ws: Workspace, running_job: Job) -> None:
    assert request_cancel(running_job) is True
    status = wait(running_job, timeout=20)
    assert status["state"] == "cancelled"
    assert status["progress"]["done"] < 400
    assert active_job(ws) is None
    assert request_cancel(running_job) is False  # nothing left to cancel


def test_racing_launches_start_exactly_one_job(ws: Workspace) -> None:
    racers = 6
    barrier = threading.Barrier(racers)
    started: list[Job] = []
    refused: list[JobBusyError] = []

    def race() -> None:
        barrier.wait()
        try:
            started.append(launch_demo(ws, steps=400, step_s=0.05))
        except JobBusyError as exc:
            refused.append(exc)

    threads = [threading.Thread(target=race) for _ in range(racers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(started) == 1 and len(refused) == racers - 1
    winner = started[0]
    assert all(winner.id in str(exc) for exc in refused)
    request_cancel(winner)
    assert wait(winner, timeout=20)["state"] == "cancelled"


def test_killed_worker_is_reported_failed_and_a_new_launch_is_allowed(ws: Workspace, running_job: Job) -> None:
    os.kill(disk_status(running_job)["pid"], signal.SIGKILL)
    wait_until(lambda: running_job.status()["state"] != "running")
    status = running_job.status()
    assert status["state"] == "failed" and status["error"] == "worker process died"
    assert job_state(running_job) == JobState.STALE
    assert any(line.startswith("step ") for line in status["log_tail"])
    assert active_job(ws) is None
    follow_up = launch_demo(ws, steps=2, step_s=0.01)
    assert wait(follow_up, timeout=30)["state"] == "done"


def test_exception_in_worker_fails_with_its_message(ws: Workspace) -> None:
    job = launch_demo(ws, steps=5, step_s=0.01, fail_at=2)
    status = wait(job, timeout=30)
    assert status["state"] == "failed"
    assert status["error"] == "RuntimeError: demo failure at step 2"
    log = (job.dir / "log.txt").read_text()
    assert "Traceback" in log and "demo failure at step 2" in log
    assert active_job(ws) is None


def test_worker_that_dies_before_reporting_is_failed_with_its_log(ws: Workspace) -> None:
    job = launch(ws, "sleep-demo", ["jobs", "--no-such-flag"], module=WORKER)
    status = wait(job, timeout=30)
    assert status["state"] == "failed" and status["error"] == "worker process died"
    assert any("unrecognized arguments: --no-such-flag" in line for line in status["log_tail"])


def test_in_process_reporter_holds_the_lock_and_finishes_done(ws: Workspace) -> None:
    with JobReporter(ws, "tiles", min_write_interval_s=0) as reporter:
        job = reporter.job
        assert active_job(ws) == job and job.status()["state"] == "running"
        reporter.progress(5, 10, "slides", kept=42)
        assert disk_status(job)["progress"] == {"done": 5, "total": 10, "message": "slides", "kept": 42}
        with pytest.raises(JobBusyError):
            launch_demo(ws, steps=1)
        reporter.result = {"kept": 42}
    status = job.status()
    assert status["state"] == "done" and status["result"] == {"kept": 42}
    assert status["pid"] == os.getpid()
    assert active_job(ws) is None


def test_progress_writes_are_throttled(ws: Workspace) -> None:
    with JobReporter(ws, "tiles", min_write_interval_s=60) as reporter:
        for done in range(1, 100):
            reporter.progress(done, 100)
        assert disk_status(reporter.job)["progress"]["done"] == 0  # nothing written within the interval
    assert disk_status(reporter.job)["progress"]["done"] == 99  # the exit writes the latest


def test_reporter_exception_marks_failed_and_propagates(ws: Workspace) -> None:
    with pytest.raises(DataError):
        with JobReporter(ws, "tiles") as reporter:
            raise DataError("/data/slide.svs", "not a slide")
    status = reporter.job.status()
    assert status["state"] == "failed" and status["error"] == "DataError: /data/slide.svs: not a slide"
    assert "Traceback" in (reporter.job.dir / "log.txt").read_text()
    assert active_job(ws) is None


def test_reporter_cancel_flag_and_job_cancelled(ws: Workspace) -> None:
    with JobReporter(ws, "tiles") as reporter:
        assert not reporter.cancel_requested()
        assert request_cancel(reporter.job) is True
        assert reporter.cancel_requested()
    assert reporter.job.status()["state"] == "cancelled"

    with JobReporter(ws, "embed") as second:  # JobCancelled is swallowed: a cancel is not an error
        raise JobCancelled("stopped by user")
    assert second.job.status()["state"] == "cancelled" and second.job.status()["error"] == "stopped by user"


def test_list_jobs_newest_first_across_jobs_and_runs(ws: Workspace) -> None:
    with JobReporter(ws, "tiles") as older:
        pass
    time.sleep(0.01)
    with JobReporter(ws, "train", ws.runs_dir / "run-a") as newer:
        pass
    assert list_jobs(ws) == [newer.job, older.job]
    assert list_jobs(ws, kind="tiles") == [older.job]
    assert newer.job.dir.parent == ws.runs_dir and newer.job.id == "run-a"


def test_job_folder_without_status_raises_data_error(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no status.json"):
        Job(tmp_path / "nothing").status()


def test_corrupt_status_raises_data_error_naming_the_file(tmp_path: Path) -> None:
    (tmp_path / "status.json").write_text("{not json")
    with pytest.raises(DataError, match="status.json: job status is not valid JSON"):
        Job(tmp_path).status()
    (tmp_path / "status.json").write_text('{"id": "x"}')
    with pytest.raises(DataError, match="no 'state' field"):
        Job(tmp_path).status()


def test_bad_job_kind_is_rejected(ws: Workspace) -> None:
    with pytest.raises(ValueError, match="job kind"):
        launch(ws, "../escape", ["jobs"])


def test_cli_lists_jobs_as_json_and_text(ws: Workspace, capsys: pytest.CaptureFixture[str]) -> None:
    with JobReporter(ws, "tiles") as reporter:
        reporter.progress(3, 4, "slides")
    assert jobs_worker.main(["--workspace", str(ws.root), "jobs", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [(s["id"], s["state"], s["progress"]["done"]) for s in listed] == [(reporter.id, "done", 3)]
    assert jobs_worker.main(["--workspace", str(ws.root), "jobs"]) == 0
    line = capsys.readouterr().out
    assert reporter.id in line and "done" in line and "3/4" in line


def test_cli_cancel_of_unknown_id_is_a_data_error(ws: Workspace) -> None:
    with pytest.raises(DataError, match="no job with id 'nope'"):
        jobs_worker.main(["--workspace", str(ws.root), "jobs", "--cancel", "nope"])


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc to see zombie state")
def test_a_zombie_worker_counts_as_dead() -> None:
    # A finished child that nobody reaped still answers kill(pid, 0); it must not look alive.
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    wait_until(lambda: Path(f"/proc/{child.pid}/stat").read_text().rsplit(")", 1)[-1].split()[0] == "Z")
    assert pid_alive(os.getpid()) and not pid_alive(child.pid)
    child.wait()


def _hold_lock_as(
    ws: Workspace, job_id: str, state: str, seconds: float, parent: Path | None = None, **status: object
) -> subprocess.Popen:
    """A process holding the worker lock for `seconds`, named as job `job_id` whose status is `state`."""
    job_dir = (parent or ws.jobs_dir) / job_id
    job_dir.mkdir(parents=True)
    (job_dir / "status.json").write_text(json.dumps({"id": job_id, "kind": "tiles", "state": state, **status}))
    code = ("import fcntl, os, sys, time; fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT); "
            "fcntl.flock(fd, fcntl.LOCK_EX); print('locked', flush=True); time.sleep(float(sys.argv[2]))")
    ws.root.mkdir(parents=True, exist_ok=True)
    holder = subprocess.Popen([sys.executable, "-c", code, str(ws.root / LOCK_NAME), str(seconds)],
                              stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "locked"
    (ws.root / HOLDER_NAME).write_text(json.dumps(
        {"id": job_id, "kind": "tiles", "pid": holder.pid, "dir": str(job_dir), "since": "now"}))
    return holder


def test_a_launch_waits_for_a_worker_that_ended_but_is_still_exiting(ws: Workspace) -> None:
    holder = _hold_lock_as(ws, "ended-job", "failed", seconds=1.0)
    try:
        job = launch_demo(ws, steps=1)  # refused at once before: "a tiles job is already running"
        assert wait(job, timeout=60)["state"] == "done"
    finally:
        holder.wait()


def test_a_launch_waits_for_a_worker_that_exits_between_the_lock_probe_and_its_state(ws: Workspace) -> None:
    # The race behind resume failing right after a failed run: the probe sees the lock held, then the
    # worker's pid is gone when its state is read (it looks plain `failed`, not exiting). Refused at once
    # before; the lock is about to be free, so the launch must wait for it.
    holder = _hold_lock_as(ws, "just-ended", "failed", seconds=1.0)
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    named = json.loads((ws.root / HOLDER_NAME).read_text())
    (ws.root / HOLDER_NAME).write_text(json.dumps({**named, "pid": gone.pid}))
    try:
        assert job_state(Job(ws.jobs_dir / "just-ended", ws)) == JobState.FAILED
        job = launch_demo(ws, steps=1)
        assert wait(job, timeout=60)["state"] == "done"
    finally:
        holder.kill()
        holder.wait()


def test_a_launch_refused_after_the_grace_period_names_the_lock_when_no_running_job_holds_it(
    ws: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("core.jobs.acquire.EXITING_WORKER_GRACE_S", 0.3)  # the module that reads it
    holder = _hold_lock_as(ws, "orphan-lock", "done", 30.0)
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    named = json.loads((ws.root / HOLDER_NAME).read_text())
    (ws.root / HOLDER_NAME).write_text(json.dumps({**named, "pid": gone.pid}))
    try:
        with pytest.raises(JobBusyError, match="worker lock .* still held .* not by a running job .*orphan-lock"):
            launch_demo(ws, steps=1)
    finally:
        holder.kill()
        holder.wait()


def test_a_launch_is_still_refused_by_a_worker_that_is_running(ws: Workspace) -> None:
    holder = _hold_lock_as(ws, "busy-job", "running", seconds=30.0)
    try:
        started = time.monotonic()
        with pytest.raises(JobBusyError, match="busy-job"):
            launch_demo(ws, steps=1)
        assert time.monotonic() - started < 2.0  # no grace period for a live job
    finally:
        holder.kill()
        holder.wait()


def test_job_state_tells_starting_running_and_exiting_apart(ws: Workspace) -> None:
    # The launcher writes pid None; the worker's reporter writes its pid; the end state comes before exit.
    cases = [("starting", "running", {"pid": None}), ("running", "running", {"pid": 1}), ("exiting", "done", {})]
    for job_id, recorded, extra in cases:
        holder = _hold_lock_as(ws, job_id, recorded, 30.0, workspace=str(ws.root), **extra)
        try:
            job = Job(ws.jobs_dir / job_id)
            assert job_state(job) == JobState(job_id)
            assert job.status()["state"] == recorded  # readers keep the four recorded states
            assert (active_job(ws) == job) is JobState(job_id).active
        finally:
            holder.kill()
            holder.wait()
        assert job_state(job) == (JobState.DONE if recorded == "done" else JobState.STALE)
        assert active_job(ws) is None


def test_active_job_ignores_a_worker_that_is_only_exiting(ws: Workspace) -> None:
    # Pages rerun while active_job names a job: one that has ended made them loop until its exit.
    holder = _hold_lock_as(ws, "ended-job", "done", 30.0)
    try:
        assert job_state(Job(ws.jobs_dir / "ended-job", ws)) == JobState.EXITING
        assert active_job(ws) is None
    finally:
        holder.kill()
        holder.wait()


def test_a_running_status_is_stale_when_another_job_holds_the_lock(ws: Workspace) -> None:
    orphan = ws.jobs_dir / "orphan"
    orphan.mkdir(parents=True)
    (orphan / "status.json").write_text(json.dumps({"id": "orphan", "state": "running", "workspace": str(ws.root)}))
    holder = _hold_lock_as(ws, "other", "running", 30.0, pid=1)
    try:
        assert job_state(Job(orphan)) == JobState.STALE
        assert Job(orphan).status()["state"] == "failed"
        assert active_job(ws) == Job(ws.jobs_dir / "other")
    finally:
        holder.kill()
        holder.wait()


def test_unknown_recorded_state_is_a_data_error(ws: Workspace) -> None:
    (ws.jobs_dir / "odd").mkdir(parents=True)
    (ws.jobs_dir / "odd" / "status.json").write_text(json.dumps({"id": "odd", "state": "paused"}))
    with pytest.raises(DataError, match="unknown job state 'paused'"):
        job_state(Job(ws.jobs_dir / "odd", ws))


def test_a_launch_refused_after_the_grace_period_says_the_job_is_only_exiting(
    ws: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("core.jobs.acquire.EXITING_WORKER_GRACE_S", 0.3)  # the module that reads it
    holder = _hold_lock_as(ws, "slow-exit", "cancelled", 30.0)
    try:
        with pytest.raises(JobBusyError, match="slow-exit has ended, but its process .* still holds"):
            launch_demo(ws, steps=1)
    finally:
        holder.kill()
        holder.wait()


def test_a_run_whose_worker_is_exiting_is_not_deleted(ws: Workspace) -> None:
    holder = _hold_lock_as(ws, "run-x", "done", 30.0, parent=ws.runs_dir, workspace=str(ws.root))
    try:
        with pytest.raises(DataError, match="training now"):
            runs.delete_run(ws, "run-x")
    finally:
        holder.kill()
        holder.wait()
    runs.delete_run(ws, "run-x")
    assert not (ws.runs_dir / "run-x").exists()


def test_a_filesystem_without_flock_is_a_clear_data_error(ws: Workspace, monkeypatch: pytest.MonkeyPatch) -> None:
    def no_locks(fd: object, operation: int) -> None:
        raise OSError(errno.ENOLCK, os.strerror(errno.ENOLCK))

    monkeypatch.setattr(fcntl, "flock", no_locks)
    ws.root.mkdir(parents=True, exist_ok=True)
    (ws.root / LOCK_NAME).touch()  # so readers probe it too
    for attempt in (lambda: launch_demo(ws, steps=1), lambda: JobReporter(ws, "tiles").__enter__(),
                    lambda: active_job(ws)):
        with pytest.raises(DataError) as refused:
            attempt()
        message = str(refused.value)
        assert message.startswith(f"{ws.root}: ") and "cannot lock files" in message
        assert "HISTOGENE_WORKSPACE" in message
    assert not ws.jobs_dir.exists() or not any(ws.jobs_dir.iterdir())  # a refused launch leaves nothing
