"""Starting a job: take its lock, write its folder, start `python -m core ... --job-dir DIR` holding the lock."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from core.base.config import Workspace
from core.base.errors import JobBusyError
from core.base.fileio import atomic_write_json
from core.jobs.acquire import acquire_worker_lock
from core.jobs.folder import (
    CANCEL_NAME,
    FAILED,
    LOG_NAME,
    STATUS_NAME,
    check_kind,
    default_job_dir,
    initial_status,
    now_stamp,
)
from core.jobs.lock import LOCK_FD_ENV, OWN_LOCK_FD_ENV, own_lock, write_holder
from core.jobs.processes import reap_children, track_child
from core.jobs.state import Job

# The worker runs from the repository root, so `python -m core` finds the package.
REPO_ROOT = Path(__file__).resolve().parents[2]


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
    check_kind(kind)
    reap_children()
    if exclusive:
        fd = acquire_worker_lock(ws)  # before making the folder, so a refused launch leaves nothing behind
    else:
        job_dir = Path(job_dir).resolve() if job_dir is not None else default_job_dir(ws, kind)
        job_dir.mkdir(parents=True, exist_ok=True)
        own = own_lock(job_dir)
        if own is None:
            raise JobBusyError(f"job {job_dir.name} is already running")
        fd = own
    try:
        job_dir = Path(job_dir).resolve() if job_dir is not None else default_job_dir(ws, kind)
        job_dir.mkdir(parents=True, exist_ok=True)
        (job_dir / CANCEL_NAME).unlink(missing_ok=True)
        started = now_stamp()
        if exclusive:
            # Name the holder before the child exists, so readers never see a held lock nobody owns.
            write_holder(ws, job_dir, kind, os.getpid(), started)
        status = initial_status(ws, job_dir, kind, None, started)
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
                job_dir / STATUS_NAME,
                {**status, "state": FAILED, "ended": now_stamp(), "error": f"could not start: {exc}"},
            )
            raise
        track_child(proc)
        if exclusive:
            write_holder(ws, job_dir, kind, proc.pid, started)
    finally:
        os.close(fd)  # the child keeps its own copy of the locked descriptor
    return Job(job_dir, ws)
