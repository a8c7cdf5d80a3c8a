"""Tissue classifier training worker: donor split, seeded training loop, metrics, checkpoints, resume.

A run folder holds config.json, split.csv (per sample: train / validation / test), split.json (tile ids
and seeds), metrics.jsonl, summary.json and checkpoints/epoch_NNN.pt. Every epoch is evaluated on the
validation and the test donors; the epoch to keep is selected on validation only, and the test accuracy
is reported at that epoch and at the final one. Resuming (and "restart" mode) rebuilds the
TrainingState from the last complete epoch's checkpoint and keeps the saved split.
"""

from __future__ import annotations

import copy
import json
import logging
import os
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from core.base.config import Workspace
from core.base.errors import DataError
from core.base.fileio import atomic_path, atomic_write_bytes, atomic_write_json, read_json_object
from core.base.types import Progress, Reporter
from core.tiles.index import TilingParams
from core.tiles.pack import ReadTile, TilePack, build_tilepack
from core.train.config import TrainConfig
from core.train.depthwise import use_small_map_backward
from core.train.heldout import label_blind_split
from core.train.models import build_model, imagenet_weights_status, pick_device
from core.train.runs import (
    checkpoint_path,
    format_duration,
    run_config,
    run_selection,
    run_split_tiles,
    select_epoch,
)
from core.train.split import donor_split, donors_by_split, save_split

log = logging.getLogger(__name__)

_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)


def lr_factor(step: int, total_steps: int, warmup_steps: int = 0, schedule: str = "cosine") -> float:
    """Multiplier in (0, 1] on the configured lr for optimizer step `step` (0-based) of `total_steps`.

    Linear warmup over `warmup_steps`, then constant or cosine decay to 0 at the end; never above 1,
    so the configured lr stays the largest rate the run uses.
    """
    if warmup_steps > 0 and step < warmup_steps:
        return (step + 1) / (warmup_steps + 1)
    if schedule == "constant" or total_steps <= warmup_steps:
        return 1.0
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    return float(0.5 * (1.0 + np.cos(np.pi * min(1.0, progress))))


# ---------------------------------------------------------------- tiles and donor split


def tile_ids(tiles: pd.DataFrame) -> list[str]:
    """Stable tile identifiers "sample_id:x:y" (survive a rebuilt index with a different row order)."""
    return [f"{s}:{int(x)}:{int(y)}" for s, x, y in zip(tiles["sample_id"], tiles["x"], tiles["y"], strict=True)]


def training_tiles(tile_index: pd.DataFrame) -> pd.DataFrame:
    """The tiles a run trains and tests on: passed QC and chosen by balanced sampling, with a tile_id."""
    required = {"sample_id", "tissue", "subject_id", "slide_path", "x", "y"}
    missing = required - set(tile_index.columns)
    if missing:
        raise DataError(None, f"tile index lacks columns {sorted(missing)}")
    keep = pd.Series(True, index=tile_index.index)
    for column in ("passed_qc", "selected"):
        if column in tile_index.columns:
            keep &= tile_index[column].astype(bool)
    tiles = tile_index[keep].reset_index(drop=True)
    tiles.insert(0, "tile_id", tile_ids(tiles))
    if tiles["tile_id"].duplicated().any():
        raise DataError(None, "tile index has duplicate tiles (same sample_id, x, y)")
    return tiles


def make_split(tiles: pd.DataFrame, config: TrainConfig) -> tuple[pd.DataFrame, dict[str, Any]]:
    """(per-sample split for split.csv, split.json content: donors and tile ids per split, seeds)."""
    samples = donor_split(tiles, config.test_fraction, config.val_fraction, config.seed)
    split_of = dict(zip(samples["sample_id"], samples["split"], strict=True))
    tile_split = tiles["sample_id"].astype(str).map(split_of)
    donors = donors_by_split(samples)
    everything = set(tiles["tissue"])
    return samples, {
        "seed": config.seed,
        "data_order_seed": config.seed + 1,
        "augment_seed": config.seed + 2,
        "test_fraction": config.test_fraction,
        "val_fraction": config.val_fraction,
        "train_donors": donors["train"],
        "validation_donors": donors["validation"],
        "test_donors": donors["test"],
        "tissues_missing_from_test": sorted(everything - set(tiles.loc[tile_split == "test", "tissue"])),
        "tissues_missing_from_validation": sorted(everything - set(tiles.loc[tile_split == "validation", "tissue"])),
        "train_tiles": tiles.loc[tile_split == "train", "tile_id"].tolist(),
        "validation_tiles": tiles.loc[tile_split == "validation", "tile_id"].tolist(),
        "test_tiles": tiles.loc[tile_split == "test", "tile_id"].tolist(),
    }


