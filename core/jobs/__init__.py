"""Background jobs: one worker process at a time (plus any number of non-exclusive ones), state on disk.

A job is a folder holding `status.json` (written atomically by the worker), `log.txt`
(the worker's stdout/stderr) and, when asked to stop, a `cancel` flag file. The one-writer
rule is an exclusive `flock` on `ws.root/worker.lock`: the launcher takes it and hands the
locked descriptor to the child, which holds it until it exits (the kernel frees it even on
kill -9). A sidecar `worker.json` names the holder. Readers (the pages, on every rerun) only
read small files and probe the lock, so a reload, a new tab or a restarted server finds
the same job again. `job_state` is the one place that turns those files into a state
(JobState; the diagram is in ARCHITECTURE.md).

A non-exclusive job (`launch(..., exclusive=False)`, e.g. a prediction) never touches the worker lock:
it holds its own `job.lock` in its folder instead, so it runs beside the one writer and beside other
non-exclusive jobs, and its state is derived from that lock the same way. It must not write what the
one-writer rule protects (runs, tile indexes); cache entries have their own per-entry locks.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import secrets
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Callable
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from types import TracebackType
from typing import Any

from core.base.config import Workspace
from core.base.errors import DataError, JobBusyError
from core.base.fileio import atomic_write_json, flock, read_json_object

LOCK_NAME = "worker.lock"
HOLDER_NAME = "worker.json"
STATUS_NAME = "status.json"
LOG_NAME = "log.txt"
CANCEL_NAME = "cancel"
# The launcher tells the child which inherited descriptor holds the lock.
LOCK_FD_ENV = "HISTOGENE_JOB_LOCK_FD"
# A non-exclusive job's own lock in its folder, and the variable naming its inherited descriptor.
OWN_LOCK_NAME = "job.lock"
OWN_LOCK_FD_ENV = "HISTOGENE_JOB_OWN_LOCK_FD"

RUNNING, DONE, FAILED, CANCELLED = "running", "done", "failed", "cancelled"
TERMINAL_STATES = (DONE, FAILED, CANCELLED)

REPO_ROOT = Path(__file__).resolve().parents[2]
_KIND_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")

# Children launched by this process; polled so finished ones are reaped, not left as zombies.
_children: dict[int, subprocess.Popen] = {}
_children_guard = threading.Lock()


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


class JobCancelled(Exception):
    """Raised inside a worker to stop early; the job ends `cancelled`, not `failed`."""


def _now() -> str:
    return datetime.now().astimezone().isoformat(timespec="milliseconds")


def _lock_path(ws: Workspace) -> Path:
    return ws.root / LOCK_NAME


def _holder_path(ws: Workspace) -> Path:
    return ws.root / HOLDER_NAME


def _read_holder(ws: Workspace) -> dict[str, Any] | None:
    return read_json_object(_holder_path(ws))


def _describe_holder(holder: dict[str, Any] | None) -> str:
    if not holder:
        return "another job holds the worker lock"
    return (
        f"a {holder.get('kind', '?')} job is already running "
        f"(id {holder.get('id', '?')}, pid {holder.get('pid', '?')}, since {holder.get('since', '?')})"
    )


def _try_flock(path: Path, owner: Path) -> int | None:
    """An fd holding an exclusive flock on `path`, or None when another process holds it. A reader's probe
    holds a lock for microseconds; retry briefly so it never refuses a launch."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        for attempt in range(3):
            try:
                flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB, owner)
                return fd
            except BlockingIOError:
                if attempt < 2:
                    time.sleep(0.01)
    except BaseException:
        os.close(fd)
        raise
    os.close(fd)
    return None


def _try_lock(ws: Workspace) -> int | None:
    """An fd holding the exclusive worker lock, or None when someone else holds it."""
    ws.root.mkdir(parents=True, exist_ok=True)
    return _try_flock(_lock_path(ws), ws.root)


# A worker that has written its end state still holds the lock while its interpreter exits.
EXITING_WORKER_GRACE_S = 10.0


