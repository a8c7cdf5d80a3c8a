"""`python -m core map --data DIR --run RUN [--epoch E] --level tiles|slides|genes|unified
--method pca|umap|tsne --json`: a cached 2-D map (embedding the tiles first when needed); prints level,
method, points, path (a CSV of coordinates + metadata), cached, seconds. Progress goes to stderr."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from core.base.config import resolve_data_dir, workspace
from core.base.errors import DataError
from core.base.fileio import atomic_path
from core.cli.embed import add_source_arguments, job_progress, source_from_args
from core.cli.info import load_cohort_from_args
from core.data.genes import GeneFilterParams
from core.jobs import JobReporter
from core.maps.export import coordinates_table
from core.maps.jobs import MapRequest, points_for
from core.maps.points import LEVELS
from core.maps.reduce import METHODS, MapParams, cached_map
from core.train import runs


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("map", help="a PCA / UMAP / t-SNE map of tiles, slides, genes or unified")
    parser.add_argument("--data", help="dataset folder (default $HISTOGENE_DATA, else the demo cohort)")
    parser.add_argument("--histology-csv", help=argparse.SUPPRESS)
    parser.add_argument("--expression-gct", help=argparse.SUPPRESS)
    parser.add_argument("--level", choices=LEVELS, default="slides")
    parser.add_argument("--method", choices=METHODS, default="umap")
    defaults, genes = MapParams(), GeneFilterParams()
    parser.add_argument("--pca-components", type=int, default=defaults.pca_components)
    parser.add_argument("--n-neighbors", type=int, default=defaults.n_neighbors, help="UMAP neighbours")
    parser.add_argument("--min-dist", type=float, default=defaults.min_dist, help="UMAP minimum distance")
    parser.add_argument("--perplexity", type=float, default=defaults.perplexity, help="t-SNE perplexity")
    parser.add_argument("--map-seed", type=int, default=defaults.seed, help="seed of the layout")
    parser.add_argument("--subset", type=int, help="tiles: map a seeded random subset of this many")
    parser.add_argument("--subset-seed", type=int, default=0)
    parser.add_argument("--weight", type=float, default=0.5, help="unified: image share of the variance (0..1)")
    parser.add_argument("--min-log-tpm", type=float, default=genes.min_log_tpm, help="genes: expressed above")
    parser.add_argument("--min-sd", type=float, default=genes.min_sd, help="genes: SD above")
    # Image features: the same flags as `embed`.
    add_source_arguments(parser)
    parser.add_argument("--split-run", help=argparse.SUPPRESS)  # colour by this run's split (page use)
    parser.add_argument("--json", action="store_true", help="print the result as JSON on stdout")
    parser.add_argument("--job-dir", help=argparse.SUPPRESS)


def request_from_args(args: argparse.Namespace) -> MapRequest:
    ws = workspace(args.workspace)
    needs_features = args.level != "genes"
    has_features = bool(args.run or args.timm or args.timm_weights or args.weights != "checkpoint")
    source = source_from_args(ws, args) if needs_features or has_features else None
    split_run = args.split_run or args.run
    if args.subset is not None and args.subset < 1:
        raise DataError(None, f"--subset must be positive, got {args.subset}")
    params = MapParams(method=args.method, pca_components=args.pca_components, n_neighbors=args.n_neighbors,
                       min_dist=args.min_dist, perplexity=args.perplexity, seed=args.map_seed)
    return MapRequest(
        level=args.level, params=params, source=source if needs_features else None,
        run_dir=str(runs.run_path(ws, split_run)) if split_run else None, limit=args.subset,
        subset_seed=args.subset_seed, weight=args.weight,
        genes=GeneFilterParams(min_log_tpm=args.min_log_tpm, min_sd=args.min_sd),
    ).checked()


def run(args: argparse.Namespace) -> int:
    ws = workspace(args.workspace)
    data = resolve_data_dir(ws, args.data)
    request = request_from_args(args)  # bad options fail before the job starts
    cohort = load_cohort_from_args(args)
    result = None
    with JobReporter(ws, "map", job_dir=args.job_dir) as job:
        started = time.perf_counter()
        report = job_progress(job, check_cancel=True)
        points = points_for(ws, data, cohort, request, compute=True, progress=report, cancel=job.cancel_requested)
        # Slides: the fitted UMAP is kept too, so a predicted slide is placed by its transform (core.predict).
        mapped = cached_map(ws, points.values, request.params, input_key=points.key, progress=report,
                            keep_reducer=request.level == "slides")
        out = ws.root / "maps" / f"{request.level}-{request.params.method}-{mapped.key.split(':')[-1]}.csv"
        out.parent.mkdir(parents=True, exist_ok=True)
        if not out.exists():
            with atomic_path(out) as tmp:
                coordinates_table(points, mapped.coords).to_csv(tmp, index=False)
        result = {
            "level": request.level, "method": request.params.method, "points": len(points), "path": str(out),
            "cached": mapped.cached, "seconds": round(time.perf_counter() - started, 3),
            "source": request.source.label if request.source else "expression", "map_key": mapped.key,
            "explained_variance_2": float(mapped.pca.explained_variance_ratio[:2].sum()),
        }
        job.result = result
    if result is None:
        print("map: cancelled", file=sys.stderr)
        return 1
    if args.json:
        json.dump(result, sys.stdout, indent=2)
        print()
    else:
        print(f"{result['level']} {result['method']} map of {result['points']} points "
              f"({'cached' if result['cached'] else 'computed'} in {result['seconds']} s)")
        print(Path(result["path"]))
    return 0