# ---------------------------------------------------------------- batches


def images_to_tensor(images: np.ndarray, device: torch.device) -> torch.Tensor:
    """(B, H, W, 3) uint8 -> (B, 3, H, W) float in [0, 1] on `device` (normalise separately)."""
    batch = torch.from_numpy(np.ascontiguousarray(images))
    if device.type == "cuda":
        batch = batch.pin_memory().to(device, non_blocking=True)
    else:
        batch = batch.to(device)
    return batch.permute(0, 3, 1, 2).float().div_(255.0)


def normalize(batch: torch.Tensor) -> torch.Tensor:
    mean = torch.tensor(_IMAGENET_MEAN, device=batch.device).view(1, 3, 1, 1)
    std = torch.tensor(_IMAGENET_STD, device=batch.device).view(1, 3, 1, 1)
    return (batch - mean) / std


def augment_batch(batch: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Random flips, 90-degree rotations and mild colour jitter per image, drawn from `generator`.

    All random numbers are drawn up front on the CPU so the generator advances identically on any device.
    """
    n = batch.shape[0]
    flip_h, flip_v = (torch.rand(n, generator=generator) < 0.5 for _ in range(2))
    turns = torch.randint(0, 4, (n,), generator=generator)
    jitter = 1.0 + (torch.rand(3, n, generator=generator) * 2 - 1) * torch.tensor([0.1, 0.1, 0.1]).view(3, 1)
    device = batch.device
    batch = torch.where(flip_h.to(device).view(n, 1, 1, 1), batch.flip(3), batch)
    batch = torch.where(flip_v.to(device).view(n, 1, 1, 1), batch.flip(2), batch)
    if batch.shape[2] == batch.shape[3]:
        for k in (1, 2, 3):
            chosen = (turns == k).to(device)
            if chosen.any():
                batch[chosen] = torch.rot90(batch[chosen], k, dims=(2, 3))
    brightness, contrast, saturation = (j.to(device).view(n, 1, 1, 1) for j in jitter)
    batch = batch * brightness
    mean = batch.mean(dim=(1, 2, 3), keepdim=True)
    batch = (batch - mean) * contrast + mean
    gray = (0.299 * batch[:, 0:1] + 0.587 * batch[:, 1:2] + 0.114 * batch[:, 2:3])
    batch = (batch - gray) * saturation + gray
    return batch.clamp_(0.0, 1.0)


class _PackBatches(torch.utils.data.Dataset):
    """Item i is batch i of an epoch: a slice of the memory-mapped pack (for loader worker processes)."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, batches: list[np.ndarray]) -> None:
        self.images, self.labels, self.batches = images, labels, batches

    def __len__(self) -> int:
        return len(self.batches)

    def __getitem__(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        rows = self.batches[i]
        return np.asarray(self.images[rows]), self.labels[rows]


def _epoch_batches(rows: np.ndarray, batch_size: int, generator: torch.Generator) -> list[np.ndarray]:
    order = rows[torch.randperm(len(rows), generator=generator).numpy()]
    batches = [np.sort(order[i : i + batch_size]) for i in range(0, len(order), batch_size)]
    if batches and len(batches[-1]) < 2:  # BatchNorm cannot train on a single image
        batches.pop()
    return batches


def _iterate(images: np.ndarray, labels: np.ndarray, batches: list[np.ndarray], num_workers: int):
    if num_workers <= 0:
        for rows in batches:
            yield np.asarray(images[rows]), labels[rows]
        return
    loader = torch.utils.data.DataLoader(
        _PackBatches(images, labels, batches), batch_size=None, shuffle=False, num_workers=num_workers
    )
    for batch_images, batch_labels in loader:
        yield batch_images.numpy(), batch_labels.numpy()


# ---------------------------------------------------------------- checkpoints


def latest_checkpoint(run_dir: str | Path) -> tuple[int, Path] | None:
    """(epoch, path) of the newest complete epoch's checkpoint, or None."""
    found = []
    for path in (Path(run_dir) / "checkpoints").glob("epoch_*.pt"):
        try:
            found.append((int(path.stem.split("_")[1]), path))
        except (IndexError, ValueError):
            continue
    return max(found) if found else None


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    """Write via temp file + os.replace, so a crash never leaves half a checkpoint under the real name."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """A checkpoint's dict (tensors on CPU); weights_only loading, DataError if unreadable."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise DataError(path, f"corrupt or unreadable checkpoint ({type(exc).__name__}); delete it to resume "
                              "from the previous epoch") from exc
    if not isinstance(state, dict) or not {"epoch", "model", "optimizer", "rng"} <= set(state):
        raise DataError(path, "not a training checkpoint (missing epoch/model/optimizer/rng)")
    return state


def load_run_model(run_dir: str | Path, epoch: int | None = None, device: torch.device | None = None):
    """(model in eval mode, classes) from a run's checkpoint (the latest when epoch is None)."""
    run_dir = Path(run_dir)
    saved = json.loads((run_dir / "config.json").read_text())
    if epoch is None:
        latest = latest_checkpoint(run_dir)
        if latest is None:
            raise DataError(run_dir, "run has no checkpoint yet")
        epoch = latest[0]
    state = load_checkpoint(checkpoint_path(run_dir, epoch))
    model = build_model(saved["arch"], len(saved["classes"]), weights="none")  # dropout/depth: train-time only
    model.load_state_dict(state["model"])
    return model.to(device or torch.device("cpu")).eval(), list(saved["classes"])


# ---------------------------------------------------------------- the loop


def _param_groups(model: nn.Module, weight_decay: float, decay: str) -> list[dict[str, Any]]:
    """One group for "all"; for "conv" the conv kernels (4-D weights) decay and the rest does not."""
    if decay == "all":
        return [{"params": list(model.parameters()), "weight_decay": weight_decay}]
    kernels = [p for p in model.parameters() if p.ndim == 4]
    others = [p for p in model.parameters() if p.ndim != 4]
    return [{"params": kernels, "weight_decay": weight_decay}, {"params": others, "weight_decay": 0.0}]


def _make_optimizer(
    name: str, params, lr: float, weight_decay: float, beta2: float, device: torch.device
) -> torch.optim.Optimizer:
    # One fused kernel for all parameters: 7 ms a step on one core against 26 ms for torch's default.
    fused = device.type in ("cpu", "cuda") or None
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay, betas=(0.9, beta2), fused=fused)
    if name == "adam":  # coupled L2 would swamp Adam's gradients at adamw's decay: none, like torch's default
        return torch.optim.Adam(params, lr=lr, betas=(0.9, beta2), fused=fused)
    return torch.optim.SGD(params, lr=lr, momentum=0.9)


