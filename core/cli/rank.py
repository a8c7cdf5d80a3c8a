"""`python -m core rank --data DIR --run RUN [--epoch E] [--weights checkpoint|random|imagenet]
[--timm NAME --timm-weights FILE] [--components K] [--folds 5] [--repeats 3] --json`: rank every
filtered gene by how well slide embeddings predict it (cross-validated by donor, beside tissue-only,
k-means, random-weights and permutation baselines). Embeds what is missing first; the ranking is
cached. Prints genes, samples, donors, folds, repeats, seconds, csv, top, summary (and truth on the
demo cohort). Progress goes to stderr."""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path
from typing import Any

from core.base.config import resolve_data_dir, workspace
from core.base.errors import DataError
from core.base.fileio import atomic_path
from core.cli.embed import add_source_arguments, job_progress, source_from_args
from core.cli.info import load_cohort_from_args
from core.jobs import JobReporter
from core.ranking.cv import RankParams
from core.ranking.ridge import CRITERIA

TOP = 20


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("rank", help="rank every filtered gene by how well slide embeddings predict it")
    parser.add_argument("--data", help="dataset folder (default $HISTOGENE_DATA, else the demo cohort)")
    parser.add_argument("--histology-csv", help=argparse.SUPPRESS)
    parser.add_argument("--expression-gct", help=argparse.SUPPRESS)
    # Image features: the same flags as `embed`.
    add_source_arguments(parser)
    defaults = RankParams()
    parser.add_argument("--components", type=int, default=defaults.components,
                        help=f"PCA components of the embeddings (default {defaults.components})")
    parser.add_argument("--folds", type=int, default=defaults.folds, help=f"donor-grouped folds ({defaults.folds})")
    parser.add_argument("--repeats", type=int, default=defaults.repeats,
                        help=f"repeats of the cross-validation over seeds ({defaults.repeats})")
    parser.add_argument("--cv-seed", type=int, default=defaults.seed, help="seed of the folds")
    parser.add_argument("--clusters", type=int, default=defaults.clusters, help="k of the k-means baseline")
    parser.add_argument("--criterion", choices=CRITERIA, default=defaults.criterion,
                        help="ridge penalty per gene by exact leave-one-out (loo) or generalized CV (gcv)")
    parser.add_argument("--no-permutation", action="store_true", help="skip the permutation-null pass")
    parser.add_argument("--no-baseline", action="store_true",
                        help="skip the random-weights features (no recovered-gene rule)")
    parser.add_argument("--nonlinear-top", type=int, default=0, metavar="N",
                        help="also fit RBF kernel ridge for the N best genes by R², beside the ridge (default 0: off)")
    parser.add_argument("--out", help="also write the ranking CSV here (default: only the cached copy)")
    parser.add_argument("--top", type=int, default=TOP, help=f"genes listed under top (default {TOP})")
    parser.add_argument("--json", action="store_true", help="print the result as JSON on stdout")
    parser.add_argument("--job-dir", help=argparse.SUPPRESS)


def params_from_args(args: argparse.Namespace) -> RankParams:
    """RankParams from the flags; DataError naming the option for a value that cannot work."""
    for option, value, least in (("--components", args.components, 1), ("--folds", args.folds, 2),
                                 ("--repeats", args.repeats, 1), ("--clusters", args.clusters, 1),
                                 ("--top", args.top, 0), ("--nonlinear-top", args.nonlinear_top, 0)):
        if value < least:
            raise DataError(None, f"{option} must be at least {least}, got {value}")
    return RankParams(components=args.components, folds=args.folds, repeats=args.repeats, seed=args.cv_seed,
                      clusters=args.clusters, criterion=args.criterion, permutation_null=not args.no_permutation)


