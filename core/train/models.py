"""Tile classifiers: torchvision backbones with a head sized to the tissues, offline ImageNet weights."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn
from torchvision import models as tv

from core.base.errors import DataError
from core.train.config import ARCHITECTURES

# Width of the penultimate layer: the tile embedding that later issues average per slide.
_EMBEDDING_DIMS = {"efficientnet_b0": 1280, "resnet50": 2048, "densenet121": 1024, "convnext_tiny": 768}

_WEIGHTS = {
    "efficientnet_b0": tv.EfficientNet_B0_Weights.DEFAULT,
    "resnet50": tv.ResNet50_Weights.DEFAULT,
    "densenet121": tv.DenseNet121_Weights.DEFAULT,
    "convnext_tiny": tv.ConvNeXt_Tiny_Weights.DEFAULT,
}

_BUILDERS: dict[str, Callable[..., nn.Module]] = {
    "efficientnet_b0": tv.efficientnet_b0,
    "resnet50": tv.resnet50,
    "densenet121": tv.densenet121,
    "convnext_tiny": tv.convnext_tiny,
}


class TileClassifier(nn.Module):
    """A backbone that outputs the penultimate embedding, plus a linear head over the classes."""

    def __init__(self, arch: str, backbone: nn.Module, num_classes: int) -> None:
        super().__init__()
        self.arch = arch
        self.backbone = backbone
        self.head = nn.Linear(_EMBEDDING_DIMS[arch], num_classes)

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) normalised images -> (B, embedding_dim(arch)) features."""
        return self.backbone(images)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(images))


def _check_arch(arch: str) -> None:
    if arch not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {arch!r}; choose one of {', '.join(ARCHITECTURES)}")


def embedding_dim(arch: str) -> int:
    _check_arch(arch)
    return _EMBEDDING_DIMS[arch]


def imagenet_weights_path(arch: str) -> Path:
    """Where torch's hub cache keeps this architecture's ImageNet weights file."""
    _check_arch(arch)
    file_name = _WEIGHTS[arch].url.rsplit("/", 1)[-1]
    return Path(torch.hub.get_dir()) / "checkpoints" / file_name


def imagenet_weights_status(arch: str) -> tuple[bool, Path, str]:
    """(available, path, message). Weights are never downloaded: the file must already be on disk."""
    path = imagenet_weights_path(arch)
    if path.is_file():
        return True, path, f"ImageNet weights for {arch} found at {path}"
    return (
        False,
        path,
        f"ImageNet weights for {arch} are missing: put {path.name} (from {_WEIGHTS[arch].url}) "
        f"into {path.parent}, or train with weights='none'",
    )


def _load_imagenet_state(arch: str) -> dict[str, torch.Tensor]:
    available, path, message = imagenet_weights_status(arch)
    if not available:
        raise DataError(path, message)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise DataError(path, f"unreadable ImageNet weights file ({exc}); delete it and put a good copy there") from exc
    if arch == "densenet121":
        # Old DenseNet files name layers "norm.1" instead of "norm1" (same fix torchvision applies).
        pattern = re.compile(
            r"^(.*denselayer\d+\.(?:norm|relu|conv))\.((?:[12])\.(?:weight|bias|running_mean|running_var))$"
        )
        state = {
            (match.group(1) + match.group(2) if (match := pattern.match(key)) else key): value
            for key, value in state.items()
        }
    return state


def _drop_final_linear(arch: str, net: nn.Module) -> None:
    """Replace the ImageNet classifier's last Linear with Identity so the backbone emits embeddings."""
    if arch == "efficientnet_b0":
        net.classifier[1] = nn.Identity()
    elif arch == "resnet50":
        net.fc = nn.Identity()
    elif arch == "densenet121":
        net.classifier = nn.Identity()
    elif arch == "convnext_tiny":
        net.classifier[2] = nn.Identity()


# Regularisation knobs each constructor takes (architectures without one ignore that setting).
_DROPOUT_ARG = {"efficientnet_b0": "dropout"}
_STOCHASTIC_DEPTH_ARG = {"efficientnet_b0": "stochastic_depth_prob", "convnext_tiny": "stochastic_depth_prob"}


def regularization_kwargs(arch: str, dropout: float | None, stochastic_depth: float | None) -> dict[str, float]:
    """Constructor arguments for dropout before the head and stochastic depth; None keeps torchvision's default.

    torchvision's defaults (EfficientNet-B0: dropout 0.2, stochastic depth 0.2) are tuned for long ImageNet
    schedules; a short from-scratch run learns faster with less of both.
    """
    _check_arch(arch)
    kwargs: dict[str, float] = {}
    for value, names, what in ((dropout, _DROPOUT_ARG, "dropout"), (stochastic_depth, _STOCHASTIC_DEPTH_ARG,
                                                                    "stochastic_depth")):
        if value is None:
            continue
        if not 0.0 <= value < 1.0:
            raise ValueError(f"{what} must be in [0, 1), not {value!r}")
        if arch in names:
            kwargs[names[arch]] = float(value)
    return kwargs


def _zero_init_residual_branches(arch: str, net: nn.Module) -> None:
    if arch == "efficientnet_b0":
        for block in net.modules():
            if getattr(block, "use_res_connect", False):
                nn.init.zeros_(block.block[-1][1].weight)  # BatchNorm after the projection conv
    elif arch == "resnet50":
        for block in net.modules():
            if isinstance(block, tv.resnet.Bottleneck):
                nn.init.zeros_(block.bn3.weight)


def build_model(
    arch: str,
    num_classes: int,
    weights: str = "none",
    *,
    dropout: float | None = None,
    stochastic_depth: float | None = None,
    zero_init_residual: bool = False,
) -> TileClassifier:
    """A classifier for `num_classes` tissues; weights "imagenet" loads the on-disk file or raises DataError.

    `dropout` / `stochastic_depth` override the constructor's defaults where the architecture has them.
    `zero_init_residual` starts each residual branch's last BatchNorm at zero (EfficientNet, ResNet; ignored
    with ImageNet weights), so a from-scratch net starts as a shallow one and deepens as it learns.
    """
    _check_arch(arch)
    if weights not in ("none", "imagenet"):
        raise ValueError(f"weights must be 'none' or 'imagenet', not {weights!r}")
    if num_classes < 1:
        raise ValueError("num_classes must be at least 1")
    net = _BUILDERS[arch](weights=None, **regularization_kwargs(arch, dropout, stochastic_depth))
    if weights == "imagenet":
        net.load_state_dict(_load_imagenet_state(arch))
    elif zero_init_residual:
        _zero_init_residual_branches(arch, net)
    _drop_final_linear(arch, net)
    return TileClassifier(arch, net, num_classes)


def pick_device() -> torch.device:
    """CUDA, then Apple MPS, then CPU."""
    if torch.cuda.is_available():
        return torch.device("cuda")
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")
