"""Background jobs: one worker process at a time (plus any number of non-exclusive ones), state on disk.

The job folder: `status.json` (written atomically by the worker), `log.txt` (the worker's stdout/stderr)
and, when asked to stop, a `cancel` flag file. Readers (the pages, on every rerun) only read these small
files and probe locks, so a reload, a new tab or a restarted server finds the same job again.

The lock rules. One writer per workspace: an exclusive `flock` on `ws.root/worker.lock`. The launcher
takes it and hands the locked descriptor to the child, which holds it until it exits (the kernel frees it
even on kill -9); a sidecar `worker.json` names the holder. A non-exclusive job (`launch(...,
exclusive=False)`, e.g. a prediction) never touches the worker lock: it holds its own `job.lock` in its
folder, so it runs beside the one writer and beside other non-exclusive jobs. It must not write what the
one-writer rule protects (runs, tile indexes); cache entries have their own per-entry locks.

The state machine: `job_state` is the one place that turns status.json, the lock and its holder into a
JobState (the full table is in ARCHITECTURE.md):

    launch ─> starting ─(reporter starts)─> running ─(end state written)─> exiting ─(exit)─> done|failed|cancelled
               │  └─(fails before reporting: python -m core records `failed`)─> exiting
               │                               │
               └─(kill -9, crash)──────────────┴─> stale (read as failed)

Modules: folder (file names, recorded states), processes (children, pid checks), lock (the locks and the
holder file), state (Job, job_state, active_job, list_jobs, request_cancel, wait), acquire (taking the
worker lock, waiting out an exiting holder), launcher (launch), reporter (JobReporter, failure recording).
"""

from core.jobs.folder import (
    CANCEL_NAME,
    CANCELLED,
    DONE,
    FAILED,
    LOG_NAME,
    RUNNING,
    STATUS_NAME,
    TERMINAL_STATES,
)
from core.jobs.launcher import launch
from core.jobs.lock import HOLDER_NAME, LOCK_NAME, OWN_LOCK_NAME
from core.jobs.processes import pid_alive
from core.jobs.reporter import (
    JobCancelled,
    JobReporter,
    mark_logged,
    one_line_error,
    record_failure_before_reporting,
    traceback_logged,
)
from core.jobs.state import Job, JobState, active_job, job_state, last_failure, list_jobs, request_cancel, wait

__all__ = [
    "CANCELLED",
    "CANCEL_NAME",
    "DONE",
    "FAILED",
    "HOLDER_NAME",
    "LOCK_NAME",
    "LOG_NAME",
    "OWN_LOCK_NAME",
    "RUNNING",
    "STATUS_NAME",
    "TERMINAL_STATES",
    "Job",
    "JobCancelled",
    "JobReporter",
    "JobState",
    "active_job",
    "job_state",
    "last_failure",
    "launch",
    "list_jobs",
    "mark_logged",
    "one_line_error",
    "pid_alive",
    "record_failure_before_reporting",
    "request_cancel",
    "traceback_logged",
    "wait",
]
