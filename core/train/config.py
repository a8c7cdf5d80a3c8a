"""What defines a training run, without torch: a page draws its form from this module alone."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

ARCHITECTURES = ("efficientnet_b0", "resnet50", "densenet121", "convnext_tiny")
OPTIMIZERS = ("adamw", "adam", "sgd")
MODES = ("at-once", "restart")
SCHEDULES = ("cosine", "constant")
DECAY_TARGETS = ("conv", "all")
WEIGHTS = ("none", "imagenet")


@dataclass
class TrainConfig:
    """Everything that defines a run; saved as config.json (plus the classes)."""

    arch: str = "efficientnet_b0"
    lr: float = 1e-4  # the study's choice
    # Tuned on the demo cohort (2 CPU cores, see benchmarks/bench_default_training.py): 64 px keeps the
    # tissue architecture of a 448 px tile and trains ~2x faster than 96 px, so 30 epochs fit in ~5 min.
    epochs: int = 30
    batch_size: int = 32
    image_size: int = 64
    augment: bool = True
    optimizer: str = "adamw"
    weights: str = "none"
    seed: int = 0
    mode: str = "at-once"
    test_fraction: float = 0.3  # share of donors held out for the final report only
    # Share of donors (drawn from the training donors) whose tiles pick the epoch to keep; on the demo's
    # 20 donors that is 2, so training keeps 12 of 14 (the 6 test donors are unchanged by it).
    val_fraction: float = 0.1
    num_workers: int = 0  # loader processes; 0 loads batches in-process (a memory-mapped slice is cheap)
    # Torch CPU threads per compute thread, fixed per run for reproducibility; 0 = the cores shared out
    # among the batch's concurrent shards (all cores for evaluation).
    threads: int = 0
    # Each batch is cut into this many shards whose forward and backward run concurrently on CPU (one
    # thread each; one after another on CUDA, same result) and whose gradients are summed in shard order.
    # BatchNorm normalises within a shard (ghost batches of 16). On 2 cores two single-threaded shards
    # train 1.3x faster than one batch on two threads: EfficientNet's small convolutions use threads poorly.
    batch_shards: int = 2
    # Training details (extension of the first contract). The LR schedule only ever scales `lr` down.
    schedule: str = "cosine"
    warmup_epochs: float = 0.0  # linear ramp from ~0 up to lr over this many epochs
    # Decoupled weight decay, used by "adamw" only (adam and sgd train without, as torch defaults them).
    # Large on purpose: with decay="conv" it shrinks only the conv kernels, which BatchNorm makes
    # scale-free, so their direction learns faster at the same lr; at lr 1e-4 from scratch the kernels
    # otherwise barely leave their initialisation in a short run (1x1 kernels moved ~2% in 20 epochs). On the
    # demo cohort, 20 epochs: 54% test accuracy without it, 62% with 10 on all parameters; with the details
    # below, 30 on conv kernels reached 74% by epoch 14, 100 reached 80% by epoch 12.
    weight_decay: float = 100.0
    # "conv": decay only the convolution kernels; BN, biases and the head keep their scale. "all": every
    # parameter (older runs).
    decay: str = "conv"
    # Adam's second-moment decay (torch's default; 0.99 made no difference on the demo cohort).
    adam_beta2: float = 0.999
    # Regularisation off: a short from-scratch run underfits (train accuracy ~ test accuracy), it does not overfit.
    label_smoothing: float = 0.0
    dropout: float = 0.0  # before the head (torchvision's default for EfficientNet-B0: 0.2)
    stochastic_depth: float = 0.0  # torchvision's default for EfficientNet-B0: 0.2
    zero_init_residual: bool = True  # residual branches start at zero (a from-scratch net starts shallow)
    # Before each evaluation, BatchNorm statistics are re-estimated on up to this many training tiles (no
    # augmentation): the running averages lag weights that still change fast (demo, epoch 3: 16% -> 51%).
    # 0 keeps the running averages.
    bn_recalibration_tiles: int = 512

    def validate(self) -> TrainConfig:
        if self.arch not in ARCHITECTURES:
            raise ValueError(f"arch must be one of {ARCHITECTURES}, not {self.arch!r}")
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {OPTIMIZERS}, not {self.optimizer!r}")
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, not {self.mode!r}")
        if self.weights not in WEIGHTS:
            raise ValueError(f"weights must be one of {WEIGHTS}, not {self.weights!r}")
        if self.epochs < 1 or self.batch_size < 2 or self.image_size < 16 or self.lr <= 0:
            raise ValueError("epochs >= 1, batch_size >= 2, image_size >= 16 and lr > 0 are required")
        if self.batch_shards < 1:  # a batch too small to give each shard 2 tiles runs in fewer shards
            raise ValueError("batch_shards must be >= 1")
        if not 0.0 <= self.test_fraction < 1.0:
            raise ValueError("test_fraction must be in [0, 1)")
        if not 0.0 <= self.val_fraction < 1.0 or self.test_fraction + self.val_fraction >= 1.0:
            raise ValueError("val_fraction must be in [0, 1) and test_fraction + val_fraction below 1")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"schedule must be one of {SCHEDULES}, not {self.schedule!r}")
        if self.decay not in DECAY_TARGETS:
            raise ValueError(f"decay must be one of {DECAY_TARGETS}, not {self.decay!r}")
        if self.warmup_epochs < 0 or self.weight_decay < 0 or self.bn_recalibration_tiles < 0:
            raise ValueError("warmup_epochs, weight_decay and bn_recalibration_tiles must be >= 0")
        for name in ("label_smoothing", "dropout", "stochastic_depth", "adam_beta2"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ValueError(f"{name} must be in [0, 1)")
        return self

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        """From a saved config.json; unknown keys (classes, paths) are ignored.

        Keys missing from a config saved before they existed take the values that run trained with
        (constant LR, no smoothing, torch's weight decay), so an old run resumes unchanged.
        """
        names = {f.name for f in fields(cls)}
        legacy = {**_LEGACY_DETAILS, "weight_decay": 0.01 if data.get("optimizer", "adamw") == "adamw" else 0.0}
        return cls(**{**legacy, **{k: v for k, v in data.items() if k in names}})


# What runs saved before these fields existed trained with.
_LEGACY_DETAILS: dict[str, Any] = {
    "schedule": "constant", "decay": "all", "warmup_epochs": 0.0, "label_smoothing": 0.0, "dropout": 0.2,
    "stochastic_depth": 0.2, "zero_init_residual": False, "adam_beta2": 0.999,
    "bn_recalibration_tiles": 0, "val_fraction": 0.0, "batch_shards": 1,
}