def _holder_state(ws: Workspace, holder: dict[str, Any] | None) -> JobState | None:
    """The state of the job the holder file names (None when it names no readable job)."""
    if not holder or not holder.get("dir"):
        return None
    try:
        return job_state(Job(holder["dir"], ws))
    except DataError:
        return None


def _acquire_lock(ws: Workspace) -> int:
    """The worker lock, or JobBusyError naming its holder.

    Refused at once only while the holder file names a job that is starting or running. Otherwise the
    lock is on its way to being free and is waited for (up to EXITING_WORKER_GRACE_S): a job that has
    written its end state while its process exits, a worker that ended between our probe and reading
    its state (it looks `failed`/`done`, yet the probe saw the lock held), or a launcher that has just
    taken the lock and not yet named itself. So "resume" right after a run ends is not refused.
    """
    deadline = time.monotonic() + EXITING_WORKER_GRACE_S
    while True:
        fd = _try_lock(ws)
        if fd is not None:
            return fd
        holder = _read_holder(ws)
        state = _holder_state(ws, holder)
        if state is not None and state.active:
            raise JobBusyError(_describe_holder(holder))
        if time.monotonic() >= deadline:
            holder = holder or {}
            if state == JobState.EXITING:
                raise JobBusyError(
                    f"the {holder.get('kind', '?')} job {holder.get('id', '?')} has ended, but its process "
                    f"(pid {holder.get('pid', '?')}) still holds the worker lock after "
                    f"{EXITING_WORKER_GRACE_S:.0f} s; wait for it to exit, or stop that process"
                )
            raise JobBusyError(
                f"the worker lock {_lock_path(ws)} is still held after {EXITING_WORKER_GRACE_S:.0f} s, but "
                f"not by a running job (the holder file names job {holder.get('id', '?')}, pid "
                f"{holder.get('pid', '?')}, {state or 'unreadable'}); wait, or stop the process holding it"
            )
        time.sleep(0.05)


def _lock_is_held(ws: Workspace) -> bool:
    """Probe the lock without keeping it: True when some process holds it."""
    return _probe(_lock_path(ws), ws.root)


def _probe(path: Path, root: Path) -> bool:
    """True when some process holds an exclusive flock on `path` (the probe keeps nothing)."""
    if not path.exists():
        return False
    fd = os.open(path, os.O_RDONLY)
    try:
        flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB, root)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)  # closing also drops a shared lock we got
    return False


def _own_lock(job_dir: Path) -> int | None:
    """A non-exclusive job's own lock (an fd holding it), or None when another process holds it."""
    return _try_flock(job_dir / OWN_LOCK_NAME, job_dir)


def _inherited_own_lock_fd(job_dir: Path) -> int | None:
    """The descriptor of this job's own lock that its launcher passed down, if it is that file."""
    value = os.environ.pop(OWN_LOCK_FD_ENV, None)
    if not value or not value.isdigit():
        return None
    fd = int(value)
    try:
        same = os.fstat(fd)
        expected = (job_dir / OWN_LOCK_NAME).stat()
        if (same.st_dev, same.st_ino) != (expected.st_dev, expected.st_ino):
            return None
        flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB, job_dir)  # a no-op when this descriptor holds it
    except OSError:
        return None
    os.set_inheritable(fd, False)
    return fd


def _reap_children() -> None:
    with _children_guard:
        for pid, proc in list(_children.items()):
            if proc.poll() is not None:
                del _children[pid]


def pid_alive(pid: Any) -> bool:
    """True when `pid` runs and is not a zombie (a zombie still answers kill(pid, 0))."""
    if not isinstance(pid, int) or pid <= 0:
        return False
    _reap_children()
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True  # no /proc (macOS): trust kill()
    return stat.rsplit(")", 1)[-1].split()[:1] != ["Z"]


