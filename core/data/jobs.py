"""Expression loading as a background job: what the Overview page calls instead of parsing a GCT itself."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from core import jobs
from core.base.config import Workspace

KIND = "load"
# A page parses a GCT up to this size itself (the demo's: a fraction of a second); a bigger one is
# parsed by `python -m core load` in a worker and read from the cache.
PAGE_PARSE_LIMIT_BYTES = 32 * 2**20


def load_argv(data_dir: str | Path) -> list[str]:
    return ["load", "--data", str(data_dir)]


def launch_load(ws: Workspace, data_dir: str | Path) -> jobs.Job:
    """Start parsing `data_dir`'s GCT into the cache as the workspace's one background job
    (JobBusyError, naming the running job, when another one holds the worker lock)."""
    return jobs.launch(ws, KIND, load_argv(data_dir))


def last_attempt(ws: Workspace, data_dir: str | Path, gct: Path | None) -> dict | None:
    """Status of the newest load job of `data_dir` that ended after the GCT was last changed (done,
    failed or cancelled), so the page neither relaunches a job that cannot help nor hides its error;
    None when there is none (or the file changed since: worth another try)."""
    for job in jobs.list_jobs(ws, kind=KIND):
        status = job.status()
        if str(data_dir) not in [str(a) for a in status.get("argv") or []]:
            continue
        if status.get("state") not in ("done", "failed", "cancelled"):
            return None
        try:
            started = datetime.fromisoformat(str(status.get("started"))).timestamp()
        except ValueError:
            started = 0.0
        if gct is not None and gct.is_file() and gct.stat().st_mtime > started:
            return None
        return status
    return None
