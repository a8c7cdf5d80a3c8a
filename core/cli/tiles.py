"""`python -m core tiles --data DIR | --slide PATH [--json]`: build (or reuse) the tile index with QC."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import pandas as pd

from core.base.config import Workspace, resolve_data_dir, workspace
from core.base.errors import DataError
from core.cli.info import add_donor_argument, print_cohort_warnings
from core.data.dataset import UNKNOWN_TISSUE
from core.tiles.index import TilingParams, build_tile_index, dataset_tiling_params, record_dataset_tiling_params

_BAR_WIDTH = 30


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("tiles", help="tile slides with quality control and balanced sampling")
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--data", help="dataset folder (default $HISTOGENE_DATA, else the demo cohort)")
    source.add_argument("--slide", help="tile one slide (tissue 'Unknown') for a quick check")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON on stdout")
    # Unset flags keep the dataset's recorded tiling (core.tiles.index.dataset_tiling_params), else the defaults.
    defaults = TilingParams()
    parser.add_argument("--tile-size", type=int, default=None,
                        help=f"tile side in px at --magnification (default {defaults.tile_size}: 224 µm at 20x)")
    parser.add_argument("--magnification", type=float, default=None, help=f"default {defaults.magnification:g}")
    parser.add_argument("--tiles-per-slide", type=int, default=None, help=f"default {defaults.tiles_per_slide}")
    parser.add_argument("--tissue-target", type=int, default=None,
                        help=f"tiles wanted per tissue (default {defaults.tissue_target}; "
                        "with --slide, --tiles-per-slide)")
    parser.add_argument("--all-tiles", action=argparse.BooleanOptionalAction, default=None,
                        help="QC every tissue cell (full grid, for maps) instead of each slide's quota")
    parser.add_argument("--workers", type=int, default=None, help="processes (default: CPU count)")
    parser.add_argument("--seed", type=int, default=None, help=f"default {defaults.seed}")
    add_donor_argument(parser)
    parser.add_argument("--job-dir", help=argparse.SUPPRESS)


_FLAGS = ("tile_size", "magnification", "tiles_per_slide", "tissue_target", "all_tiles", "seed")


def _params(args: argparse.Namespace, base: TilingParams) -> TilingParams:
    """`base` (the dataset's recorded tiling) with the flags given on the command line."""
    for name in ("tile_size", "tiles_per_slide", "tissue_target", "magnification"):
        value = getattr(args, name)
        if value is not None and value <= 0:
            raise DataError(None, f"--{name.replace('_', '-')} must be positive, got {value}")
    changes = {name: getattr(args, name) for name in _FLAGS if getattr(args, name) is not None}
    return dataclasses.replace(base, **changes)


def _one_slide(path: str) -> pd.DataFrame:
    slide = Path(path)
    if not slide.is_file():
        raise DataError(slide, "file not found")
    return pd.DataFrame(
        {"sample_id": [slide.stem or slide.name], "tissue": [UNKNOWN_TISSUE], "subject_id": [""], "slide_path": [path]}
    )


def _cohort_samples(data: Path, ws: Workspace, donor_column: str | None = None) -> pd.DataFrame:
    """Samples with a slide, from core.data.dataset (the contract's loader)."""
    from core.data.dataset import load_cohort

    cohort = load_cohort(data, ws, donor_column=donor_column)
    print_cohort_warnings(cohort)
    samples = cohort.samples
    return samples[samples["has_slide"].astype(bool)]


def _reporter(ws: Workspace, job_dir: str | None) -> AbstractContextManager[Any]:
    """core.jobs.JobReporter when that module is present; a no-op stand-in otherwise."""
    try:
        from core.jobs import JobReporter
    except ImportError:
        return _NoJob()
    return JobReporter(ws, "tiles", job_dir=job_dir)


class _NoJob(AbstractContextManager):
    result: Any = None

    def progress(self, done: float, total: float | None, message: str = "", **extra: Any) -> None:
        pass

    def check_cancel(self) -> None:
        pass

    def __exit__(self, *exc_info: object) -> None:
        return None


def _print_bar(done: float, total: int, message: str) -> None:
    """`done` slides of `total`; a fraction is the share of the slides under way (progress within a slide)."""
    filled = min(_BAR_WIDTH, round(_BAR_WIDTH * done / total)) if total else _BAR_WIDTH
    line = f"[{'#' * filled}{'.' * (_BAR_WIDTH - filled)}] {int(done)}/{total} {message}"
    if sys.stderr.isatty():
        end = "\n" if done >= total else ""
        print(f"\r{line[:120]:<120}", end=end, file=sys.stderr, flush=True)
    else:
        print(line, file=sys.stderr, flush=True)


def _human(summary: dict[str, Any]) -> str:
    rejected = ", ".join(f"{stage} {count}" for stage, count in summary["rejected"].items() if count) or "none"
    lines = [
        f"tiles: {summary['considered']} considered of {summary.get('candidates', summary['considered'])} tissue cells"
        f" ({summary.get('mode', 'all_tiles')}), {summary['kept']} kept, {summary.get('selected', 0)} selected",
        f"rejected: {rejected}",
    ]
    for sample_id, entry in summary["per_slide"].items():
        line = f"  {sample_id} ({entry['tissue']}): {entry['kept']} kept of {entry['considered']}"
        if entry.get("magnification_assumed"):
            line += f" [magnification assumed {entry['magnification']:g}x]"
        if entry.get("note"):
            line += f" [{entry['note']}]"
        lines.append(line)
    for sample_id, error in summary.get("errors", {}).items():
        lines.append(f"  {sample_id}: error: {error}")
    lines.append(f"index: {summary['index']}" + (" (reused)" if summary.get("cached") else ""))
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    ws = workspace(args.workspace)
    if args.slide:
        params = _params(args, TilingParams())
        if args.tissue_target is None:
            # One slide is checked, not a tissue: its quota is the per-slide one (the cohort's
            # tissue target would ask a lone slide for 5,000 tiles, i.e. its whole grid).
            params = dataclasses.replace(params, tissue_target=params.tiles_per_slide)
        samples = _one_slide(args.slide)
    else:
        data = resolve_data_dir(ws, args.data)
        params = _params(args, dataset_tiling_params(ws, data))
        samples = _cohort_samples(data, ws, args.donor_column)
        # Recorded before tiling, so training and the pages look up this index (and a cancelled run
        # is resumed with the same parameters from the page's button).
        record_dataset_tiling_params(ws, data, params)
    result = None
    with _reporter(ws, args.job_dir) as job:

        def progress(done: float, total: int, message: str) -> None:
            _print_bar(done, total, message)
            job.progress(done, total, message)
            job.check_cancel()  # stops the remaining slides; the job ends `cancelled`

        result = build_tile_index(samples, params, ws, progress=progress, workers=args.workers)
        errors = result.summary.get("errors") or {}
        if errors and not result.summary.get("slides_tiled"):
            # Nothing could be tiled: fail with the (first) slide's own message, exit code 2.
            raise DataError(None, next(iter(errors.values())))
        job.result = {key: result.summary[key] for key in ("considered", "kept", "selected", "rejected", "index")}
    if result is None:  # cancelled: the reporter recorded it; the saved indexes are untouched
        print("tiles: cancelled", file=sys.stderr)
        return 1
    summary = result.summary
    if args.json:
        json.dump(summary, sys.stdout, indent=2, default=str)
        print()
    else:
        print(_human(summary))
    return 0
