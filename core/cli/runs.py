"""`python -m core runs [--json] [--delete RUN]`: list training runs with their status."""

from __future__ import annotations

import argparse
import json
import sys

from core import runs
from core.config import workspace


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("runs", help="list training runs with status and best test accuracy")
    parser.add_argument("--json", action="store_true", help="print the runs as JSON on stdout")
    parser.add_argument("--delete", metavar="RUN", help="delete a finished run folder")


def run(args: argparse.Namespace) -> int:
    ws = workspace(args.workspace)
    if args.delete:
        runs.delete_run(ws, args.delete)
        print(f"deleted run {args.delete}", file=sys.stderr)
        return 0
    table = runs.list_runs(ws)
    if args.json:
        json.dump(json.loads(table.to_json(orient="records")), sys.stdout, indent=2)
        print()
    elif table.empty:
        print("no runs yet", file=sys.stderr)
    else:
        shown = table.drop(columns=["path", "message"]).copy()
        shown["best_test_acc"] = shown["best_test_acc"].map(lambda v: "" if v != v else f"{v:.3f}")
        shown["duration_s"] = shown["duration_s"].round(0).astype(int)
        print(shown.to_string(index=False))
    return 0
