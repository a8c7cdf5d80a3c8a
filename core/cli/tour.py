"""`python -m core tour [--json]`: the demo tour in one go (generate the demo cohort if missing, tile, train
the default model, embed the selected epoch, the explorer's slide map, rank genes), each step skipped when its
result is cached or done, so running it again continues a cancelled or failed tour. Progress goes to stderr;
a failing step exits with code 2 and names the step."""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

from core.base.config import workspace
from core.base.errors import DataError
from core.jobs import JobReporter
from core.tour.steps import KIND, TourParams, run_tour


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("tour", help="the demo tour: tile, train, embed, map, rank on the demo cohort")
    parser.add_argument("--json", action="store_true", help="print the result (steps, run, seconds) as JSON")
    # Tests run the chain on a tiny cohort and model (TourParams as JSON); the defaults are the real ones.
    parser.add_argument("--params-json", help=argparse.SUPPRESS)
    parser.add_argument("--job-dir", help=argparse.SUPPRESS)


def _params(text: str | None) -> TourParams:
    if not text:
        return TourParams()
    try:
        return TourParams.from_dict(json.loads(text))
    except (ValueError, TypeError) as exc:
        raise DataError(None, f"bad --params-json: {exc}") from None


class _Printer:
    """The job's progress, plus a stderr line when the step changes or at most every 2 s."""

    def __init__(self, job: JobReporter) -> None:
        self.job = job
        self.result: Any = None
        self._last = (0.0, None)

    def progress(self, done: float, total: float | None, message: str = "", **extra: Any) -> None:
        self.job.progress(done, total, message, **extra)
        now, step = time.monotonic(), extra.get("step")
        if step != self._last[1] or now - self._last[0] >= 2.0:
            print(f"[{done:.0%}] {message}", file=sys.stderr, flush=True)
            self._last = (now, step)

    def cancel_requested(self) -> bool:
        return self.job.cancel_requested()


def run(args: argparse.Namespace) -> int:
    ws = workspace(args.workspace)
    params = _params(args.params_json)
    result = None
    with JobReporter(ws, KIND, job_dir=args.job_dir) as job:
        printer = _Printer(job)
        result = run_tour(ws, params, printer)
        job.result = result
    if result is None:
        print("tour: cancelled; run it again to continue", file=sys.stderr)
        return 1
    if args.json:
        json.dump(result, sys.stdout, indent=2, default=str)
        print()
    else:
        for step in result["steps"]:
            print(f"{step['name']:<6} {step['state']:<7} {step['seconds'] or 0:8.1f} s wall "
                  f"{step['cpu_seconds'] or 0:8.1f} s CPU  {step['label']}")
        print(f"run {result['run_dir']} (epoch {result['epoch']}), {result['seconds']:.0f} s in all")
    return 0