def _holder_alive(ws: Workspace, job_id: str) -> bool:
    """True when the worker lock is held on behalf of `job_id` by a live process."""
    holder = _read_holder(ws)
    if not holder or holder.get("id") != job_id:
        return False  # the common case for old jobs: no lock probe needed
    if not _lock_is_held(ws):
        return False
    holder = _read_holder(ws)  # again after the probe: the lock may have changed hands meanwhile
    return bool(holder) and holder.get("id") == job_id and pid_alive(holder.get("pid"))


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
    """(state, the status.json it was derived from); see the diagram in ARCHITECTURE.md."""
    ws = job._workspace(status)
    recorded = status["state"]
    if recorded not in (RUNNING, *TERMINAL_STATES):
        raise DataError(job.status_path, f"unknown job state {recorded!r}")
    if status.get("exclusive", True) is False:  # its own lock in its folder, not the worker lock
        def alive() -> bool:
            return _probe(job.dir / OWN_LOCK_NAME, job.dir)
    elif ws is None:  # nothing to probe (an old status.json without its workspace): trust the file
        return JobState(recorded), status
    else:
        def alive() -> bool:
            return _holder_alive(ws, job.id)
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


def _default_job_dir(ws: Workspace, kind: str) -> Path:
    return ws.jobs_dir / f"{kind}-{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(3)}"


def _check_kind(kind: str) -> None:
    if not _KIND_PATTERN.match(kind):
        raise ValueError(f"job kind {kind!r} must be letters, digits, '-', '_' or '.'")


def _write_holder(ws: Workspace, job_dir: Path, kind: str, pid: int, since: str) -> None:
    atomic_write_json(
        _holder_path(ws), {"id": job_dir.name, "kind": kind, "pid": pid, "dir": str(job_dir), "since": since}
    )


def _initial_status(ws: Workspace, job_dir: Path, kind: str, pid: int | None, started: str) -> dict[str, Any]:
    return {
        "id": job_dir.name,
        "kind": kind,
        "state": RUNNING,
        "pid": pid,
        "started": started,
        "updated": started,
        "ended": None,
        "progress": {"done": 0, "total": None, "message": "starting"},
        "error": None,
        "result": None,
        "dir": str(job_dir),
        "workspace": str(ws.root),
    }


def launch(
    ws: Workspace, kind: str, argv: list[str], job_dir: str | Path | None = None, *, module: str = "core",
    exclusive: bool = True,
) -> Job:
    """Start `python -m core --workspace WS <argv...> --job-dir DIR` as the one background worker.

    The lock is taken here and handed to the child, so two launches (two tabs) can never both
    start; the loser gets JobBusyError naming the running job. `module` is the entry module run
    with -m (tests pass a light one that skips importing every CLI command). With `exclusive=False`
    the job takes its own lock in its folder instead of the worker lock: it starts whatever else runs
    (its worker must enter `JobReporter(..., exclusive=False)`).
    """
    _check_kind(kind)
    _reap_children()
    if exclusive:
        fd = _acquire_lock(ws)  # before making the folder, so a refused launch leaves nothing behind
    else:
        job_dir = Path(job_dir).resolve() if job_dir is not None else _default_job_dir(ws, kind)
        job_dir.mkdir(parents=True, exist_ok=True)
        own = _own_lock(job_dir)
        if own is None:
            raise JobBusyError(f"job {job_dir.name} is already running")
        fd = own
    try:
        job_dir = Path(job_dir).resolve() if job_dir is not None else _default_job_dir(ws, kind)
        job_dir.mkdir(parents=True, exist_ok=True)
        (job_dir / CANCEL_NAME).unlink(missing_ok=True)
        started = _now()
        if exclusive:
            # Name the holder before the child exists, so readers never see a held lock nobody owns.
            _write_holder(ws, job_dir, kind, os.getpid(), started)
        status = _initial_status(ws, job_dir, kind, None, started)
        status["argv"] = list(argv)
        if not exclusive:
            status["exclusive"] = False
        atomic_write_json(job_dir / STATUS_NAME, status)
        command = [sys.executable, "-m", module, "--workspace", str(ws.root), *argv, "--job-dir", str(job_dir)]
        env = {**os.environ, (LOCK_FD_ENV if exclusive else OWN_LOCK_FD_ENV): str(fd), "PYTHONUNBUFFERED": "1"}
        try:
            with (job_dir / LOG_NAME).open("ab") as log:
                proc = subprocess.Popen(
                    command,
                    cwd=REPO_ROOT,
                    env=env,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    pass_fds=(fd,),
                    start_new_session=True,  # survives the Streamlit script rerunning or the server stopping
                )
        except OSError as exc:
            atomic_write_json(
                job_dir / STATUS_NAME, {**status, "state": FAILED, "ended": _now(), "error": f"could not start: {exc}"}
            )
            raise
        with _children_guard:
            _children[proc.pid] = proc
        if exclusive:
            _write_holder(ws, job_dir, kind, proc.pid, started)
    finally:
        os.close(fd)  # the child keeps its own copy of the locked descriptor
    return Job(job_dir, ws)


