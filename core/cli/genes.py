"""`python -m core genes --data DIR [--json]`: the gene filter funnel (all -> expressed -> variable -> named)."""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict

from core.base.errors import DataError
from core.cli.info import add_data_arguments, load_cohort_from_args
from core.data.genes import GeneFilterParams, filter_genes


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("genes", help="filter genes by expression, variability and symbol; print the funnel")
    add_data_arguments(parser)
    defaults = GeneFilterParams()
    parser.add_argument("--min-log-tpm", type=float, default=defaults.min_log_tpm, help="expressed: log2(1+TPM) above")
    parser.add_argument("--min-sd", type=float, default=defaults.min_sd, help="variable: SD of log2(1+TPM) above")


def run(args: argparse.Namespace) -> int:
    cohort = load_cohort_from_args(args)
    expression = cohort.expression
    if cohort.files.expression_gct is None:
        raise DataError(cohort.files.root, "no expression file (*.gct or *.gct.gz) to filter genes from")
    params = GeneFilterParams(min_log_tpm=args.min_log_tpm, min_sd=args.min_sd)
    result = filter_genes(expression, params)
    if args.json:
        report = {
            "params": asdict(params),
            "samples": len(expression.sample_ids),
            "funnel": [{"step": step, "genes": count} for step, count in result.funnel],
        }
        json.dump(report, sys.stdout, indent=2)
        print()
        return 0
    print(
        f"{len(expression.sample_ids)} samples; "
        f"expressed: logTPM > {params.min_log_tpm}, variable: SD > {params.min_sd}"
    )
    previous = None
    for step, count in result.funnel:
        removed = "" if previous is None else f"  (-{previous - count})"
        print(f"{step:<22} {count:>7}{removed}")
        previous = count
    return 0
