"""`python -m core jobs [--json] [--kind K] [--cancel ID]`: list background jobs, or ask one to stop.

A hidden `--sleep-demo N` turns this command into a tiny step worker (N short steps with
progress and cancel checks) so the launch path can be exercised without real work.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from core.base.config import Workspace, workspace
from core.base.errors import DataError
from core.jobs import JobReporter, list_jobs, request_cancel

SLEEP_DEMO_KIND = "sleep-demo"


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("jobs", help="list background jobs with state and progress, or cancel one")
    parser.add_argument("--json", action="store_true", help="print the jobs' status as JSON")
    parser.add_argument("--kind", help="only jobs of this kind (tiles, train, ...)")
    parser.add_argument("--cancel", metavar="ID", help="ask the job with this id to stop")
    # Hidden step worker, used by tests and for trying the Jobs UI without real work.
    parser.add_argument("--sleep-demo", type=int, metavar="N", help=argparse.SUPPRESS)
    parser.add_argument("--step-s", type=float, default=0.1, help=argparse.SUPPRESS)
    parser.add_argument("--fail-at", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--non-exclusive", action="store_true", help=argparse.SUPPRESS)  # own lock, not the worker's
    parser.add_argument("--job-dir", help=argparse.SUPPRESS)


def run(args: argparse.Namespace) -> int:
    ws = workspace(args.workspace)
    if args.sleep_demo is not None:
        return run_sleep_demo(ws, args.sleep_demo, args.step_s, args.fail_at, args.job_dir,
                              exclusive=not args.non_exclusive)
    jobs = list_jobs(ws, kind=args.kind)
    if args.cancel:
        match = [job for job in jobs if job.id == args.cancel]
        if not match:
            raise DataError(ws.jobs_dir, f"no job with id {args.cancel!r}")
        flagged = request_cancel(match[0])
        print(f"cancel requested for {args.cancel}" if flagged else f"{args.cancel} is not running; nothing to cancel")
        return 0
    statuses = [job.status() for job in jobs]
    if args.json:
        json.dump(statuses, sys.stdout, indent=2, default=str)
        print()
    elif not statuses:
        print(f"no jobs in {ws.root}")
    else:
        for status in statuses:
            print(format_status(status))
    return 0


def format_status(status: dict[str, Any]) -> str:
    """One line per job: id, kind, state, progress and the error if it failed."""
    progress = status.get("progress") or {}
    done, total = progress.get("done"), progress.get("total")
    amount = f"{done}/{total}" if total else f"{done or 0}"
    parts = [status.get("id", "?"), status.get("kind", "?"), status["state"], amount]
    if progress.get("message"):
        parts.append(str(progress["message"]))
    parts.append(f"started {status.get('started')}")
    if status.get("error"):
        parts.append(f"error: {status['error']}")
    return "  ".join(str(part) for part in parts)


def run_sleep_demo(
    ws: Workspace, steps: int, step_s: float = 0.1, fail_at: int | None = None, job_dir: str | Path | None = None,
    exclusive: bool = True,
) -> int:
    """A step worker: `steps` sleeps with progress, honouring cancel; raises at step `fail_at`."""
    with JobReporter(ws, SLEEP_DEMO_KIND, job_dir, min_write_interval_s=0.05, exclusive=exclusive) as job:
        for step in range(1, steps + 1):
            job.check_cancel()
            if fail_at is not None and step == fail_at:
                raise RuntimeError(f"demo failure at step {step}")
            time.sleep(step_s)
            job.progress(step, steps, f"step {step} of {steps}", step_s=step_s)
            print(f"step {step}/{steps}", flush=True)
        job.result = {"steps": steps}
    return 0
