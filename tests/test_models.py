"""Model factory: head sizes, embeddings, offline-only ImageNet weights, device choice."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from core.base.errors import DataError
from core.train import models
from core.train.config import ARCHITECTURES
from core.train.models import build_model, embedding_dim, imagenet_weights_status, pick_device


@pytest.fixture
def hub_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty torch hub cache; any download attempt fails the test."""
    old = torch.hub.get_dir()
    torch.hub.set_dir(str(tmp_path / "hub"))

    def no_download(*args, **kwargs):
        raise AssertionError("a download was attempted")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", no_download)
    monkeypatch.setattr(torch.hub, "download_url_to_file", no_download)
    yield tmp_path / "hub"
    torch.hub.set_dir(old)


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_build_model_output_and_embedding_sizes(arch: str) -> None:
    model = build_model(arch, num_classes=7).eval()
    images = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        logits = model(images)
        embedding = model.embed(images)
    assert logits.shape == (2, 7)
    assert embedding.shape == (2, embedding_dim(arch))
    # The head is exactly a linear map of the embedding (penultimate layer).
    assert torch.allclose(model.head(embedding), logits, atol=1e-5)


def test_regularization_overrides_reach_the_constructor() -> None:
    default = build_model("efficientnet_b0", 3)
    assert default.backbone.classifier[0].p == 0.2  # torchvision's default when not overridden
    tuned = build_model("efficientnet_b0", 3, dropout=0.05, stochastic_depth=0.1)
    assert tuned.backbone.classifier[0].p == 0.05
    depths = [m.p for m in tuned.modules() if type(m).__name__ == "StochasticDepth"]
    assert depths and max(depths) < 0.1 and max(depths) > 0.09  # rises with block depth up to the setting
    off = build_model("efficientnet_b0", 3, dropout=0.0, stochastic_depth=0.0)
    assert all(m.p == 0.0 for m in off.modules() if type(m).__name__ in ("StochasticDepth", "Dropout"))
    convnext = build_model("convnext_tiny", 3, dropout=0.3, stochastic_depth=0.0)  # no head dropout: ignored
    assert all(m.p == 0.0 for m in convnext.modules() if type(m).__name__ == "StochasticDepth")
    with pytest.raises(ValueError, match="stochastic_depth"):
        build_model("efficientnet_b0", 3, stochastic_depth=1.0)


def test_zero_init_residual_starts_residual_blocks_as_identity() -> None:
    torch.manual_seed(0)
    model = build_model("efficientnet_b0", 3, zero_init_residual=True, stochastic_depth=0.0).eval()
    residual = [m for m in model.modules() if getattr(m, "use_res_connect", False)]
    assert len(residual) == 9  # EfficientNet-B0's stride-1, same-width MBConv blocks
    x = torch.randn(2, 24, 8, 8)
    first = residual[0]  # 24 -> 24 channels
    with torch.no_grad():
        assert torch.equal(first(x), x)
    plain = build_model("efficientnet_b0", 3, stochastic_depth=0.0).eval()
    assert all(m.block[-1][1].weight.abs().sum() > 0 for m in plain.modules() if getattr(m, "use_res_connect", False))


def test_embedding_dim_of_efficientnet_b0() -> None:
    assert embedding_dim("efficientnet_b0") == 1280
    with pytest.raises(ValueError, match="unknown architecture"):
        embedding_dim("vgg16")


def test_missing_imagenet_weights_give_clear_error_without_download(hub_dir: Path) -> None:
    available, path, message = imagenet_weights_status("resnet50")
    assert not available
    assert path.parent == hub_dir / "checkpoints"
    assert path.name == "resnet50-11ad3fa6.pth"
    assert path.name in message and str(hub_dir / "checkpoints") in message
    with pytest.raises(DataError, match="resnet50-11ad3fa6.pth") as info:
        build_model("resnet50", 3, weights="imagenet")
    assert info.value.path == str(path)


def test_imagenet_weights_on_disk_are_loaded(hub_dir: Path) -> None:
    from torchvision.models import efficientnet_b0

    reference = efficientnet_b0(weights=None)
    path = models.imagenet_weights_path("efficientnet_b0")
    path.parent.mkdir(parents=True)
    torch.save(reference.state_dict(), path)
    assert imagenet_weights_status("efficientnet_b0")[0]
    model = build_model("efficientnet_b0", 4, weights="imagenet")
    first_conv = model.backbone.features[0][0].weight
    assert torch.equal(first_conv, reference.features[0][0].weight)


def test_corrupt_imagenet_weights_name_the_file(hub_dir: Path) -> None:
    path = models.imagenet_weights_path("efficientnet_b0")
    path.parent.mkdir(parents=True)
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(DataError, match="unreadable ImageNet weights") as info:
        build_model("efficientnet_b0", 4, weights="imagenet")
    assert info.value.path == str(path)


def test_pick_device_prefers_cuda_then_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    assert pick_device().type == "cpu"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert pick_device().type == "cuda"
