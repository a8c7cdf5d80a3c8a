"""The worker side: JobReporter holds the job's lock, writes status.json and honours cancel requests; a
failure is recorded as one line in status.json and its traceback once in log.txt."""

from __future__ import annotations

import json
import os
import sys
import threading
import time
import traceback
from pathlib import Path
from types import TracebackType
from typing import Any

from core.base.config import Workspace
from core.base.errors import JobBusyError
from core.base.fileio import atomic_write_json, read_json_object
from core.jobs.acquire import acquire_worker_lock
from core.jobs.folder import (
    CANCEL_NAME,
    CANCELLED,
    DONE,
    FAILED,
    LOG_NAME,
    RUNNING,
    STATUS_NAME,
    check_kind,
    default_job_dir,
    initial_status,
    now_stamp,
)
from core.jobs.lock import inherited_lock_fd, inherited_own_lock_fd, own_lock, write_holder
from core.jobs.state import Job


class JobCancelled(Exception):
    """Raised inside a worker to stop early; the job ends `cancelled`, not `failed`."""


class JobReporter:
    """Worker side: holds the lock, writes status.json, honours cancel requests.

    Used inside a launched worker (it finds the inherited lock) and by a plain CLI run (it
    takes the lock itself, refusing with JobBusyError when another job holds it). With
    `exclusive=False` it holds the job folder's own lock instead and never waits for the worker lock.
    """

    def __init__(
        self,
        ws: Workspace,
        kind: str,
        job_dir: str | Path | None = None,
        *,
        min_write_interval_s: float = 0.25,
        heartbeat_s: float = 5.0,
        exclusive: bool = True,
    ) -> None:
        check_kind(kind)
        self.exclusive = exclusive
        self.ws = ws
        self.kind = kind
        self.dir: Path | None = Path(job_dir).resolve() if job_dir is not None else None
        self.result: Any = None
        self.min_write_interval_s = min_write_interval_s
        self.heartbeat_s = heartbeat_s
        self._fd: int | None = None
        self._status: dict[str, Any] = {}
        self._last_write = 0.0
        self._cancel_seen = False
        self._write_guard = threading.Lock()
        self._stop_heartbeat = threading.Event()
        self._heartbeat: threading.Thread | None = None

    @property
    def id(self) -> str:
        if self.dir is None:
            raise RuntimeError("JobReporter is not entered yet")
        return self.dir.name

    @property
    def job(self) -> Job:
        if self.dir is None:
            raise RuntimeError("JobReporter is not entered yet")
        return Job(self.dir, self.ws)

    def __enter__(self) -> JobReporter:
        if self.exclusive:
            fd = inherited_lock_fd(self.ws)
            self._fd = fd if fd is not None else acquire_worker_lock(self.ws)
        else:
            if self.dir is None:
                self.dir = default_job_dir(self.ws, self.kind)
            self.dir.mkdir(parents=True, exist_ok=True)
            fd = inherited_own_lock_fd(self.dir)
            self._fd = fd if fd is not None else own_lock(self.dir)
            if self._fd is None:
                raise JobBusyError(f"job {self.dir.name} is already running")
        try:
            if self.dir is None:
                self.dir = default_job_dir(self.ws, self.kind)
            self.dir.mkdir(parents=True, exist_ok=True)
            previous = read_json_object(self.dir / STATUS_NAME) or {}
            inherited = fd is not None and previous.get("state") == RUNNING
            started = previous.get("started") if inherited else now_stamp()
            if not inherited:
                (self.dir / CANCEL_NAME).unlink(missing_ok=True)  # a stale flag from an earlier run
            if self.exclusive:
                write_holder(self.ws, self.dir, self.kind, os.getpid(), started)
            self._status = initial_status(self.ws, self.dir, self.kind, os.getpid(), started)
            if not self.exclusive:
                self._status["exclusive"] = False
            if inherited and "argv" in previous:
                self._status["argv"] = previous["argv"]
            self._status["progress"]["message"] = "running"
            self._write(force=True)
        except BaseException:
            os.close(self._fd)
            self._fd = None
            raise
        if self.heartbeat_s > 0:
            self._heartbeat = threading.Thread(target=self._beat, name="job-heartbeat", daemon=True)
            self._heartbeat.start()
        return self

    def _beat(self) -> None:
        while not self._stop_heartbeat.wait(self.heartbeat_s):
            self._write(force=True)

    def _write(self, force: bool = False) -> None:
        with self._write_guard:
            now = time.monotonic()
            if not force and now - self._last_write < self.min_write_interval_s:
                return
            self._status["updated"] = now_stamp()
            atomic_write_json(self.dir / STATUS_NAME, self._status)
            self._last_write = now

    def progress(self, done: float, total: float | None, message: str = "", **extra: Any) -> None:
        """Record progress; written to disk at most every `min_write_interval_s`."""
        with self._write_guard:
            self._status["progress"] = {"done": done, "total": total, "message": message, **extra}
        self._write()

    def cancel_requested(self) -> bool:
        """True once someone asked this job to stop (the `cancel` flag file exists)."""
        if not self._cancel_seen and self.dir is not None:
            self._cancel_seen = (self.dir / CANCEL_NAME).exists()
        return self._cancel_seen

    def check_cancel(self) -> None:
        """Raise JobCancelled when a cancel was requested (call between steps)."""
        if self.cancel_requested():
            raise JobCancelled("cancelled on request")

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> bool:
        self._stop_heartbeat.set()
        if self._heartbeat is not None:
            self._heartbeat.join()
        suppress = False
        if exc is None:
            state, error = (CANCELLED, "cancelled on request") if self._cancel_seen else (DONE, None)
        elif isinstance(exc, (JobCancelled, KeyboardInterrupt)):
            state, error, suppress = CANCELLED, str(exc) or "interrupted", isinstance(exc, JobCancelled)
        else:
            state, error = FAILED, one_line_error(exc)
            self._log_traceback(exc_type, exc, tb)
        self._status.update(state=state, error=error, result=_json_safe(self.result), ended=now_stamp())
        try:
            self._write(force=True)
        finally:
            # Status first, lock second: a reader seeing the lock free also sees the final state.
            os.close(self._fd)
            self._fd = None
        return suppress

    def _log_traceback(
        self, exc_type: type[BaseException] | None, exc: BaseException, tb: TracebackType | None
    ) -> None:
        # Written here, before the final status: a reader that sees `failed` must find the whole
        # traceback in log.txt (Python's own print at exit would come after the status).
        text = "".join(traceback.format_exception(exc_type, exc, tb))
        sys.stderr.flush()
        with (self.dir / LOG_NAME).open("a") as log:
            log.write(text)
        mark_logged(exc)


