"""`python -m core train --data DIR [options] | --resume RUN`: tile, pack and train; the run folder is
printed as the last line of stdout, progress goes to stderr."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import pandas as pd

from core.base.config import Workspace, resolve_data_dir, workspace
from core.base.errors import DataError, JobBusyError
from core.cli.info import add_donor_argument, print_cohort_warnings
from core.jobs import JobReporter
from core.train import runs
from core.train.config import ARCHITECTURES, DECAY_TARGETS, MODES, OPTIMIZERS, SCHEDULES, WEIGHTS, TrainConfig
from core.train.loop import check_weights, train_run


def register(subparsers: argparse._SubParsersAction) -> None:
    defaults = TrainConfig()
    parser = subparsers.add_parser("train", help="train the tissue classifier on a cohort (or resume a run)")
    parser.add_argument("--data", help="dataset folder (default $HISTOGENE_DATA, else the demo cohort)")
    parser.add_argument("--resume", metavar="RUN", help="continue RUN (id or folder) to its planned epochs")
    parser.add_argument("--arch", choices=ARCHITECTURES, default=defaults.arch)
    parser.add_argument("--epochs", type=int, default=defaults.epochs)
    parser.add_argument("--lr", type=float, default=defaults.lr)
    parser.add_argument("--batch-size", type=int, default=defaults.batch_size)
    parser.add_argument("--image-size", type=int, default=defaults.image_size, help="training tile side in px")
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--optimizer", choices=OPTIMIZERS, default=defaults.optimizer)
    parser.add_argument("--weights", choices=WEIGHTS, default=defaults.weights,
                        help="imagenet: only from torch's hub cache on disk, never downloaded")
    parser.add_argument("--mode", choices=MODES, default=defaults.mode,
                        help="at-once: all epochs in one go; restart: one epoch per rebuild from the checkpoint")
    parser.add_argument("--test-fraction", type=float, default=defaults.test_fraction,
                        help="share of donors held out for the final test report")
    parser.add_argument("--val-fraction", type=float, default=defaults.val_fraction,
                        help="share of donors (taken from training) whose tiles select the epoch to keep")
    parser.add_argument("--no-augment", action="store_true", help="train without flips/rotations/colour jitter")
    parser.add_argument("--num-workers", type=int, default=defaults.num_workers, help="batch loader processes")
    parser.add_argument("--schedule", choices=SCHEDULES, default=defaults.schedule, help="learning-rate schedule")
    parser.add_argument("--weight-decay", type=float, default=defaults.weight_decay,
                        help="decoupled weight decay (adamw only)")
    parser.add_argument("--decay", choices=DECAY_TARGETS, default=defaults.decay,
                        help="conv: decay conv kernels only; all: every parameter")
    add_donor_argument(parser)
    parser.add_argument("--job-dir", help=argparse.SUPPRESS)


def _config(args: argparse.Namespace) -> TrainConfig:
    config = TrainConfig(
        arch=args.arch, lr=args.lr, epochs=args.epochs, batch_size=args.batch_size, image_size=args.image_size,
        augment=not args.no_augment, optimizer=args.optimizer, weights=args.weights, seed=args.seed,
        mode=args.mode, test_fraction=args.test_fraction, val_fraction=args.val_fraction, num_workers=args.num_workers,
        schedule=args.schedule, weight_decay=args.weight_decay, decay=args.decay,
    )
    try:
        return config.validate()
    except ValueError as exc:
        raise DataError(None, f"bad training option: {exc}") from None


class _Progress:
    """Forwards progress to the job and prints it on stderr (at most every second, plus phase changes)."""

    def __init__(self, job: JobReporter) -> None:
        self.job = job
        self.result: Any = None
        self._last_print = 0.0
        self._last_phase = ""

    def progress(self, done: int, total: int, message: str = "", **extra: Any) -> None:
        self.job.progress(done, total, message, **extra)
        phase = message.split(" ", 1)[0]
        now = time.monotonic()
        if now - self._last_print >= 1.0 or phase != self._last_phase or done >= total:
            print(f"[{done}/{total}] {message}", file=sys.stderr, flush=True)
            self._last_print, self._last_phase = now, phase

    def cancel_requested(self) -> bool:
        return self.job.cancel_requested()


def _tile_index(
    data: Path, ws: Workspace, reporter: _Progress, donor_column: str | None = None
) -> tuple[pd.DataFrame, Path]:
    """Build (or reuse) the cohort's tile index with the tiling the dataset uses (dataset_tiling_params)."""
    from core.data.dataset import load_cohort
    from core.tiles.index import build_tile_index, dataset_tiling_params

    cohort = load_cohort(data, ws, donor_column=donor_column)
    print_cohort_warnings(cohort)
    samples = cohort.samples[cohort.samples["has_slide"].astype(bool)]
    if samples.empty:
        raise DataError(data, "no slides to train on")

    def progress(done: int, total: int, message: str) -> None:
        reporter.progress(done, total, f"tiling {message}")
        reporter.job.check_cancel()  # raises JobCancelled: the job ends `cancelled` before training starts

    result = build_tile_index(samples, dataset_tiling_params(ws, data), ws, progress=progress)
    return result.index, result.path


