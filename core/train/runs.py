"""Reading side of training runs (cheap enough for the UI to call every second; no torch import)."""

from __future__ import annotations

import json
import secrets
import shutil
import time
from collections.abc import Collection
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from core.base.config import Workspace
from core.base.errors import DataError
from core.base.fileio import read_json_object
from core.jobs import Job, job_state, pid_alive
from core.train.split import SPLIT_COLUMNS, SPLIT_NAME, read_split

RUN_COLUMNS = (
    "run_id", "status", "arch", "lr", "batch_size", "image_size", "epochs_done", "epochs_planned",
    "selected_epoch", "val_acc_selected", "test_acc_selected", "test_acc_final", "duration_s",
    "seconds_per_epoch", "disk_bytes", "mode", "optimizer", "created", "message", "path",
)
# Written by core.train.jobs before the worker starts; stands in for config.json until it exists.
REQUEST_NAME = "request.json"
BATCH_COLUMNS = ("epoch", "batch", "batches", "loss", "acc", "tiles_per_s", "elapsed")
EPOCH_COLUMNS = (
    "epoch", "train_loss", "train_acc", "val_loss", "val_acc", "test_loss", "test_acc", "seconds", "tiles_per_s",
    "confusion", "val_confusion",
)
SELECTION_KEYS = ("selected_epoch", "selected_by", "val_acc_selected", "test_acc_selected", "test_acc_final")


def _read_json(path: Path) -> dict[str, Any]:
    return read_json_object(path) or {}


def new_run_dir(ws: Workspace) -> Path:
    """A fresh, empty run folder under ws.runs_dir named by time (sorts chronologically)."""
    ws.runs_dir.mkdir(parents=True, exist_ok=True)
    while True:
        path = ws.runs_dir / f"{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(2)}"
        try:
            path.mkdir()
            return path
        except FileExistsError:
            continue


def run_path(ws: Workspace, run: str | Path) -> Path:
    """A run id (folder name under ws.runs_dir) or a path -> the run folder; DataError if not a run."""
    candidate = Path(run)
    path = candidate if candidate.is_dir() and (candidate / "config.json").exists() else ws.runs_dir / str(run)
    if path.resolve().parent != ws.runs_dir.resolve() and not (path / "config.json").exists():
        raise DataError(run, "not a run id or run folder")
    if not (path / "config.json").exists():
        raise DataError(path, "no such run (missing config.json)")
    return path


def run_config(run_dir: str | Path) -> dict[str, Any]:
    """config.json of a run (TrainConfig fields plus classes, created, data_dir, tile counts)."""
    path = Path(run_dir) / "config.json"
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise DataError(path, "no such run (missing config.json)") from None
    except ValueError as exc:
        raise DataError(path, f"run config is not valid JSON ({exc})") from None


def run_split_tiles(run_dir: str | Path) -> dict[str, Any]:
    """split.json: donors and tile ids per split (train, validation, test), seeds."""
    return _read_json(Path(run_dir) / "split.json")


def run_split(run_dir: str | Path) -> pd.DataFrame:
    """The run's donor split: one row per sample, columns sample_id, subject_id, split (train / validation /
    test), from split.csv. A run saved before split.csv existed gets its samples from split.json's tile ids
    (subject_id then empty, no validation); DataError when neither is there."""
    run_dir = Path(run_dir)
    if (run_dir / SPLIT_NAME).exists():
        return read_split(run_dir / SPLIT_NAME)
    tiles = run_split_tiles(run_dir)
    if not tiles.get("train_tiles"):
        raise DataError(run_dir / SPLIT_NAME, "this run has no saved split")
    rows = {}
    for name, key in (("train", "train_tiles"), ("validation", "validation_tiles"), ("test", "test_tiles")):
        for tile_id in tiles.get(key) or []:
            rows.setdefault(str(tile_id).rsplit(":", 2)[0], name)
    return pd.DataFrame({"sample_id": list(rows), "subject_id": "", "split": list(rows.values())},
                        columns=list(SPLIT_COLUMNS))


def _clean(value: Any) -> Any:
    """NaN and numpy scalars -> JSON-able Python values."""
    if value is None or (isinstance(value, float) and value != value):
        return None
    return value.item() if hasattr(value, "item") else value


