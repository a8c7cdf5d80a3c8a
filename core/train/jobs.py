"""Training as a background job: what the Training page (or a script) calls to start or resume a run.

The request (the TrainConfig and dataset) is written into the run folder before the worker starts,
so the run history shows what was asked for while the worker is still tiling and packing, before
it writes config.json.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from core import jobs
from core.base.config import Workspace
from core.base.errors import DataError
from core.base.fileio import atomic_write_json
from core.train.config import TrainConfig
from core.train.runs import REQUEST_NAME, new_run_dir, run_path

KIND = "train"


def launch_training(ws: Workspace, data_dir: str | Path, config: TrainConfig) -> jobs.Job:
    """Start a new run of `config` on `data_dir` as the workspace's one background job.

    Raises DataError for a bad option and JobBusyError (naming the running job) when another job
    holds the worker lock; either way no run folder is left behind.
    """
    try:
        config = config.validate()
    except ValueError as exc:
        raise DataError(None, f"bad training option: {exc}") from None
    run_dir = new_run_dir(ws)
    atomic_write_json(run_dir / REQUEST_NAME, {
        **asdict(config), "data_dir": str(data_dir), "created": datetime.now(UTC).isoformat(timespec="seconds"),
    })
    try:
        return jobs.launch(ws, KIND, train_argv(data_dir, config), job_dir=run_dir)
    except BaseException:
        shutil.rmtree(run_dir, ignore_errors=True)
        raise


def resume_training(ws: Workspace, data_dir: str | Path, run: str | Path) -> jobs.Job:
    """Continue `run` (id or folder) from its last complete epoch to its planned epochs.

    A run that stopped before training began (no config.json yet, e.g. cancelled while tiling) starts
    again from its request, in the same folder.
    """
    candidate = Path(run) if Path(run).is_dir() else ws.runs_dir / str(run)
    request_path = candidate / REQUEST_NAME
    if not (candidate / "config.json").exists() and request_path.exists():
        try:
            request = json.loads(request_path.read_text())
            config = TrainConfig.from_dict(request).validate()
        except (ValueError, TypeError) as exc:
            raise DataError(request_path, f"unreadable training request ({exc})") from None
        argv = train_argv(request.get("data_dir") or data_dir, config)
        return jobs.launch(ws, KIND, argv, job_dir=candidate)
    run_dir = run_path(ws, run)
    return jobs.launch(ws, KIND, resume_argv(data_dir, run_dir.name), job_dir=run_dir)


def train_argv(data_dir: str | Path, config: TrainConfig) -> list[str]:
    """The `train` command line for `config` (what the UI hands to core.jobs.launch)."""
    argv = ["train", "--data", str(data_dir), "--arch", config.arch, "--epochs", str(config.epochs),
            "--lr", repr(config.lr), "--batch-size", str(config.batch_size), "--image-size", str(config.image_size),
            "--seed", str(config.seed), "--optimizer", config.optimizer, "--weights", config.weights,
            "--mode", config.mode, "--test-fraction", repr(config.test_fraction),
            "--val-fraction", repr(config.val_fraction),
            "--num-workers", str(config.num_workers), "--schedule", config.schedule,
            "--weight-decay", repr(config.weight_decay), "--decay", config.decay]
    return argv if config.augment else [*argv, "--no-augment"]


def resume_argv(data_dir: str | Path, run_id: str) -> list[str]:
    """The `train` command line that continues run `run_id` from its last complete epoch."""
    return ["train", "--data", str(data_dir), "--resume", run_id]


def last_attempt(ws: Workspace, data_dir: str | Path, config: TrainConfig) -> dict[str, Any] | None:
    """The newest training of `config` on `data_dir` when it failed or was cancelled (its status and log tail),
    else None."""
    return jobs.last_failure(ws, KIND, train_argv(data_dir, config))