def _resume_index(saved: dict[str, Any], ws: Workspace, reporter: _Progress) -> pd.DataFrame:
    from core.tiles.index import load_tile_index

    path = saved.get("tile_index_path")
    if path and Path(path).exists():
        return load_tile_index(path)
    data = Path(saved.get("data_dir") or "")
    if not data.is_dir():
        raise DataError(data, "the run's tile index and dataset folder are both gone; cannot resume")
    return _tile_index(data, ws, reporter)[0]


def run(args: argparse.Namespace) -> int:
    ws = workspace(args.workspace)
    if args.resume:
        run_dir = runs.run_path(ws, args.resume)
        if args.job_dir and Path(args.job_dir).resolve() != run_dir.resolve():
            raise DataError(args.job_dir, f"--job-dir must be the resumed run's folder {run_dir}")
        config = None
        check_weights(TrainConfig.from_dict(runs.run_config(run_dir)))
    else:
        config = _config(args)
        check_weights(config)  # before tiling: a missing weights file is a clear error, not a late failure
        data = resolve_data_dir(ws, args.data)
        run_dir = Path(args.job_dir).resolve() if args.job_dir else runs.new_run_dir(ws)
    summary = None
    try:
        with JobReporter(ws, "train", job_dir=run_dir) as job:
            reporter = _Progress(job)
            if config is None:
                index = _resume_index(runs.run_config(run_dir), ws, reporter)
                meta = None
            else:
                index, index_path = _tile_index(data, ws, reporter, args.donor_column)
                meta = {"data_dir": str(data), "tile_index_path": str(index_path)}
            summary = train_run(run_dir, config, index, ws, reporter, meta=meta)
            job.result = {**summary, "run_dir": str(run_dir)}
    except JobBusyError:  # only raised on entering: nothing was written yet
        if config is not None and not args.job_dir and not any(run_dir.iterdir()):
            run_dir.rmdir()
        raise
    if summary is None:
        print("train: cancelled while tiling", file=sys.stderr)
    else:
        print(f"{summary['message']}; {_accuracy_line(summary)}", file=sys.stderr)
    print(run_dir)  # last stdout line: the run folder, for scripts and the UI
    return 0 if summary is not None and summary["status"] == "done" else 1


def _percent(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1%}"


def _accuracy_line(summary: dict[str, Any]) -> str:
    """Test accuracy at the validation-selected epoch and at the final one (never the best on test)."""
    if summary.get("selected_epoch") is None:
        return "no epoch finished"
    return (f"epoch {summary['selected_epoch']} selected by {summary.get('selected_by')} "
            f"(validation {_percent(summary.get('val_acc_selected'))}): test accuracy "
            f"{_percent(summary.get('test_acc_selected'))} there, {_percent(summary.get('test_acc_final'))} "
            "at the final epoch")