def select_epoch(epochs: pd.DataFrame) -> dict[str, Any]:
    """The epoch to keep, chosen on the validation donors only, and the test accuracy there and at the end.

    Highest validation accuracy; ties go to the lower validation loss, then the earlier epoch. A run
    without validation donors (or saved before they existed) selects its final epoch and says so. The
    test columns are read only to report them, never to choose.
    """
    if epochs is None or epochs.empty:
        return dict.fromkeys(SELECTION_KEYS)
    epochs = epochs.sort_values("epoch")
    final = epochs.iloc[-1]
    scored = epochs[epochs["val_acc"].notna()] if "val_acc" in epochs else epochs.iloc[:0]
    if scored.empty:
        chosen, basis = final, "final epoch (no validation donors)"
    else:
        loss = scored["val_loss"].astype(float).fillna(float("inf")) if "val_loss" in scored else 0.0
        ranked = scored.assign(_loss=loss).sort_values(["val_acc", "_loss", "epoch"], ascending=[False, True, True])
        chosen, basis = ranked.iloc[0], "validation accuracy"
    return {
        "selected_epoch": int(chosen["epoch"]),
        "selected_by": basis,
        "val_acc_selected": _clean(chosen.get("val_acc")),
        "test_acc_selected": _clean(chosen.get("test_acc")),
        "test_acc_final": _clean(final.get("test_acc")),
    }


def run_selection(run_dir: str | Path) -> dict[str, Any]:
    """`select_epoch` of a run folder's metrics.jsonl: the one place that knows a run's selected epoch."""
    return select_epoch(read_metrics(run_dir)[1])


def selected_epoch(run_dir: str | Path) -> int | None:
    """The run's epoch selected on validation (None before its first epoch)."""
    chosen = run_selection(run_dir)["selected_epoch"]
    return None if chosen is None else int(chosen)


def format_duration(seconds: float | None) -> str:
    """A duration for people: "45 s", "12 min 05 s", "1 h 01 min", "1 d 01 h" ("—" when unknown)."""
    if seconds is None or seconds != seconds or seconds < 0:
        return "—"
    total = int(round(seconds))
    days, rest = divmod(total, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days} d {hours:02d} h"
    if hours:
        return f"{hours} h {minutes:02d} min"
    if minutes:
        return f"{minutes} min {secs:02d} s"
    return f"{secs} s"


def disk_usage(path: str | Path) -> int:
    """Bytes of the files under `path` (what deleting or pruning can give back)."""
    total = 0
    for item in Path(path).rglob("*"):
        try:
            if item.is_file() and not item.is_symlink():
                total += item.stat().st_size
        except OSError:
            continue  # a checkpoint replaced while we looked
    return total


def checkpoint_path(run_dir: str | Path, epoch: int) -> Path:
    """Where a run keeps its checkpoint of `epoch` (written by core.train.loop, read by core.embed)."""
    return Path(run_dir) / "checkpoints" / f"epoch_{int(epoch):03d}.pt"


def checkpoint_epochs(run_dir: str | Path) -> list[int]:
    """Epochs that have a checkpoint file, ascending."""
    epochs = []
    for path in (Path(run_dir) / "checkpoints").glob("epoch_*.pt"):
        try:
            epochs.append(int(path.stem.split("_")[1]))
        except (IndexError, ValueError):
            continue
    return sorted(epochs)


def prune_checkpoints(run_dir: str | Path, keep_epochs: Collection[int]) -> dict[str, Any]:
    """Delete every checkpoint but those of `keep_epochs` and the latest (which resume continues from);
    refuses a running run. Returns {"deleted": [epochs], "kept": [epochs], "freed_bytes": n}."""
    run_dir = Path(run_dir)
    if not (run_dir / "checkpoints").is_dir():
        raise DataError(run_dir, "this run has no checkpoints")
    if run_status(run_dir) == "running":
        raise DataError(run_dir, "this run is training now; cancel it and wait for it to stop before pruning")
    have = checkpoint_epochs(run_dir)
    unknown = sorted(set(keep_epochs) - set(have))
    if unknown:
        raise DataError(run_dir, f"no checkpoint for epoch(s) {', '.join(map(str, unknown))}; "
                                 f"the run has {', '.join(map(str, have)) or 'none'}")
    keep = set(keep_epochs) | ({have[-1]} if have else set())
    deleted, freed = [], 0
    for epoch in have:
        if epoch in keep:
            continue
        path = run_dir / "checkpoints" / f"epoch_{epoch:03d}.pt"
        freed += path.stat().st_size
        path.unlink()
        deleted.append(epoch)
    return {"deleted": deleted, "kept": sorted(keep), "freed_bytes": freed}


