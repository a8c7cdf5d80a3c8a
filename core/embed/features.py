"""Feature sources: where tile embeddings come from (a run's checkpoint, random or ImageNet weights of an
architecture, or a timm model with a local weights file), and loading them as penultimate-layer extractors.

Importing this module does not import torch (pages build sources and keys on every rerun); loading a
model does.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from core.base.cache import cache_key, file_fingerprint
from core.base.errors import DataError
from core.train.runs import checkpoint_epochs, checkpoint_path, run_config

if TYPE_CHECKING:
    import torch
    from torch import nn

KINDS = ("checkpoint", "random", "imagenet", "timm")
# Input side for sources that have no resolution of their own (ImageNet's training size).
DEFAULT_IMAGE_SIZE = 224
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# Tiles whose statistics random weights' BatchNorm layers take (what training recalibrates on, too).
CALIBRATION_TILES = 512


@dataclass(frozen=True)
class FeatureSource:
    """One feature extractor. Build with the classmethods; `key` identifies what it computes by content.

    checkpoint: `run_dir` + `epoch` (arch and input size from the run). random: `arch` + `seed`.
    imagenet: `arch` (torch hub's file on disk). timm: `timm_name` + `weights_file`.
    `image_size` is the side tiles are resized to before the network sees them.
    """

    kind: str
    arch: str | None = None
    run_dir: str | None = None
    epoch: int | None = None
    seed: int = 0
    timm_name: str | None = None
    weights_file: str | None = None
    image_size: int = DEFAULT_IMAGE_SIZE

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise DataError(None, f"feature source kind must be one of {', '.join(KINDS)}, not {self.kind!r}")
        if self.image_size < 16:
            raise DataError(None, f"feature input size must be at least 16 px, not {self.image_size}")

    # ------------------------------------------------------------ constructors

    @classmethod
    def checkpoint(cls, run_dir: str | Path, epoch: int | None = None) -> FeatureSource:
        """A run's checkpoint (the latest when epoch is None) at the run's own input resolution."""
        run_dir = Path(run_dir).resolve()
        config = run_config(run_dir)
        epochs = checkpoint_epochs(run_dir)
        if not epochs:
            raise DataError(run_dir, "run has no checkpoint yet")
        chosen = epochs[-1] if epoch is None else int(epoch)
        if chosen not in epochs:
            raise DataError(checkpoint_path(run_dir, chosen),
                            f"no checkpoint for epoch {chosen}; this run has epochs {_ranges(epochs)}")
        return cls("checkpoint", arch=str(config["arch"]), run_dir=str(run_dir), epoch=chosen,
                   image_size=int(config.get("image_size") or DEFAULT_IMAGE_SIZE))

    @classmethod
    def random(cls, arch: str, seed: int = 0, image_size: int = DEFAULT_IMAGE_SIZE) -> FeatureSource:
        """The architecture with seeded random weights: the baseline of what training added."""
        _check_arch(arch)
        return cls("random", arch=arch, seed=int(seed), image_size=int(image_size))

    @classmethod
    def imagenet(cls, arch: str, image_size: int = DEFAULT_IMAGE_SIZE) -> FeatureSource:
        """torchvision's ImageNet weights, only from torch's hub cache on disk (never downloaded)."""
        _check_arch(arch)
        return cls("imagenet", arch=arch, image_size=int(image_size))

    @classmethod
    def timm(cls, name: str, weights_file: str | Path, image_size: int | None = None) -> FeatureSource:
        """A timm architecture with weights from a local safetensors or state-dict file."""
        path = Path(weights_file).expanduser().resolve()
        if not path.is_file():
            raise DataError(path, f"weights file for timm model {name!r} not found")
        return cls("timm", timm_name=str(name), weights_file=str(path),
                   image_size=int(image_size or DEFAULT_IMAGE_SIZE))

    @classmethod
    def for_run(cls, run_dir: str | Path, weights: str = "checkpoint", epoch: int | None = None,
                seed: int = 0) -> FeatureSource:
        """The run's checkpoint, or its architecture with random / ImageNet weights at its input size
        (the baselines shown beside a trained embedding)."""
        if weights == "checkpoint":
            return cls.checkpoint(run_dir, epoch)
        config = run_config(run_dir)
        size = int(config.get("image_size") or DEFAULT_IMAGE_SIZE)
        if weights == "random":
            return cls.random(str(config["arch"]), seed, size)
        if weights == "imagenet":
            return cls.imagenet(str(config["arch"]), size)
        raise DataError(None, f"weights must be checkpoint, random or imagenet, not {weights!r}")

    # ------------------------------------------------------------ identity

    @property
    def checkpoint_path(self) -> Path | None:
        if self.kind != "checkpoint" or self.run_dir is None or self.epoch is None:
            return None
        return checkpoint_path(self.run_dir, self.epoch)

    @property
    def key(self) -> str:
        """Content hash: the weights file's fingerprint (or arch + seed for random weights) and input size."""
        if self.kind == "checkpoint":
            path = self.checkpoint_path
            identity: list[Any] = ["checkpoint", self.arch, _fingerprint(path, "checkpoint")]
        elif self.kind == "random":
            identity = ["random", self.arch, self.seed]
        elif self.kind == "imagenet":
            from core.train.models import imagenet_weights_path

            identity = ["imagenet", self.arch, _fingerprint(imagenet_weights_path(self.arch), "ImageNet weights")]
        else:
            identity = ["timm", self.timm_name, _fingerprint(Path(str(self.weights_file)), "timm weights")]
        return cache_key("features", *identity, self.image_size).replace(":", "-")

    @property
    def label(self) -> str:
        """Short human name, e.g. 'run 20261128-1200-ab12 epoch 5 (efficientnet_b0, 64 px)'."""
        if self.kind == "checkpoint":
            return f"run {Path(str(self.run_dir)).name} epoch {self.epoch} ({self.arch}, {self.image_size} px)"
        if self.kind == "random":
            return f"random {self.arch} (seed {self.seed}, {self.image_size} px)"
        if self.kind == "imagenet":
            return f"ImageNet {self.arch} ({self.image_size} px)"
        return f"timm {self.timm_name} ({Path(str(self.weights_file)).name}, {self.image_size} px)"

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "arch": self.arch, "run_dir": self.run_dir, "epoch": self.epoch,
                "seed": self.seed, "timm_name": self.timm_name, "weights_file": self.weights_file,
                "image_size": self.image_size, "label": self.label}


