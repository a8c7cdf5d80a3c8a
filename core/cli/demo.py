"""`python -m core demo [--out DIR] [--seed 0 --donors N --tissues N --size WxH --genes N]`.

Writes the synthetic GTEx-like demo cohort (SVS slides, Portal CSV, GCT, truth.json). Without
`--out` it fills the workspace's demo folder once (`--force` regenerates it). Progress goes to
stderr; the folder is the last line on stdout.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from core.base.config import workspace
from core.base.errors import DataError
from core.demo import (
    DEFAULT_DONORS,
    DEFAULT_GENES,
    DEFAULT_SLIDE_SIZE,
    TISSUES,
    ensure_demo_cohort,
    make_demo_cohort,
)
from core.jobs import JobReporter


def _size(text: str) -> tuple[int, int]:
    """`WxH` or a single side `N` (square)."""
    try:
        parts = [int(p) for p in text.lower().split("x")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"slide size must be WxH or N, not {text!r}") from None
    if len(parts) == 1:
        return parts[0], parts[0]
    if len(parts) == 2:
        return parts[0], parts[1]
    raise argparse.ArgumentTypeError(f"slide size must be WxH or N, not {text!r}")


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("demo", help="generate the synthetic GTEx-like demo cohort")
    parser.add_argument("--out", help="dataset folder to write (default: the workspace's demo folder, made once)")
    parser.add_argument("--seed", type=int, default=0, help="random seed; the same seed gives identical files")
    parser.add_argument("--donors", type=int, default=DEFAULT_DONORS, help=f"donors (default {DEFAULT_DONORS})")
    parser.add_argument("--tissues", type=int, default=len(TISSUES), help=f"tissues, 1..{len(TISSUES)}")
    default_size = "x".join(str(v) for v in DEFAULT_SLIDE_SIZE)
    parser.add_argument("--size", type=_size, default=DEFAULT_SLIDE_SIZE, help=f"level-0 WxH px ({default_size})")
    parser.add_argument("--genes", type=int, default=DEFAULT_GENES, help=f"genes (default {DEFAULT_GENES})")
    parser.add_argument("--workers", type=int, default=2, help="processes drawing slides (default 2)")
    parser.add_argument("--force", action="store_true", help="regenerate the workspace demo cohort")
    parser.add_argument("--job-dir", help=argparse.SUPPRESS)


def run(args: argparse.Namespace) -> int:
    ws = workspace(args.workspace)
    options = {
        "seed": args.seed,
        "n_donors": args.donors,
        "n_tissues": args.tissues,
        "slide_size": tuple(args.size),
        "n_genes": args.genes,
        "workers": args.workers,
    }
    started = time.perf_counter()
    with JobReporter(ws, "demo", args.job_dir) as job:

        def progress(done: int, total: int, message: str) -> None:
            job.progress(done, total, message)
            print(f"[{done}/{total}] {message}", file=sys.stderr, flush=True)
            job.check_cancel()  # between slides: a cancelled run leaves no completion marker

        if args.out is None:
            path = ensure_demo_cohort(ws, progress, force=args.force, **options)
        else:
            out = Path(args.out).expanduser()
            if out.exists() and not out.is_dir():
                raise DataError(out, "is a file; --out must be a folder")
            path = make_demo_cohort(out.resolve(), progress=progress, **options)
        seconds = round(time.perf_counter() - started, 1)
        job.result = {"path": str(path), "seconds": seconds}
    print(f"demo cohort ready in {seconds} s", file=sys.stderr)
    print(path)
    return 0
