"""The locks: the one worker lock per workspace and its holder file, a non-exclusive job's own lock, probes
that keep nothing, and the locked descriptors a launcher hands down to its worker."""

from __future__ import annotations

import fcntl
import os
import time
from pathlib import Path
from typing import Any

from core.base.config import Workspace
from core.base.fileio import atomic_write_json, flock, read_json_object
from core.jobs.processes import pid_alive

LOCK_NAME = "worker.lock"
HOLDER_NAME = "worker.json"
# The launcher tells the child which inherited descriptor holds the lock.
LOCK_FD_ENV = "HISTOGENE_JOB_LOCK_FD"
# A non-exclusive job's own lock in its folder, and the variable naming its inherited descriptor.
OWN_LOCK_NAME = "job.lock"
OWN_LOCK_FD_ENV = "HISTOGENE_JOB_OWN_LOCK_FD"


def lock_path(ws: Workspace) -> Path:
    return ws.root / LOCK_NAME


def holder_path(ws: Workspace) -> Path:
    return ws.root / HOLDER_NAME


def read_holder(ws: Workspace) -> dict[str, Any] | None:
    """The holder file (who took the worker lock), or None when there is none readable."""
    return read_json_object(holder_path(ws))


def write_holder(ws: Workspace, job_dir: Path, kind: str, pid: int, since: str) -> None:
    atomic_write_json(
        holder_path(ws), {"id": job_dir.name, "kind": kind, "pid": pid, "dir": str(job_dir), "since": since}
    )


def describe_holder(holder: dict[str, Any] | None) -> str:
    """What a refused launch says about the job holding the worker lock."""
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


def try_worker_lock(ws: Workspace) -> int | None:
    """An fd holding the exclusive worker lock, or None when someone else holds it."""
    ws.root.mkdir(parents=True, exist_ok=True)
    return _try_flock(lock_path(ws), ws.root)


def own_lock(job_dir: Path) -> int | None:
    """A non-exclusive job's own lock (an fd holding it), or None when another process holds it."""
    return _try_flock(job_dir / OWN_LOCK_NAME, job_dir)


def probe(path: Path, root: Path) -> bool:
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


def worker_lock_held(ws: Workspace) -> bool:
    """Probe the lock without keeping it: True when some process holds it."""
    return probe(lock_path(ws), ws.root)


def holder_alive(ws: Workspace, job_id: str) -> bool:
    """True when the worker lock is held on behalf of `job_id` by a live process."""
    holder = read_holder(ws)
    if not holder or holder.get("id") != job_id:
        return False  # the common case for old jobs: no lock probe needed
    if not worker_lock_held(ws):
        return False
    holder = read_holder(ws)  # again after the probe: the lock may have changed hands meanwhile
    return bool(holder) and holder.get("id") == job_id and pid_alive(holder.get("pid"))


def inherited_lock_fd(ws: Workspace) -> int | None:
    """The locked descriptor a launcher passed down, if it is this workspace's lock."""
    value = os.environ.pop(LOCK_FD_ENV, None)  # popped: grandchildren must not reuse it
    if not value or not value.isdigit():
        return None
    fd = int(value)
    try:
        inherited = os.fstat(fd)
        expected = lock_path(ws).stat()
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


def inherited_own_lock_fd(job_dir: Path) -> int | None:
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