def _append_line(handle, record: dict[str, Any]) -> None:
    handle.write(json.dumps(record) + "\n")
    handle.flush()


def _truncate_metrics(run_dir: Path, epochs_done: int) -> None:
    """Drop lines of epochs after the last checkpoint (a cancelled/crashed epoch), so resumed metrics continue."""
    path = run_dir / "metrics.jsonl"
    if not path.exists():
        return
    kept = []
    for line in path.read_text().splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue  # half-written line from a crash
        if int(record.get("epoch", 0)) <= epochs_done:
            kept.append(line)
    atomic_write_bytes(path, "".join(f"{line}\n" for line in kept).encode())


@dataclass
class _Data:
    images: np.ndarray
    labels: np.ndarray
    train_rows: np.ndarray
    val_rows: np.ndarray
    test_rows: np.ndarray
    classes: list[str]


class _Summary:
    """summary.json: cheap per-run numbers for list_runs (status, epochs, selected epoch, accuracies, seconds)."""

    def __init__(self, run_dir: Path, planned: int) -> None:
        self.path = run_dir / "summary.json"
        old = read_json_object(self.path) or {}
        self.data = {
            "status": "running",
            "epochs_done": 0,
            "epochs_planned": planned,
            **select_epoch(pd.DataFrame()),
            "train_seconds": float(old.get("train_seconds", 0.0)),
            "message": "",
            "pid": os.getpid(),
        }

    def update(self, **values: Any) -> dict[str, Any]:
        self.data.update(values, updated=datetime.now(UTC).isoformat(timespec="seconds"))
        atomic_write_json(self.path, self.data)
        return dict(self.data)



