"""A job folder on disk: the names of its files, the states status.json records, a new folder's name and
the first status.json a launcher or reporter writes."""

from __future__ import annotations

import re
import secrets
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from core.base.config import Workspace

STATUS_NAME = "status.json"
LOG_NAME = "log.txt"
CANCEL_NAME = "cancel"

RUNNING, DONE, FAILED, CANCELLED = "running", "done", "failed", "cancelled"
TERMINAL_STATES = (DONE, FAILED, CANCELLED)

_KIND_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


def now_stamp() -> str:
    """The local time with its offset, as status.json records it."""
    return datetime.now().astimezone().isoformat(timespec="milliseconds")


def check_kind(kind: str) -> None:
    """ValueError unless `kind` can name a job folder."""
    if not _KIND_PATTERN.match(kind):
        raise ValueError(f"job kind {kind!r} must be letters, digits, '-', '_' or '.'")


def default_job_dir(ws: Workspace, kind: str) -> Path:
    """A new folder under ws.jobs_dir, named by kind and time (not created)."""
    return ws.jobs_dir / f"{kind}-{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(3)}"


def initial_status(ws: Workspace, job_dir: Path, kind: str, pid: int | None, started: str) -> dict[str, Any]:
    """status.json of a job that has just started (`pid` None: its launcher wrote it, no worker yet)."""
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