LOGGED_ATTR = "_histogene_traceback_logged"


def mark_logged(exc: BaseException) -> None:
    """Note that `exc`'s traceback is already in its job's log, so entry points don't print it twice."""
    try:
        setattr(exc, LOGGED_ATTR, True)
    except AttributeError:  # exceptions with __slots__
        pass


def traceback_logged(exc: BaseException) -> bool:
    """Whether a JobReporter already wrote `exc`'s traceback to its job log."""
    return bool(getattr(exc, LOGGED_ATTR, False))


def one_line_error(exc: BaseException) -> str:
    """The error a failed job records in status.json: the exception's type and the first line of its text."""
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


def _json_safe(value: Any) -> Any:
    try:
        json.dumps(value, default=str)
    except (TypeError, ValueError):
        return str(value)
    return value


def record_failure_before_reporting(job_dir: str | Path, exc: BaseException) -> bool:
    """A launched worker that fails before its JobReporter starts (bad options, missing dataset) marks
    its job failed with the one-line error, instead of leaving readers to find a dead worker.

    Only a status still `running` is changed (a reporter that ran has written its own end state).
    Returns whether it wrote.
    """
    path = Path(job_dir) / STATUS_NAME
    status = read_json_object(path)
    if not status or status.get("state") != RUNNING:
        return False
    status.update(state=FAILED, error=one_line_error(exc), ended=now_stamp(), updated=now_stamp())
    atomic_write_json(path, status)
    return True