def _job_state(run_dir: Path) -> tuple[str | None, str]:
    """(state, error) from the job's status.json via core.jobs (a dead worker reads `failed`)."""
    if not (run_dir / "status.json").exists():
        return None, ""
    try:
        status = Job(run_dir).status()
    except DataError:
        return None, ""
    return status.get("state"), status.get("error") or ""


def run_status(run_dir: str | Path) -> str:
    """running, done, cancelled, failed, paused (stopped before its planned epochs) or new."""
    run_dir = Path(run_dir)
    return _combined_status(_job_state(run_dir)[0], _read_json(run_dir / "summary.json"))


def _combined_status(state: str | None, summary: dict[str, Any]) -> str:
    if state is not None:
        if state == "done" and summary.get("status") == "paused":
            return "paused"
        return state
    status = summary.get("status")
    if status is None:
        return "new"
    if status == "running" and not pid_alive(summary.get("pid")):
        return "failed"  # train_run called without a job whose process died
    return str(status)


def list_runs(ws: Workspace) -> pd.DataFrame:
    """One row per run folder, newest first; columns RUN_COLUMNS. Reads only small JSON files."""
    rows = []
    # A run that failed before writing config.json (e.g. while tiling) still has the job's status.json.
    patterns = ("*/config.json", "*/status.json", f"*/{REQUEST_NAME}")
    folders = {p.parent for pattern in patterns for p in ws.runs_dir.glob(pattern)}
    for run_dir in sorted(folders, key=lambda p: p.name, reverse=True):
        config = _read_json(run_dir / "config.json") or _read_json(run_dir / REQUEST_NAME)
        summary = _read_json(run_dir / "summary.json")
        state, error = _job_state(run_dir)
        rows.append({
            "run_id": run_dir.name,
            "status": _combined_status(state, summary),
            "arch": config.get("arch"),
            "lr": config.get("lr"),
            "batch_size": config.get("batch_size"),
            "image_size": config.get("image_size"),
            "epochs_done": int(summary.get("epochs_done") or 0),
            "epochs_planned": int(config.get("epochs") or 0),
            "selected_epoch": summary.get("selected_epoch"),
            "val_acc_selected": summary.get("val_acc_selected"),
            "test_acc_selected": summary.get("test_acc_selected"),
            # Runs saved before validation existed: their last epoch's test accuracy.
            "test_acc_final": summary.get("test_acc_final", summary.get("last_test_acc")),
            "duration_s": float(summary.get("train_seconds") or 0.0),
            "seconds_per_epoch": (float(summary.get("train_seconds") or 0.0) / int(summary["epochs_done"])
                                  if summary.get("epochs_done") else None),
            "disk_bytes": disk_usage(run_dir),
            "mode": config.get("mode"),
            "optimizer": config.get("optimizer"),
            "created": config.get("created"),
            "message": error or summary.get("message", ""),
            "path": str(run_dir),
        })
    frame = pd.DataFrame(rows, columns=list(RUN_COLUMNS))
    # Nullable ints: a run that failed before config.json has no batch size, without turning the column float.
    return frame.astype({"lr": "float64", "batch_size": "Int64", "image_size": "Int64",
                         "selected_epoch": "Int64", "val_acc_selected": "float64", "test_acc_selected": "float64",
                         "test_acc_final": "float64", "duration_s": "float64", "seconds_per_epoch": "float64",
                         "disk_bytes": "int64"})


