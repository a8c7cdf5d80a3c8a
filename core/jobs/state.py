"""Reading jobs: a job folder (Job), the one derivation of its state (job_state), and the questions pages
ask on every rerun (active_job, list_jobs), plus asking a job to stop and waiting for it."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

from core.base.config import Workspace
from core.base.errors import DataError
from core.base.fileio import read_json_object
from core.jobs.folder import CANCEL_NAME, CANCELLED, FAILED, LOG_NAME, RUNNING, STATUS_NAME, TERMINAL_STATES, now_stamp
from core.jobs.lock import OWN_LOCK_NAME, holder_alive, probe, read_holder, worker_lock_held
from core.jobs.processes import reap_children


class JobState(StrEnum):
    """What a job is doing now, derived by `job_state` from status.json, the lock and its holder."""

    STARTING = "starting"  # launched: the lock is held for it, its worker has not reported yet
    RUNNING = "running"  # its worker holds the lock and reports progress
    EXITING = "exiting"  # wrote its end state; its process still holds the lock while it exits
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"
    STALE = "stale"  # status.json says running, but no live process holds the lock for it (killed)

    @property
    def active(self) -> bool:
        """Still working: what `active_job` reports and pages show a live panel for."""
        return self in (JobState.STARTING, JobState.RUNNING)

    @property
    def holds_lock(self) -> bool:
        """Its process still holds the worker lock, so no other job can start yet."""
        return self in (JobState.STARTING, JobState.RUNNING, JobState.EXITING)


def _tail(path: Path, n: int) -> list[str]:
    try:
        with path.open("rb") as handle:
            handle.seek(0, os.SEEK_END)
            size = handle.tell()
            handle.seek(max(0, size - 64 * 1024))  # the last lines live in the last 64 KB
            text = handle.read().decode("utf-8", errors="replace")
    except OSError:
        return []
    return text.splitlines()[-n:] if n > 0 else []


class Job:
    """Reading side of one job folder: cheap to build and to poll on every rerun."""

    def __init__(self, job_dir: str | Path, ws: Workspace | None = None) -> None:
        self.dir = Path(job_dir).resolve()
        self._ws = ws

    def __repr__(self) -> str:
        return f"Job({str(self.dir)!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Job) and other.dir == self.dir

    def __hash__(self) -> int:
        return hash(self.dir)

    @property
    def id(self) -> str:
        return self.dir.name

    @property
    def kind(self) -> str:
        return str(self._raw_status().get("kind", ""))

    @property
    def status_path(self) -> Path:
        return self.dir / STATUS_NAME

    @property
    def log_path(self) -> Path:
        return self.dir / LOG_NAME

    def _raw_status(self) -> dict[str, Any]:
        try:
            text = self.status_path.read_text()
        except FileNotFoundError:
            raise DataError(self.status_path, "no status.json: this folder is not a job") from None
        except OSError as exc:
            raise DataError(self.status_path, f"cannot read job status ({exc.strerror})") from None
        try:
            status = json.loads(text)
        except ValueError as exc:
            raise DataError(self.status_path, f"job status is not valid JSON ({exc})") from None
        if not isinstance(status, dict) or "state" not in status:
            raise DataError(self.status_path, "job status has no 'state' field")
        return status

    def _workspace(self, status: dict[str, Any]) -> Workspace | None:
        if self._ws is not None:
            return self._ws
        root = status.get("workspace")
        return Workspace(Path(root)) if root else None

    def status(self) -> dict[str, Any]:
        """status.json, with a stale job (`running` but its worker is gone) reported as `failed`.

        `state` stays one of running / done / failed / cancelled; `job_state` tells starting and
        exiting apart from them.
        """
        state, status = _derive_state(self, self._raw_status())
        if state != JobState.STALE:
            return status
        return {
            **status,
            "state": FAILED,
            "error": "worker process died",
            "log_tail": self.log_tail(),
        }

    def log_tail(self, n: int = 20) -> list[str]:
        """The last `n` lines of the worker's log (empty when there is none yet)."""
        return _tail(self.log_path, n)

    def cancel_requested(self) -> bool:
        return (self.dir / CANCEL_NAME).exists()


