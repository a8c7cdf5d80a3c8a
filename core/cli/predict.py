"""`python -m core predict --run RUN [--epoch E] [--data DIR] [--r2-threshold T] [--neighbours K]
[--map umap|tsne|pca] [--compute-ranking] [--csv OUT] [--delete-slide] SLIDE --json`: one slide's tissue (top 3),
tiles considered/kept/rejected, predicted expression of the genes whose cross-validated R² clears the
threshold, nearest reference slides, warnings, seconds per step and whether it came from the cache.
Runs as a job of kind "predict" that never takes the workspace's one-writer lock (a prediction never waits
for training, and two predictions run side by side). Progress goes to stderr."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from core.base.config import workspace
from core.base.errors import DataError
from core.jobs import JobReporter
from core.predict.request import MAP_METHODS, PredictRequest
from core.ranking.params import RankParams

KIND = "predict"


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("predict", help="predict one slide's tissue, expression and map place")
    parser.add_argument("slide", help="the slide or image file (SVS, NDPI, SCN, CZI, OME-TIFF, TIFF, JPEG, PNG)")
    parser.add_argument("--run", help="training run (id or folder; default: the best finished run)")
    parser.add_argument("--epoch", type=int, help="checkpoint epoch (default: the run's validation-selected epoch)")
    parser.add_argument("--data", help="reference dataset folder (default: the run's own dataset)")
    defaults = PredictRequest(run_dir="")
    parser.add_argument("--r2-threshold", type=float, default=defaults.r2_threshold,
                        help=f"predict genes whose cross-validated R² is at least this ({defaults.r2_threshold})")
    parser.add_argument("--neighbours", type=int, default=defaults.neighbours, help="nearest reference slides listed")
    parser.add_argument("--map", choices=MAP_METHODS, default=defaults.map_method, help="reference map to place on")
    rank = RankParams()
    parser.add_argument("--components", type=int, default=rank.components, help="the ranking's PCA components")
    parser.add_argument("--folds", type=int, default=rank.folds, help="the ranking's folds")
    parser.add_argument("--repeats", type=int, default=rank.repeats, help="the ranking's repeats")
    parser.add_argument("--cv-seed", type=int, default=rank.seed, help=argparse.SUPPRESS)
    parser.add_argument("--clusters", type=int, default=rank.clusters, help="the ranking's k-means clusters")
    parser.add_argument("--criterion", choices=("loo", "gcv"), default=rank.criterion, help=argparse.SUPPRESS)
    parser.add_argument("--no-permutation", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--compute-ranking", action="store_true",
                        help="rank genes first when the run has no ranking yet (minutes; cached once per run)")
    parser.add_argument("--csv", help="also write the CSV report here")
    parser.add_argument("--delete-slide", action="store_true", help=argparse.SUPPRESS)  # uploads: remove when done
    parser.add_argument("--sha256", help=argparse.SUPPRESS)  # the upload's hash, computed while it was written
    parser.add_argument("--name", help="the name to report and to name in errors (an upload's own file name)")
    parser.add_argument("--json", action="store_true", help="print the report as JSON on stdout")
    parser.add_argument("--job-dir", help=argparse.SUPPRESS)


def request_from_args(ws, args: argparse.Namespace) -> PredictRequest:
    from core.predict.request import request_for

    if args.neighbours < 1:
        raise DataError(None, f"--neighbours must be at least 1, got {args.neighbours}")
    ranking = RankParams(components=args.components, folds=args.folds, repeats=args.repeats, seed=args.cv_seed,
                         clusters=args.clusters, criterion=args.criterion, permutation_null=not args.no_permutation)
    return request_for(ws, args.run, args.epoch, ranking=ranking, r2_threshold=args.r2_threshold,
                       neighbours=args.neighbours, map_method=args.map, compute_ranking=args.compute_ranking)


def _progress(job: JobReporter):
    last = [0.0]

    def report(done: float, message: str, step: str) -> None:
        job.progress(done, 1.0, message, step=step)
        now = time.monotonic()
        if now - last[0] >= 1.0 or done >= 1.0:
            print(f"[{done:.0%}] {step}: {message}", file=sys.stderr, flush=True)
            last[0] = now

    return report


def run(args: argparse.Namespace) -> int:
    from core.predict import predict_slide

    ws = workspace(args.workspace)
    slide = Path(args.slide).expanduser()
    out = Path(args.csv).expanduser() if args.csv else None
    try:
        if out is not None and not out.parent.is_dir():
            raise DataError(out, "--csv: its folder does not exist")
        request = request_from_args(ws, args)  # bad options or no run fail before the job starts
        result = None
        with JobReporter(ws, KIND, job_dir=args.job_dir, exclusive=False) as job:
            prediction = predict_slide(ws, args.data, slide, request, progress=_progress(job),
                                       cancel=job.cancel_requested, sha256=args.sha256, display_name=args.name)
            result = prediction.to_json()
            if out is not None:
                out.write_text(prediction.to_csv())
                result["csv"] = str(out.resolve())
            job.result = result
    finally:
        if args.delete_slide:
            slide.unlink(missing_ok=True)
    if result is None:
        print("predict: cancelled", file=sys.stderr)
        return 1
    if args.json:
        json.dump(result, sys.stdout, indent=2)
        print()
    else:
        top = ", ".join(f"{t['tissue']} {t['probability']:.2f}" for t in result["top3"])
        tiles = result["tiles"]
        print(f"{result['slide']}: {result['tissue']} (top 3: {top}); {tiles['kept']} of {tiles['considered']} "
              f"tiles kept; {len(result['genes'])} genes predicted; {result['seconds'].get('total')} s"
              f"{' (cached)' if result['cached'] else ''}")
        for note in result["warnings"]:
            print(f"  warning: {note}")
    return 0
