"""`python -m core runs [--json] [--delete RUN] [--prune RUN --keep 5,30]`: list training runs with their
status, or delete one, or free its disk by removing the checkpoints of all but some epochs."""

from __future__ import annotations

import argparse
import json
import sys

from core.base.config import workspace
from core.base.errors import DataError
from core.train import runs


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "runs", help="list training runs with status, the validation-selected epoch and test accuracy")
    parser.add_argument("--json", action="store_true", help="print the runs as JSON on stdout")
    parser.add_argument("--delete", metavar="RUN", help="delete a finished run folder")
    parser.add_argument("--prune", metavar="RUN", help="delete RUN's checkpoints except --keep and the latest")
    parser.add_argument("--keep", default="", metavar="EPOCHS",
                        help="with --prune: comma-separated epochs whose checkpoints stay (e.g. 5,30)")


def _epochs(text: str) -> list[int]:
    try:
        return [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise DataError(None, f"--keep takes comma-separated epoch numbers, not {text!r}") from None


def _size(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TB"


def _percent(value: float) -> str:
    return "" if value != value else f"{value:.1%}"


def run(args: argparse.Namespace) -> int:
    ws = workspace(args.workspace)
    if args.delete:
        runs.delete_run(ws, args.delete)
        print(f"deleted run {args.delete}", file=sys.stderr)
        return 0
    if args.prune:
        result = runs.prune_checkpoints(runs.run_path(ws, args.prune), _epochs(args.keep))
        print(f"pruned run {args.prune}: deleted the checkpoints of {len(result['deleted'])} epoch(s), "
              f"freed {_size(result['freed_bytes'])}; kept epochs {', '.join(map(str, result['kept']))}",
              file=sys.stderr)
        if args.json:
            print(json.dumps(result))
        return 0
    table = runs.list_runs(ws)
    if args.json:
        json.dump(json.loads(table.to_json(orient="records")), sys.stdout, indent=2)
        print()
    elif table.empty:
        print("no runs yet", file=sys.stderr)
    else:
        shown = table.drop(columns=["path", "message", "lr", "batch_size", "optimizer"]).copy()
        for column in ("val_acc_selected", "test_acc_selected", "test_acc_final"):
            shown[column] = shown[column].map(_percent)
        shown["duration_s"] = shown["duration_s"].map(runs.format_duration)
        shown["seconds_per_epoch"] = shown["seconds_per_epoch"].map(lambda v: "" if v != v else f"{v:.1f}")
        shown["disk_bytes"] = shown["disk_bytes"].map(_size)
        shown = shown.rename(columns={"duration_s": "duration", "disk_bytes": "disk", "val_acc_selected": "val_acc",
                                      "selected_epoch": "selected"})
        print(shown.astype(object).where(shown.notna(), "").to_string(index=False))
    return 0
