"""`python -m core load --data DIR [--json]`: parse the dataset's GCT into the workspace cache.

What the Overview page launches in a background worker instead of parsing a large GCT in the server;
progress is in bytes of the GCT read (and genes so far), cancel stops between blocks.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings

from core.base.config import resolve_data_dir, workspace
from core.base.errors import DataWarning
from core.cli.info import add_data_arguments, print_cohort_warnings
from core.data.dataset import cohort_info, load_cohort
from core.jobs import JobReporter

_MB = 2**20


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("load", help="parse the dataset's expression GCT into the cache (what pages read)")
    add_data_arguments(parser)
    parser.add_argument("--job-dir", help=argparse.SUPPRESS)


def run(args: argparse.Namespace) -> int:
    ws = workspace(args.workspace)
    data = resolve_data_dir(ws, args.data)
    started = time.perf_counter()
    with JobReporter(ws, "load", job_dir=args.job_dir) as job:

        def progress(done: int, total: int, message: str) -> None:
            text = f"expression: {done / _MB:,.0f} of {total / _MB:,.0f} MB read, {message}"
            job.progress(done, total, text, unit="bytes")
            if not args.json:
                print(text, file=sys.stderr, flush=True)
            job.check_cancel()  # between blocks; the half-built cache entry is removed

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DataWarning)  # printed once below
            cohort = load_cohort(data, ws, histology_csv=args.histology_csv, expression_gct=args.expression_gct,
                                 donor_column=args.donor_column, progress=progress)
        info = cohort_info(cohort)
        job.result = {
            "gct": str(cohort.files.expression_gct) if cohort.files.expression_gct else None,
            "genes": info["genes"],
            "samples_with_expression": info["samples_with_expression"],
            "seconds": round(time.perf_counter() - started, 2),
        }
    if job.result is None:  # cancelled: the reporter recorded it
        print("load: cancelled", file=sys.stderr)
        return 1
    print_cohort_warnings(cohort)
    if args.json:
        json.dump(job.result, sys.stdout, indent=2)
        print()
    else:
        print(f"expression: {info['genes']:,} genes x {info['samples_with_expression']:,} samples with histology "
              f"({job.result['seconds']} s; cached for the pages)")
    return 0