def _derive_state(job: Job, status: dict[str, Any]) -> tuple[JobState, dict[str, Any]]:
    """(state, the status.json it was derived from); see the diagram in core/jobs/__init__.py."""
    ws = job._workspace(status)
    recorded = status["state"]
    if recorded not in (RUNNING, *TERMINAL_STATES):
        raise DataError(job.status_path, f"unknown job state {recorded!r}")
    if status.get("exclusive", True) is False:  # its own lock in its folder, not the worker lock
        def alive() -> bool:
            return probe(job.dir / OWN_LOCK_NAME, job.dir)
    elif ws is None:  # nothing to probe (an old status.json without its workspace): trust the file
        return JobState(recorded), status
    else:
        def alive() -> bool:
            return holder_alive(ws, job.id)
    if recorded != RUNNING:
        return (JobState.EXITING if alive() else JobState(recorded)), status
    if alive():
        # The launcher writes pid None; the worker's JobReporter writes its own pid when it starts.
        return (JobState.STARTING if status.get("pid") is None else JobState.RUNNING), status
    # The worker may have ended between our read and the probe (status first, lock second): re-read.
    status = job._raw_status()
    if status["state"] == RUNNING:
        return JobState.STALE, status
    return _derive_state(job, status)


def job_state(job: Job) -> JobState:
    """What `job` is doing now, from status.json, the worker lock, the holder file and its pid.

    Raises DataError when the folder has no readable status.json.
    """
    return _derive_state(job, job._raw_status())[0]


def holder_state(ws: Workspace, holder: dict[str, Any] | None) -> JobState | None:
    """The state of the job the holder file names (None when it names no readable job)."""
    if not holder or not holder.get("dir"):
        return None
    try:
        return job_state(Job(holder["dir"], ws))
    except DataError:
        return None


def active_job(ws: Workspace) -> Job | None:
    """The job that is starting or running now, or None (cheap: a lock probe and two small files).

    A job that has written its end state but whose process is still exiting is not active: pages
    that waited for it would otherwise rerun on it until the process is gone.
    """
    reap_children()
    if not worker_lock_held(ws):
        return None
    holder = read_holder(ws)
    if not holder or not holder.get("dir"):
        return None
    job = Job(holder["dir"], ws)
    state = holder_state(ws, holder)
    return job if state is not None and state.active else None


def list_jobs(ws: Workspace, kind: str | None = None) -> list[Job]:
    """Jobs under ws.jobs_dir and ws.runs_dir (folders with status.json), newest first."""
    found: list[tuple[str, Job]] = []
    for parent in (ws.jobs_dir, ws.runs_dir):
        if not parent.is_dir():
            continue
        for status_path in parent.glob(f"*/{STATUS_NAME}"):
            status = read_json_object(status_path)
            if status is None or (kind is not None and status.get("kind") != kind):
                continue
            found.append((str(status.get("started") or ""), Job(status_path.parent, ws)))
    found.sort(key=lambda pair: (_sortable_time(pair[0]), pair[1].id), reverse=True)
    return [job for _, job in found]


def _sortable_time(stamp: str) -> float:
    try:
        return datetime.fromisoformat(stamp).timestamp()
    except ValueError:
        return 0.0


def request_cancel(job: Job) -> bool:
    """Ask a running job to stop at its next check; True when it was running (and is now flagged)."""
    if job.status()["state"] != RUNNING:  # also raises DataError for a folder that is not a job
        return False
    try:
        (job.dir / CANCEL_NAME).write_text(now_stamp())
    except OSError as exc:
        raise DataError(job.dir / CANCEL_NAME, f"cannot write the cancel flag ({exc.strerror})") from None
    return True


def wait(job: Job, timeout: float = 60.0, poll_s: float = 0.05) -> dict[str, Any]:
    """Block until the job leaves `running`; return its final status (TimeoutError after `timeout`)."""
    deadline = time.monotonic() + timeout
    while True:
        status = job.status()
        if status["state"] != RUNNING:
            return status
        if time.monotonic() >= deadline:
            raise TimeoutError(f"job {job.id} still running after {timeout:.0f}s")
        time.sleep(poll_s)


def last_failure(ws: Workspace, kind: str, argv: list[str],
                 same: Callable[[list[str]], list[str]] | None = None, newest: int = 20) -> dict[str, Any] | None:
    """The status (with its log tail) of the newest `kind` job asking for `argv` when it failed or was cancelled,
    else None (none, or the newest such job runs or is done). `same` maps a job's argv to what counts as the
    same request (flags that do not change the result left out); it is applied to `argv` too."""
    same = same or list
    wanted = same(list(argv))
    for job in list_jobs(ws, kind=kind)[:newest]:
        try:
            status = job.status()
        except DataError:
            continue
        found = status.get("argv")
        if not isinstance(found, list) or same(list(found)) != wanted:
            continue
        if status.get("state") not in (FAILED, CANCELLED):
            return None
        return {**status, "log_tail": status.get("log_tail") or job.log_tail(20)}
    return None