def read_metrics(run_dir: str | Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(batches, epochs) from metrics.jsonl; a half-written last line (worker mid-write) is skipped."""
    batches: list[dict[str, Any]] = []
    epochs: list[dict[str, Any]] = []
    try:
        text = (Path(run_dir) / "metrics.jsonl").read_text()
    except FileNotFoundError:
        text = ""
    for line in text.splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if not isinstance(record, dict):
            continue
        if record.get("type") == "batch":
            batches.append(record)
        elif record.get("type") == "epoch":
            epochs.append(record)
    batch_frame = pd.DataFrame(batches, columns=list(BATCH_COLUMNS))
    epoch_frame = pd.DataFrame(epochs, columns=list(EPOCH_COLUMNS))
    if len(batch_frame):
        batch_frame["step"] = range(1, len(batch_frame) + 1)  # x axis for loss curves across epochs
    else:
        batch_frame["step"] = pd.Series(dtype="int64")
    return batch_frame, epoch_frame


def epoch_confusion(epochs: pd.DataFrame, epoch: int | None, column: str = "confusion") -> np.ndarray | None:
    """Epoch `epoch`'s confusion matrix [true][predicted] (the latest epoch's when None; `column`: "confusion"
    for the test donors, "val_confusion" for validation) as a square array of counts, or None when that epoch's
    line has none (runs from before it was logged, synthetic runs, an epoch not logged) or it is not a square
    matrix of finite numbers."""
    if epochs.empty or column not in epochs:
        return None
    if epoch is None:
        value = epochs[column].iloc[-1]
    else:
        rows = epochs.loc[epochs["epoch"] == epoch, column]
        if rows.empty:
            return None
        value = rows.iloc[-1]
    if not isinstance(value, (list, tuple, np.ndarray)):
        return None
    try:
        matrix = np.asarray(value, dtype=float)
    except (TypeError, ValueError):  # ragged or not numbers
        return None
    if matrix.ndim != 2 or matrix.shape[0] != matrix.shape[1] or matrix.size == 0 or not np.isfinite(matrix).all():
        return None
    return matrix


def delete_run(ws: Workspace, run_id: str) -> None:
    """Remove a run folder; refuses the running one (cancel it first)."""
    path = ws.runs_dir / run_id
    if Path(run_id).name != run_id or not path.is_dir():
        raise DataError(path, "no such run")
    if run_status(path) == "running" or _job_holds_lock(path):
        raise DataError(path, "this run is training now; cancel it and wait for it to stop before deleting")
    shutil.rmtree(path)


def _job_holds_lock(run_dir: Path) -> bool:
    """True while the run's worker still holds the lock, also when it only exits (it may still write)."""
    try:
        return (run_dir / "status.json").exists() and job_state(Job(run_dir)).holds_lock
    except DataError:
        return False


def live_progress(status: dict[str, Any], epochs_planned: int | None = None, epochs_done: int = 0) -> dict[str, Any]:
    """What a run panel shows, from a job status: bar fraction and text, epoch, batch and ETA labels."""
    progress = status.get("progress") or {}
    done, total = progress.get("done") or 0, progress.get("total") or 0
    epoch, batch, batches = progress.get("epoch"), progress.get("batch"), progress.get("batches")
    eta = progress.get("eta_s")
    state = status.get("state", "unknown")
    if state == "running":
        fraction = min(1.0, done / total) if total else 0.0
        text = f"running: {progress.get('message') or 'starting'}"
    else:  # ended: say how far it got
        fraction = min(1.0, epochs_done / epochs_planned) if epochs_planned else 0.0
        text = f"{state}: {epochs_done} of {epochs_planned or '?'} epochs done"
    return {
        "fraction": fraction,
        "text": text,
        "epoch_text": (f"{epoch} / {epochs_planned or '?'}" if state == "running" and epoch
                       else f"{epochs_done} / {epochs_planned or '?'}"),
        "batch_text": f"{batch} / {batches}" if batch and state == "running" else "—",
        "eta_text": format_duration(eta) if eta is not None and state == "running" else "—",
    }


def run_job_status(run_dir: str | Path) -> dict[str, Any]:
    """The run's job status (core.jobs), or one made from summary.json for a run trained without a job."""
    run_dir = Path(run_dir)
    if (run_dir / "status.json").exists():
        try:
            return Job(run_dir).status()
        except DataError:
            pass  # unreadable status: fall back to the summary below
    summary = _read_json(run_dir / "summary.json")
    return {"id": run_dir.name, "kind": "train", "state": run_status(run_dir), "progress": {},
            "error": summary.get("message") if summary.get("status") == "failed" else None}