def result_of(ranking, data: Path, started: float, top: int = TOP) -> dict[str, Any]:
    """The command's JSON: the issue's fields, then recovered counts, sources and where things are."""
    from core.ranking.table import SEQUOIA_RULE, SEQUOIA_RULE_TEXT, STRICT_RULE_TEXT, top_ranked_genes
    from core.ranking.truth import truth_report

    summary = ranking.summary
    result: dict[str, Any] = {
        "genes": summary["genes"], "samples": summary["samples"], "donors": summary["donors"],
        "folds": summary["folds"], "repeats": summary["repeats"],
        "seconds": round(time.perf_counter() - started, 3), "csv": str(ranking.csv),
        "top": top_ranked_genes(ranking.table, top),
        "summary": {"positive_r": summary["positive_r"], "median_r_above_0_5": summary["median_r_above_0_5"]},
    }
    truth = truth_report(data, ranking.table)
    if truth is not None:
        result["truth"] = truth
    result["recovered"] = {
        "rule": SEQUOIA_RULE_TEXT,
        "source": summary.get("recovered"), "random_weights": summary.get("recovered_by_random"),
        "significant": summary.get("significant"), "significant_random_weights": summary.get("significant_random"),
        "strict_rule": STRICT_RULE_TEXT, "strict_source": summary.get("recovered_strict"),
        "strict_random_weights": summary.get("recovered_strict_by_random"),
    }
    # SEQUOIA's count and its thresholds at the top level (None without a random-weights baseline).
    # First: genes whose R² beyond tissue beats embeddings moved between donors within tissue (BH FDR < 0.05);
    # recovered_sequoia counts genes that beat random weights, which tissue identity alone mostly explains.
    result["recovered_beyond_tissue"] = summary.get("recovered_beyond_tissue")
    result["recovered_sequoia"] = summary.get("recovered")
    result["recovered_sequoia_thresholds"] = dict(SEQUOIA_RULE, p_values_n="donors")
    result["medians"] = {name: summary.get(name) for name in (
        "median_r2", "median_r2_beyond_tissue", "median_r2_tissue", "median_r2_kmeans", "median_r2_random",
        "median_r2_null")}
    source, baseline = summary.get("source") or {}, summary.get("baseline") or {}
    result.update({
        "components": summary["components"], "tissues": summary["tissues"],
        "source": source.get("label"), "baseline": baseline.get("label"),
        "cached": bool(summary.get("cached")), "ranking_seconds": summary.get("seconds"),
        "path": str(ranking.path), "warnings": summary.get("warnings", []),
    })
    return result


def _phase_progress(job: JobReporter, name: str):
    report = job_progress(job)
    report(0, 1, name)
    return lambda done, total, message="": report(done, total, f"{name}: {message}" if message else name)


def _num(value: float | None, spec: str = ".3f") -> str:
    return "n/a" if value is None else format(value, spec)


def run(args: argparse.Namespace) -> int:
    from core.ranking.api import rank_genes

    ws = workspace(args.workspace)
    data = resolve_data_dir(ws, args.data)
    params = params_from_args(args)  # bad options fail before the job starts
    source = source_from_args(ws, args)
    out = Path(args.out).expanduser() if args.out else None
    if out is not None and not out.parent.is_dir():
        raise DataError(out, "--out: its folder does not exist")
    cohort = load_cohort_from_args(args)
    result = None
    with JobReporter(ws, "rank", job_dir=args.job_dir) as job:
        started = time.perf_counter()
        ranking = rank_genes(ws, data, source, params, cohort=cohort, progress=job_progress(job),
                             cancel=job.cancel_requested, with_baseline=not args.no_baseline)
        result = result_of(ranking, data, started, args.top)
        if args.nonlinear_top:
            from core.ranking.nonlinear import nonlinear_beside_ridge

            result["nonlinear"] = nonlinear_beside_ridge(
                ws, data, source, ranking, params, args.nonlinear_top,
                _phase_progress(job, f"kernel ridge for the top {args.nonlinear_top} genes"), job.cancel_requested)
            result["seconds"] = round(time.perf_counter() - started, 3)
        if out is not None:
            with atomic_path(out) as tmp:
                shutil.copyfile(ranking.csv, tmp)
            result["csv"] = str(out.resolve())
        job.result = result
    if result is None:
        print("rank: cancelled", file=sys.stderr)
        return 1
    if args.json:
        json.dump(result, sys.stdout, indent=2)
        print()
    else:
        rec = result["recovered"]
        print(f"{result['genes']} genes x {result['samples']} samples ({result['donors']} donors), "
              f"{result['folds']} folds x {result['repeats']} repeats, "
              f"{'cached' if result['cached'] else 'computed'} in {result['seconds']} s; "
              f"positive r {result['summary']['positive_r']}, recovered {rec['source']} "
              f"(random weights {rec['random_weights']})")
        for row in result["top"][:10]:
            print(f"  {row['symbol']:<12} R² {_num(row['r2'])}  beyond tissue {_num(row['r2_beyond_tissue'])}  "
                  f"r {_num(row['r'])}  FDR {_num(row['fdr'], '.2g')}")
        if "nonlinear" in result:
            nl = result["nonlinear"]
            print(f"kernel ridge, top {nl['genes']} genes: median R² {_num(nl['median_r2_kernel'])} against ridge "
                  f"{_num(nl['median_r2_ridge'])}; better for {nl['kernel_better']}")
        print(result["csv"])
    return 0
