"""`python -m core info --data DIR [--json]`: counts of samples, slides, expression and joins per tissue."""

from __future__ import annotations

import argparse
import json
import sys
import warnings

from core.base.config import resolve_data_dir, workspace
from core.base.errors import DataWarning
from core.data.dataset import Cohort, cohort_info, load_cohort


def add_donor_argument(parser: argparse.ArgumentParser) -> None:
    """--donor-column (shared with `tiles` and `train`)."""
    parser.add_argument("--donor-column", help="histology CSV column naming the donor (default: the dataset's "
                        "saved choice, else 'Subject ID'; blank donors are read from GTEx sample IDs)")


def add_data_arguments(parser: argparse.ArgumentParser) -> None:
    """--data, --histology-csv, --expression-gct, --donor-column, --json (shared with `genes`)."""
    parser.add_argument("--data", help="dataset folder (default $HISTOGENE_DATA, else the demo cohort)")
    parser.add_argument("--histology-csv", help="histology CSV (default: found in the dataset folder)")
    parser.add_argument("--expression-gct", help="expression GCT, plain or .gz (default: found in the folder)")
    add_donor_argument(parser)
    parser.add_argument("--json", action="store_true", help="print JSON on stdout")


def print_cohort_warnings(cohort: Cohort) -> None:
    """Each warning on stderr once; samples without a donor get a banner, as they make splits leak."""
    for message in cohort.warnings:
        if message != cohort.donor_note:
            print(f"warning: {message}", file=sys.stderr)
    if cohort.donor_note:
        rule = "!" * 78
        print(f"{rule}\nWARNING: {cohort.donor_note}\n{rule}", file=sys.stderr)


def load_cohort_from_args(args: argparse.Namespace) -> Cohort:
    """The cohort the flags name; its warnings go to stderr once (not also as Python warnings)."""
    ws = workspace(args.workspace)
    data = resolve_data_dir(ws, args.data)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataWarning)
        cohort = load_cohort(data, ws, histology_csv=args.histology_csv, expression_gct=args.expression_gct,
                             donor_column=getattr(args, "donor_column", None))
    print_cohort_warnings(cohort)
    return cohort


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("info", help="count samples, slides and expression joins in a dataset folder")
    add_data_arguments(parser)


def format_info(cohort: Cohort, info: dict) -> str:
    files = cohort.files
    lines = [
        f"dataset        {files.root}",
        f"histology CSV  {files.histology_csv or '(none)'}",
        f"expression     {files.expression_gct or '(none)'}",
        f"slides folder  {files.slides_dir or '(none)'}",
        "",
        f"samples {info['samples']}   slides {info['slides']}   donors {info['donors']}   "
        f"tissues {info['tissues']}   with expression {info['samples_with_expression']}   "
        f"joined {info['joined']}   genes {info['genes']}",
        "",
    ]
    width = max([len("tissue"), *(len(t) for t in info["per_tissue"])])
    lines.append(f"{'tissue':<{width}}  {'samples':>7}  {'slides':>6}  {'with expression':>15}  {'joined':>6}")
    for tissue, counts in info["per_tissue"].items():
        lines.append(
            f"{tissue:<{width}}  {counts['samples']:>7}  {counts['slides']:>6}  "
            f"{counts['samples_with_expression']:>15}  {counts['joined']:>6}"
        )
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    cohort = load_cohort_from_args(args)
    info = cohort_info(cohort)
    if args.json:
        json.dump(info, sys.stdout, indent=2)
        print()
    else:
        print(format_info(cohort, info))
    return 0