def _ranges(values: list[int]) -> str:
    return f"{values[0]}-{values[-1]}" if len(values) > 2 else ", ".join(map(str, values))


def _fingerprint(path: Path | None, what: str) -> str:
    if path is None or not path.is_file():
        raise DataError(path, f"{what} file not found")
    return file_fingerprint(path)


def _check_arch(arch: str) -> None:
    from core.train.config import ARCHITECTURES  # torchvision import deferred with torch

    if arch not in ARCHITECTURES:
        raise DataError(None, f"unknown architecture {arch!r}; choose one of {', '.join(ARCHITECTURES)}")


# ---------------------------------------------------------------- loading


def _feature_model_class():
    import torch
    from torch import nn

    class FeatureModel(nn.Module):
        """(B, 3, H, W) float RGB in [0, 1] -> (B, dim) penultimate features; normalisation inside."""

        def __init__(self, backbone: nn.Module, mean: tuple[float, ...], std: tuple[float, ...]) -> None:
            super().__init__()
            self.backbone = backbone
            self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1))
            self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1))

        def forward(self, images: torch.Tensor) -> torch.Tensor:
            features = self.backbone((images - self.mean) / self.std)
            return features.flatten(1)

    return FeatureModel


def load_feature_model(source: FeatureSource, device: torch.device | str | None = None,
                       calibration: np.ndarray | None = None) -> tuple[nn.Module, int, int]:
    """(model in eval mode on `device`, input size, feature dim) for `source`.

    Random weights need `calibration` tiles ((N, S, S, 3) uint8, e.g. a spread of the tiles to embed): their
    BatchNorm layers take statistics from them, as a trained run's checkpoint did before it was saved.
    Fresh BatchNorm statistics (mean 0, variance 1) make a deep random net emit ~1e-15 for every tile.

    The model takes (B, 3, S, S) RGB floats in [0, 1] (it normalises itself) and returns the
    penultimate features: 1280-d for EfficientNet-B0, 2048 ResNet50, 1024 DenseNet121, 768 ConvNeXt-Tiny,
    the model's `num_features` for timm. Missing or unfit weight files raise DataError naming the file.
    """
    import torch

    from core.train import models

    if source.kind == "timm":
        backbone, dim, mean, std = _timm_backbone(source)
    else:
        arch = str(source.arch)
        if source.kind == "checkpoint":
            backbone = _checkpoint_backbone(source)
        elif source.kind == "random":
            # Seeded without touching the caller's global RNG state.
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(source.seed)
                backbone = models.build_model(arch, 1, "none").backbone
        else:
            backbone = models.build_model(arch, 1, "imagenet").backbone
        dim, mean, std = models.embedding_dim(arch), IMAGENET_MEAN, IMAGENET_STD
    model = _feature_model_class()(backbone, mean, std)
    target = torch.device(device) if device is not None else models.pick_device()
    model = model.to(target)
    if source.kind == "random" and calibration is not None:
        from core.train.loop import recalibrate_batchnorm

        # recalibrate_batchnorm normalises with ImageNet statistics, as FeatureModel does for these archs.
        recalibrate_batchnorm(backbone, calibration, np.arange(len(calibration)), 64, target)
    return model.eval(), source.image_size, dim