def shard_slices(n: int, shards: int) -> list[slice]:
    """`shards` near-equal consecutive slices of a batch of n (fewer when n is small: 2 tiles at least each)."""
    k = max(1, min(shards, n // 2))
    bounds = np.linspace(0, n, k + 1).round().astype(int)
    return [slice(int(a), int(b)) for a, b in zip(bounds[:-1], bounds[1:], strict=True)]


class ShardRunner:
    """Runs a function over a batch's shards: concurrently in threads (`threads` torch threads each), or in
    order. Callers combine the results in shard order, so both ways give the same numbers."""

    def __init__(self, shards: int, threads: int = 1, concurrent: bool = True) -> None:
        self.shards = max(1, shards)
        self._pool = (ThreadPoolExecutor(self.shards, "shard", initializer=torch.set_num_threads,
                                         initargs=(max(1, threads),))
                      if concurrent and self.shards > 1 else None)

    @property
    def concurrent(self) -> bool:
        return self._pool is not None

    def map(self, fn: Callable[[Any], Any], parts: Sequence[Any]) -> list[Any]:
        """fn(part) for each part (at most `shards` of them run at once), results in the parts' order."""
        if self._pool is None or len(parts) == 1:
            return [fn(part) for part in parts]
        return list(self._pool.map(fn, parts))

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None


def recalibrate_batchnorm(
    model: nn.Module, images: np.ndarray, rows: np.ndarray, batch_size: int, device: torch.device, amp: bool = False,
    shards: ShardRunner | None = None,
) -> None:
    """Replace BatchNorm running statistics by their plain average over `images[rows]` (unaugmented).

    Only BatchNorm runs in training mode (dropout and stochastic depth stay off, no random numbers are
    drawn); the layers' momentum is restored afterwards, and the model is left in training mode. With
    concurrent `shards`, copies of the model take a share of the batches each and their averages are
    pooled (weighted by batches), which is the same average.
    """
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not norms or len(rows) < 2:
        return
    momenta = [m.momentum for m in norms]
    model.eval()
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None  # cumulative average over the batches below
        norm.train()
    batches = [rows[start : start + batch_size] for start in range(0, len(rows), batch_size)]
    batches = batches[:-1] if len(batches[-1]) < 2 else batches

    def accumulate(work: tuple[nn.Module, list[np.ndarray]]) -> None:
        replica, chunks = work
        with torch.no_grad(), torch.autocast(device_type=device.type, dtype=torch.float16, enabled=amp):
            for chunk in chunks:
                x = normalize(images_to_tensor(np.asarray(images[chunk]), device))
                replica(x.contiguous(memory_format=torch.channels_last))

    if shards is None or not shards.concurrent or len(batches) < 2:
        accumulate((model, batches))
    else:
        groups = [list(g) for g in np.array_split(np.arange(len(batches)), min(shards.shards, len(batches)))]
        replicas = [model] + [copy.deepcopy(model) for _ in groups[1:]]
        shards.map(accumulate, [(r, [batches[i] for i in g]) for r, g in zip(replicas, groups, strict=True)])
        weights = [len(g) / len(batches) for g in groups]
        replica_norms = [[m for m in r.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
                         for r in replicas]
        for j, norm in enumerate(norms):
            for name in ("running_mean", "running_var"):
                pooled = sum(w * getattr(rn[j], name) for w, rn in zip(weights, replica_norms, strict=True))
                getattr(norm, name).copy_(pooled)
            norm.num_batches_tracked.fill_(len(batches))
    for norm, momentum in zip(norms, momenta, strict=True):
        norm.momentum = momentum
    model.train()


def _calibration_rows(train_rows: np.ndarray, n: int) -> np.ndarray:
    """Up to n training rows evenly spread over the split (every slide), without drawing random numbers."""
    if n <= 0 or len(train_rows) == 0:
        return train_rows[:0]
    if n >= len(train_rows):
        return train_rows
    return train_rows[np.linspace(0, len(train_rows) - 1, n).round().astype(np.int64)]


@dataclass
class Evaluation:
    """Loss, accuracy and confusion [true][pred] on one set of tiles (None, None, zeros when it is empty)."""

    loss: float | None
    acc: float | None
    confusion: list[list[int]]


def evaluate(
    model: nn.Module, images: np.ndarray, labels: np.ndarray, rows: np.ndarray, n_classes: int, batch_size: int,
    device: torch.device, amp: bool = False, shards: ShardRunner | None = None,
) -> Evaluation:
    """Cross-entropy and accuracy of `model` (put in eval mode, then back in training mode) on `images[rows]`.

    With `shards`, each batch's shards run through the model concurrently (in eval mode every tile is
    independent of the others, so the numbers are those of whole batches)."""
    runner = shards or ShardRunner(1)
    confusion = np.zeros((n_classes, n_classes), dtype=np.int64)
    if len(rows) == 0:
        return Evaluation(None, None, confusion.tolist())
    model.eval()
    total_loss = 0.0
    loss_fn = nn.CrossEntropyLoss(reduction="sum")
    with torch.inference_mode():
        for start in range(0, len(rows), batch_size):
            chunk = rows[start : start + batch_size]
            x = normalize(images_to_tensor(np.asarray(images[chunk]), device))
            x = x.contiguous(memory_format=torch.channels_last)
            y = torch.from_numpy(labels[chunk]).to(device)

            def shard_logits(part: slice, x: torch.Tensor = x) -> torch.Tensor:
                # inference and autocast modes are per thread: entered again in the shard's own
                with torch.inference_mode(), torch.autocast(device_type=device.type, dtype=torch.float16,
                                                            enabled=amp):
                    return model(x[part]).float()

            logits = torch.cat(runner.map(shard_logits, shard_slices(len(chunk), runner.shards)))
            total_loss += float(loss_fn(logits.float(), y))
            np.add.at(confusion, (labels[chunk], logits.argmax(1).cpu().numpy()), 1)
    model.train()
    return Evaluation(total_loss / len(rows), float(np.trace(confusion) / confusion.sum()), confusion.tolist())


@dataclass
class LrSchedule:
    """The step's lr is a function of the global step alone, so a resumed run needs no scheduler state."""

    batches_per_epoch: int
    total_steps: int
    warmup_steps: int

    @classmethod
    def for_run(cls, config: TrainConfig, n_train: int) -> LrSchedule:
        per_epoch = max(1, len(_epoch_batches(np.arange(n_train), config.batch_size, torch.Generator())))
        return cls(per_epoch, config.epochs * per_epoch, round(config.warmup_epochs * per_epoch))

    def lr(self, config: TrainConfig, epoch: int, batch: int) -> float:
        step = (epoch - 1) * self.batches_per_epoch + batch - 1
        return config.lr * lr_factor(step, self.total_steps, self.warmup_steps, config.schedule)


@dataclass
class TrainingState:
    """Everything a run carries from epoch to epoch: model, optimizer, AMP scaler, RNG streams, epoch.

    `create` draws random numbers in a fixed order (torch seed, then the model's initialisation), and
    `restore` puts back a checkpoint's, so a resumed run continues exactly as an uninterrupted one.
    """

    model: nn.Module
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    shuffle_gen: torch.Generator
    augment_gen: torch.Generator
    device: torch.device
    amp: bool
    shards: ShardRunner
    epoch: int = 0
    threads_before: int = 0  # torch's thread count when the state was made, put back by close()

    @classmethod
    def create(cls, config: TrainConfig, n_classes: int) -> TrainingState:
        device = pick_device()
        amp = device.type == "cuda"  # mixed precision only where it pays (and is supported by GradScaler)
        cores, threads_before = os.cpu_count() or 1, torch.get_num_threads()
        # Concurrent shards only on CPU and only when the forward draws no random numbers (dropout,
        # stochastic depth): threads would take them from the global generator in a racy order.
        concurrent = device.type == "cpu" and config.dropout == 0 and config.stochastic_depth == 0
        threads = config.threads or (max(1, cores // config.batch_shards) if concurrent else cores)
        # The calling thread gets the shards' count too: its idle OpenMP workers would otherwise spin
        # on the cores the shards need (2 cores: 70 instead of 80 tiles/s).
        torch.set_num_threads(threads)
        shards = ShardRunner(config.batch_shards, threads, concurrent)
        torch.manual_seed(config.seed)
        shuffle_gen = torch.Generator().manual_seed(config.seed + 1)
        augment_gen = torch.Generator().manual_seed(config.seed + 2)
        # channels_last pays on CUDA (tensor cores) and on CPU too (oneDNN: 3.7x for EfficientNet-B0 at 96 px).
        model = build_model(
            config.arch, n_classes, config.weights, dropout=config.dropout,
            stochastic_depth=config.stochastic_depth, zero_init_residual=config.zero_init_residual,
        ).to(device, memory_format=torch.channels_last)
        if device.type == "cpu":
            use_small_map_backward(model)  # same parameters and state dict; 1.4x faster steps on CPU
        optimizer = _make_optimizer(
            config.optimizer, _param_groups(model, config.weight_decay, config.decay), config.lr,
            config.weight_decay, config.adam_beta2, device,
        )
        scaler = torch.amp.GradScaler("cuda", enabled=amp)
        return cls(model, optimizer, scaler, shuffle_gen, augment_gen, device, amp, shards,
                   threads_before=threads_before)

    def close(self) -> None:
        """Stop the shard threads and give torch back its thread count (work after training in the same
        process, such as the tour's embedding, would otherwise run on one thread)."""
        self.shards.close()
        torch.set_num_threads(self.threads_before)

    def restore(self, checkpoint: dict[str, Any]) -> None:
        self.model.load_state_dict(checkpoint["model"])
        self.optimizer.load_state_dict(checkpoint["optimizer"])
        if checkpoint.get("scaler"):
            self.scaler.load_state_dict(checkpoint["scaler"])
        rng = checkpoint["rng"]
        torch.set_rng_state(rng["torch"])
        if torch.cuda.is_available() and rng.get("cuda"):
            torch.cuda.set_rng_state_all(rng["cuda"])
        self.shuffle_gen.set_state(rng["shuffle"])
        self.augment_gen.set_state(rng["augment"])
        self.epoch = int(checkpoint["epoch"])

    def checkpoint(self, config: TrainConfig, classes: list[str], schedule: LrSchedule) -> dict[str, Any]:
        return {
            "epoch": self.epoch,
            "arch": config.arch,
            "classes": list(classes),
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": {"schedule": config.schedule, "step": self.epoch * schedule.batches_per_epoch},
            "scaler": self.scaler.state_dict() if self.amp else {},
            "rng": {
                "torch": torch.get_rng_state(),
                "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
                "shuffle": self.shuffle_gen.get_state(),
                "augment": self.augment_gen.get_state(),
            },
        }

    def save(self, run_dir: Path, config: TrainConfig, classes: list[str], schedule: LrSchedule) -> Path:
        path = checkpoint_path(run_dir, self.epoch)
        save_checkpoint(path, self.checkpoint(config, classes, schedule))
        return path


@dataclass
class EpochResult:
    loss: float
    acc: float
    tiles: int
    seconds: float  # the training pass
    started: float  # time.perf_counter() at its start


def train_one_epoch(
    state: TrainingState, config: TrainConfig, data: _Data, schedule: LrSchedule, metrics, reporter: Reporter | None
) -> EpochResult | None:
    """Train epoch `state.epoch + 1` (per-batch lines to `metrics`, progress to `reporter`); None if cancelled.

    `state.epoch` is not advanced here: the caller does that once the epoch is evaluated and saved.
    """
    epoch = state.epoch + 1
    device = state.device
    loss_fn = nn.CrossEntropyLoss(label_smoothing=config.label_smoothing, reduction="sum")
    batches = _epoch_batches(data.train_rows, config.batch_size, state.shuffle_gen)
    start = time.perf_counter()
    seen = correct = 0
    loss_sum = 0.0
    for b, (batch_images, batch_labels) in enumerate(
        _iterate(data.images, data.labels, batches, config.num_workers), start=1
    ):
        if reporter is not None and reporter.cancel_requested():
            return None
        x = images_to_tensor(batch_images, device)
        if config.augment:
            x = augment_batch(x, state.augment_gen)
        x = normalize(x).contiguous(memory_format=torch.channels_last)
        y = torch.from_numpy(batch_labels).to(device)
        for group in state.optimizer.param_groups:
            group["lr"] = schedule.lr(config, epoch, b)
        batch_loss, batch_correct = forward_backward(state, x, y, loss_fn)
        state.scaler.step(state.optimizer)
        state.scaler.update()
        seen += len(batch_labels)
        correct += batch_correct
        loss_sum += batch_loss * len(batch_labels)
        elapsed = time.perf_counter() - start
        rate = seen / elapsed if elapsed > 0 else 0.0
        _append_line(metrics, {
            "type": "batch", "epoch": epoch, "batch": b, "batches": len(batches), "loss": batch_loss,
            "acc": batch_correct / len(batch_labels), "tiles_per_s": rate, "elapsed": elapsed,
        })
        if reporter is not None:
            done = (epoch - 1) * schedule.batches_per_epoch + b
            total = config.epochs * schedule.batches_per_epoch
            eta = (total - done) * elapsed / b
            reporter.progress(
                done, total, f"epoch {epoch}/{config.epochs} batch {b}/{len(batches)}, "
                f"{rate:.0f} tiles/s, ETA {format_duration(eta)}",
                epoch=epoch, batch=b, batches=len(batches), tiles_per_s=rate, eta_s=eta,
            )
    return EpochResult(loss_sum / max(seen, 1), correct / max(seen, 1), seen, time.perf_counter() - start, start)


def forward_backward(
    state: TrainingState, x: torch.Tensor, y: torch.Tensor, loss_fn: nn.Module
) -> tuple[float, int]:
    """Mean loss and correct count of one batch, leaving the mean loss's gradient in each parameter's .grad.

    `loss_fn` sums over its tiles. Each shard's gradient is taken separately and the shards' are added in
    shard order, so concurrent and one-after-another shards give the same bits.
    """
    n = len(y)
    params = [p for p in state.model.parameters() if p.requires_grad]

    def shard(part: slice) -> tuple[float, int, Sequence[torch.Tensor | None]]:
        with torch.autocast(device_type=state.device.type, dtype=torch.float16, enabled=state.amp):
            logits = state.model(x[part])
            loss = loss_fn(logits.float(), y[part]) / n
        grads = torch.autograd.grad(state.scaler.scale(loss), params, allow_unused=True)
        return float(loss.detach()), int((logits.argmax(1) == y[part]).sum()), grads

    results = state.shards.map(shard, shard_slices(n, state.shards.shards))
    for i, param in enumerate(params):
        total = None
        for _, _, grads in results:
            if grads[i] is not None:
                total = grads[i] if total is None else total.add_(grads[i])
        param.grad = total
    return sum(r[0] for r in results), sum(r[1] for r in results)


def evaluate_epoch(state: TrainingState, data: _Data, config: TrainConfig) -> tuple[Evaluation, Evaluation]:
    """(validation, test) after re-estimating BatchNorm statistics on training tiles.

    Recalibrated even without held-out tiles: the checkpoint's statistics serve later embeddings too.
    """
    calibration = _calibration_rows(data.train_rows, config.bn_recalibration_tiles)
    recalibrate_batchnorm(state.model, data.images, calibration, config.batch_size * 2, state.device, state.amp,
                          state.shards)
    n, size = len(data.classes), config.batch_size * 2
    return tuple(  # type: ignore[return-value]
        evaluate(state.model, data.images, data.labels, rows, n, size, state.device, state.amp, state.shards)
        for rows in (data.val_rows, data.test_rows)
    )


def _session(
    run_dir: Path, config: TrainConfig, data: _Data, reporter: Reporter | None, summary: _Summary, max_epochs: int
) -> str:
    """Build the training state (from the last checkpoint when there is one) and train up to `max_epochs`
    epochs. Returns "done" (planned epochs reached), "paused" (max_epochs reached) or "cancelled"."""
    state = TrainingState.create(config, len(data.classes))
    try:
        latest = latest_checkpoint(run_dir)
        if latest is not None:
            state.restore(load_checkpoint(latest[1]))
        schedule = LrSchedule.for_run(config, len(data.train_rows))
        last_epoch = min(config.epochs, state.epoch + max_epochs)
        state.model.train()
        with (run_dir / "metrics.jsonl").open("a") as metrics:
            while state.epoch < last_epoch:
                trained = train_one_epoch(state, config, data, schedule, metrics, reporter)
                if trained is None or (reporter is not None and reporter.cancel_requested()):
                    return "cancelled"
                validation, test = evaluate_epoch(state, data, config)
                state.epoch += 1
                seconds = time.perf_counter() - trained.started  # training and evaluation
                # The epoch line goes first: if we die before the checkpoint lands, resume drops the line again.
                _append_line(metrics, {
                    "type": "epoch", "epoch": state.epoch, "train_loss": trained.loss, "train_acc": trained.acc,
                    "val_loss": validation.loss, "val_acc": validation.acc,
                    "test_loss": test.loss, "test_acc": test.acc, "seconds": seconds,
                    "tiles_per_s": trained.tiles / trained.seconds if trained.seconds > 0 else 0.0,
                    "confusion": test.confusion, "val_confusion": validation.confusion,
                })
                state.save(run_dir, config, data.classes, schedule)
                summary.update(epochs_done=state.epoch, train_seconds=summary.data["train_seconds"] + seconds,
                               **run_selection(run_dir))
    finally:
        state.close()
    return "done" if last_epoch >= config.epochs else "paused"


def _run_tiles(tile_index: pd.DataFrame, split: dict[str, Any]) -> pd.DataFrame:
    """The run's tiles from the index in split order (train, validation, test), by tile id."""
    from core.train.heldout import evaluable_rows

    candidates = evaluable_rows(tile_index).reset_index(drop=True)
    candidates.insert(0, "tile_id", tile_ids(candidates))  # held-out tiles may have failed their tissue's bar
    tiles = candidates.drop_duplicates("tile_id").set_index("tile_id", drop=False)
    wanted = split["train_tiles"] + split.get("validation_tiles", []) + split["test_tiles"]
    missing = [t for t in wanted if t not in tiles.index]
    if missing:
        raise DataError(None, f"the tile index lacks {len(missing)} tiles of this run's split (e.g. {missing[0]}); "
                              "it was rebuilt with other parameters or data")
    return tiles.loc[wanted].reset_index(drop=True)


def _tiling_params(ws: Workspace, meta: dict[str, Any] | None) -> TilingParams:
    """The dataset's tiling settings (its JPEG-size bars), defaults when the run names no dataset."""
    from core.tiles.index import dataset_tiling_params

    data_dir = (meta or {}).get("data_dir")
    return dataset_tiling_params(ws, Path(data_dir)) if data_dir else TilingParams()


def check_weights(config: TrainConfig) -> None:
    """Fail before any work when ImageNet weights are asked for but not on disk."""
    if config.weights == "imagenet":
        available, path, message = imagenet_weights_status(config.arch)
        if not available:
            raise DataError(path, message)


def train_run(
    run_dir: str | Path,
    config: TrainConfig | None,
    tile_index: pd.DataFrame,
    ws: Workspace,
    reporter: Reporter | None = None,
    *,
    read_tile: ReadTile | None = None,
    meta: dict[str, Any] | None = None,
    pack_workers: int = 2,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Train (or resume) the run in `run_dir` on the selected tiles of `tile_index`; returns summary.json.

    A new folder needs `config`; a folder with config.json resumes from its last complete epoch with the
    saved config (then `config` may be None). `meta` (e.g. data_dir, tile_index_path) goes into config.json.
    On cancel the last complete epoch's checkpoint is kept and the status is "cancelled".
    """
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    config_path = run_dir / "config.json"
    if config_path.exists():
        saved = run_config(run_dir)
        config = TrainConfig.from_dict(saved).validate()
        classes = list(saved["classes"])
        split = run_split_tiles(run_dir)  # resume and restart keep the saved split
        if not split.get("train_tiles"):
            raise DataError(run_dir / "split.json", "missing or unreadable split; the run cannot be resumed")
    else:
        if config is None:
            raise DataError(run_dir, "not a run folder (no config.json) and no configuration given")
        config.validate()
        check_weights(config)
        tiles = training_tiles(tile_index)
        if tiles.empty:
            raise DataError(None, "the tile index has no selected tiles that passed QC: nothing to train on")
        classes = sorted(tiles["tissue"].astype(str).unique())
        samples, split = make_split(tiles, config)
        split = label_blind_split(split, samples, tile_index, tiles, _tiling_params(ws, meta), classes)
        save_split(run_dir, samples)
        atomic_write_json(run_dir / "split.json", split)
        atomic_write_json(config_path, {
            **config.to_dict(), "classes": classes, **(meta or {}),
            "created": datetime.now(UTC).isoformat(timespec="seconds"),
            "train_tiles": len(split["train_tiles"]), "validation_tiles": len(split["validation_tiles"]),
            "test_tiles": len(split["test_tiles"]),
        })
    check_weights(config)
    summary = _Summary(run_dir, config.epochs)
    latest = latest_checkpoint(run_dir)
    epochs_done = latest[0] if latest else 0
    summary.update(epochs_done=epochs_done)
    try:
        tiles = _run_tiles(tile_index, split)
        report = progress or (reporter.progress if reporter is not None else None)
        pack: TilePack = build_tilepack(tiles, config.image_size, ws, read_tile, report, workers=pack_workers)
        index_of = {name: i for i, name in enumerate(classes)}
        labels = np.array([index_of[t] for t in tiles["tissue"].astype(str)], dtype=np.int64)
        n_train, n_val = len(split["train_tiles"]), len(split.get("validation_tiles", []))
        data = _Data(pack.images, labels, np.arange(n_train), np.arange(n_train, n_train + n_val),
                     np.arange(n_train + n_val, len(tiles)), classes)
        _truncate_metrics(run_dir, epochs_done)
        if epochs_done > 0:
            summary.update(**run_selection(run_dir))
        status = "done" if epochs_done >= config.epochs else "paused"
        if config.mode == "restart":
            # Each epoch is its own session rebuilt from the last checkpoint: exactly the resume path.
            while status == "paused":
                status = _session(run_dir, config, data, reporter, summary, max_epochs=1)
        elif status == "paused":
            status = _session(run_dir, config, data, reporter, summary, max_epochs=config.epochs)
    except BaseException as exc:
        summary.update(status="failed", message=f"{type(exc).__name__}: {exc}")
        raise
    done = summary.data["epochs_done"]
    message = (f"cancelled; kept the checkpoint of epoch {done}, resume continues from there"
               if status == "cancelled" else f"trained {done} of {config.epochs} epochs")
    result = summary.update(status=status, message=message)
    if reporter is not None:
        reporter.result = {**result, "run_dir": str(run_dir)}
    return result