def _inherited_lock_fd(ws: Workspace) -> int | None:
    """The locked descriptor a launcher passed down, if it is this workspace's lock."""
    value = os.environ.pop(LOCK_FD_ENV, None)  # popped: grandchildren must not reuse it
    if not value or not value.isdigit():
        return None
    fd = int(value)
    try:
        inherited = os.fstat(fd)
        expected = _lock_path(ws).stat()
    except OSError:
        return None
    if (inherited.st_dev, inherited.st_ino) != (expected.st_dev, expected.st_ino):
        return None
    try:
        flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB, ws.root)  # a no-op when this descriptor already holds it
    except OSError:  # held elsewhere, or a stale descriptor: take the lock the ordinary way
        return None
    os.set_inheritable(fd, False)  # helper processes we start must not outlive us holding it
    return fd


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
        _check_kind(kind)
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
            fd = _inherited_lock_fd(self.ws)
            self._fd = fd if fd is not None else _acquire_lock(self.ws)
        else:
            if self.dir is None:
                self.dir = _default_job_dir(self.ws, self.kind)
            self.dir.mkdir(parents=True, exist_ok=True)
            fd = _inherited_own_lock_fd(self.dir)
            self._fd = fd if fd is not None else _own_lock(self.dir)
            if self._fd is None:
                raise JobBusyError(f"job {self.dir.name} is already running")
        try:
            if self.dir is None:
                self.dir = _default_job_dir(self.ws, self.kind)
            self.dir.mkdir(parents=True, exist_ok=True)
            previous = read_json_object(self.dir / STATUS_NAME) or {}
            inherited = fd is not None and previous.get("state") == RUNNING
            started = previous.get("started") if inherited else _now()
            if not inherited:
                (self.dir / CANCEL_NAME).unlink(missing_ok=True)  # a stale flag from an earlier run
            if self.exclusive:
                _write_holder(self.ws, self.dir, self.kind, os.getpid(), started)
            self._status = _initial_status(self.ws, self.dir, self.kind, os.getpid(), started)
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
            self._status["updated"] = _now()
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
            state, error = FAILED, _one_line_error(exc)
            self._log_traceback(exc_type, exc, tb)
        self._status.update(state=state, error=error, result=_json_safe(self.result), ended=_now())
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


def _one_line_error(exc: BaseException) -> str:
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
    status.update(state=FAILED, error=_one_line_error(exc), ended=_now(), updated=_now())
    atomic_write_json(path, status)
    return True


def active_job(ws: Workspace) -> Job | None:
    """The job that is starting or running now, or None (cheap: a lock probe and two small files).

    A job that has written its end state but whose process is still exiting is not active: pages
    that waited for it would otherwise rerun on it until the process is gone.
    """
    _reap_children()
    if not _lock_is_held(ws):
        return None
    holder = _read_holder(ws)
    if not holder or not holder.get("dir"):
        return None
    job = Job(holder["dir"], ws)
    state = _holder_state(ws, holder)
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
        (job.dir / CANCEL_NAME).write_text(_now())
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