def calibration_rows(n: int, wanted: int = CALIBRATION_TILES) -> np.ndarray:
    """Up to `wanted` row numbers spread evenly over n tiles (every slide), drawing no random numbers."""
    if n <= wanted:
        return np.arange(n)
    return np.linspace(0, n - 1, wanted).round().astype(np.int64)


def _checkpoint_backbone(source: FeatureSource) -> nn.Module:
    from core.train.loop import load_checkpoint
    from core.train.models import build_model

    path = source.checkpoint_path
    if path is None or not path.is_file():
        raise DataError(path, "checkpoint not found (deleted, or the run was moved)")
    config = run_config(source.run_dir)
    state = load_checkpoint(path)
    model = build_model(str(source.arch), len(config["classes"]), weights="none")
    try:
        model.load_state_dict(state["model"])
    except RuntimeError as exc:
        raise DataError(path, f"checkpoint does not fit {source.arch} with {len(config['classes'])} classes "
                              f"({str(exc).splitlines()[0]})") from None
    return model.backbone


def _read_state_dict(path: Path) -> dict[str, Any]:
    """A state dict from safetensors or a torch file (also {'state_dict': ...} / {'model': ...} wrappers)."""
    import torch

    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            return load_file(str(path))
        except Exception as exc:
            raise DataError(path, f"not a readable safetensors file ({type(exc).__name__}: {exc})") from None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise DataError(path, f"not a readable state-dict file ({type(exc).__name__}); give a .safetensors "
                              "file or a torch.save(model.state_dict()) file") from None
    for wrapper in ("state_dict", "model", "module"):
        if isinstance(state, dict) and isinstance(state.get(wrapper), dict):
            state = state[wrapper]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise DataError(path, "not a state dict (expected a mapping of parameter names to tensors)")
    # Saved from DataParallel / DistributedDataParallel.
    return {k.removeprefix("module."): v for k, v in state.items()}


def _timm_backbone(source: FeatureSource) -> tuple[nn.Module, int, tuple, tuple]:
    import timm

    path = Path(str(source.weights_file))
    if not path.is_file():
        raise DataError(path, f"weights file for timm model {source.timm_name!r} not found")
    try:
        # num_classes=0: timm's own pooled penultimate features; pretrained=False: never downloads.
        model = timm.create_model(str(source.timm_name), pretrained=False, num_classes=0)
    except Exception as exc:
        raise DataError(path, f"timm cannot build model {source.timm_name!r} ({exc})") from None
    state = _read_state_dict(path)
    expected = model.state_dict()
    head = str(model.pretrained_cfg.get("classifier") or "")
    unexpected = [k for k in state if k not in expected and not (head and k.startswith(head + "."))]
    missing = [k for k in expected if k not in state]
    wrong_shape = [k for k in expected if k in state and tuple(state[k].shape) != tuple(expected[k].shape)]
    if missing or unexpected or wrong_shape:
        problems = []
        if missing:
            problems.append(f"{len(missing)} of the model's {len(expected)} tensors missing (e.g. {missing[0]})")
        if unexpected:
            problems.append(f"{len(unexpected)} unknown tensors (e.g. {unexpected[0]})")
        if wrong_shape:
            k = wrong_shape[0]
            problems.append(f"{len(wrong_shape)} of wrong shape (e.g. {k}: {tuple(state[k].shape)} in the file, "
                            f"{tuple(expected[k].shape)} in the model)")
        raise DataError(path, f"weights do not fit timm model {source.timm_name!r}: {'; '.join(problems)}")
    model.load_state_dict({k: v for k, v in state.items() if k in expected})
    cfg = model.pretrained_cfg
    mean = tuple(cfg.get("mean") or IMAGENET_MEAN)
    std = tuple(cfg.get("std") or IMAGENET_STD)
    return model, int(model.num_features), mean, std
