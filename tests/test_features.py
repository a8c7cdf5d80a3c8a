"""Feature sources: penultimate dims per architecture, seeded random weights, a run's checkpoint, timm models
from a local weights file, and clear errors for missing or unfit weight files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import timm
import torch
from safetensors.torch import save_file

from core.base.errors import DataError
from core.embed.features import FeatureSource, checkpoint_epochs, load_feature_model
from core.train.loop import save_checkpoint
from core.train.models import build_model

TINY_TIMM = "test_resnet"  # timm's own test model: ~100k parameters, random weights, nothing downloaded


def images(n: int = 2, size: int = 32, seed: int = 0) -> torch.Tensor:
    return torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("arch, dim", [("efficientnet_b0", 1280), ("resnet50", 2048), ("densenet121", 1024),
                                       ("convnext_tiny", 768)])
def test_penultimate_dims_per_architecture(arch: str, dim: int) -> None:
    model, size, got = load_feature_model(FeatureSource.random(arch, seed=0, image_size=32), "cpu")
    assert (size, got) == (32, dim)
    with torch.inference_mode():
        assert model(images()).shape == (2, dim)


def test_random_weights_are_seeded_calibrated_and_leave_the_global_rng_alone() -> None:
    tiles = (images(16, seed=3) * 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()

    def random_model(seed: int) -> torch.nn.Module:
        return load_feature_model(FeatureSource.random("efficientnet_b0", seed, 32), "cpu", tiles)[0]

    torch.manual_seed(123)
    before = torch.rand(1)
    torch.manual_seed(123)
    a = random_model(1)
    assert torch.equal(torch.rand(1), before)
    b, c = random_model(1), random_model(2)
    uncalibrated = load_feature_model(FeatureSource.random("efficientnet_b0", 1, 32), "cpu")[0]
    with torch.inference_mode():
        x = images()
        assert torch.equal(a(x), b(x))
        assert not torch.allclose(a(x), c(x))
        # BatchNorm statistics from the tiles: features of a usable scale, not the ~1e-15 of fresh statistics.
        assert a(x).std() > 1e-3 > uncalibrated(x).std()
    keys = {FeatureSource.random("efficientnet_b0", seed=s, image_size=n).key for s, n in ((1, 32), (2, 32), (1, 64))}
    assert len(keys) == 3


def make_run(root: Path, arch: str = "efficientnet_b0", epochs: int = 2, image_size: int = 48) -> Path:
    """A run folder as core.train.loop writes it: config.json and checkpoints/epoch_NNN.pt."""
    run_dir = root / "run"
    run_dir.mkdir(parents=True)
    classes = ["Liver", "Lung", "Skin"]
    (run_dir / "config.json").write_text(json.dumps({"arch": arch, "image_size": image_size, "classes": classes}))
    for epoch in range(1, epochs + 1):
        torch.manual_seed(epoch)
        model = build_model(arch, len(classes))
        save_checkpoint(run_dir / "checkpoints" / f"epoch_{epoch:03d}.pt",
                        {"epoch": epoch, "model": model.state_dict(), "optimizer": {}, "rng": {}})
    return run_dir


def test_checkpoint_source_is_the_runs_backbone_at_its_input_size(tmp_path: Path) -> None:
    run_dir = make_run(tmp_path)
    assert checkpoint_epochs(run_dir) == [1, 2]
    latest = FeatureSource.checkpoint(run_dir)
    assert (latest.epoch, latest.image_size, latest.arch) == (2, 48, "efficientnet_b0")
    model, size, dim = load_feature_model(FeatureSource.checkpoint(run_dir, 1), "cpu")
    assert (size, dim) == (48, 1280)
    reference = build_model("efficientnet_b0", 3)
    reference.load_state_dict(torch.load(run_dir / "checkpoints" / "epoch_001.pt", weights_only=True)["model"])
    reference.eval()
    x = images(size=48)
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    with torch.inference_mode():
        torch.testing.assert_close(model(x), reference.embed((x - mean) / std))
    # The key follows the file's content: epochs differ, and a rewritten checkpoint is a new source.
    key = FeatureSource.checkpoint(run_dir, 1).key
    assert key != latest.key
    state = torch.load(run_dir / "checkpoints" / "epoch_002.pt", weights_only=True)
    save_checkpoint(run_dir / "checkpoints" / "epoch_001.pt", state)
    assert FeatureSource.checkpoint(run_dir, 1).key != key
    for weights in ("random", "imagenet"):
        baseline = FeatureSource.for_run(run_dir, weights)
        assert (baseline.kind, baseline.arch, baseline.image_size) == (weights, "efficientnet_b0", 48)


def test_missing_checkpoint_epoch_is_a_data_error(tmp_path: Path) -> None:
    run_dir = make_run(tmp_path, epochs=1)
    with pytest.raises(DataError, match=r"epoch_007\.pt: no checkpoint for epoch 7"):
        FeatureSource.checkpoint(run_dir, 7)
    with pytest.raises(DataError, match="config.json"):
        FeatureSource.checkpoint(tmp_path / "not-a-run")


def test_imagenet_weights_missing_from_disk_name_the_file(tmp_path: Path) -> None:
    old = torch.hub.get_dir()
    torch.hub.set_dir(str(tmp_path / "empty-hub"))
    try:
        source = FeatureSource.imagenet("resnet50", image_size=32)
        with pytest.raises(DataError, match=r"resnet50-.*\.pth.*missing"):
            load_feature_model(source, "cpu")
        with pytest.raises(DataError, match="ImageNet weights file not found"):
            _ = source.key
    finally:
        torch.hub.set_dir(old)


def _reference_timm(state: dict[str, torch.Tensor]) -> torch.nn.Module:
    model = timm.create_model(TINY_TIMM, pretrained=False, num_classes=0)
    model.load_state_dict({k: v for k, v in state.items() if not k.startswith("fc.")})  # head not needed
    return model.eval()


@pytest.mark.parametrize("suffix", [".safetensors", ".pt"])
def test_timm_source_from_a_local_weights_file(tmp_path: Path, suffix: str) -> None:
    torch.manual_seed(5)
    saved = timm.create_model(TINY_TIMM, pretrained=False).state_dict()  # with its classifier head
    path = tmp_path / f"weights{suffix}"
    if suffix == ".safetensors":
        save_file({k: v.contiguous() for k, v in saved.items()}, str(path))
    else:
        torch.save({"state_dict": saved}, path)
    source = FeatureSource.timm(TINY_TIMM, path, image_size=32)
    model, size, dim = load_feature_model(source, "cpu")
    reference = _reference_timm(saved)
    assert (size, dim) == (32, reference.num_features)
    cfg = reference.pretrained_cfg
    mean, std = (torch.tensor(cfg[k]).view(1, 3, 1, 1) for k in ("mean", "std"))
    x = images()
    with torch.inference_mode():
        torch.testing.assert_close(model(x), reference((x - mean) / std))
    # Another model's random weights: not the same features.
    torch.manual_seed(6)
    with torch.inference_mode():
        other = _reference_timm(timm.create_model(TINY_TIMM, pretrained=False).state_dict())
        assert not torch.allclose(model(x), other((x - mean) / std))


def test_missing_timm_weights_file_names_it(tmp_path: Path) -> None:
    missing = tmp_path / "uni.safetensors"
    with pytest.raises(DataError, match=r"uni\.safetensors: weights file for timm model 'test_resnet' not found"):
        FeatureSource.timm(TINY_TIMM, missing)


def test_wrong_timm_weights_file_says_what_does_not_fit(tmp_path: Path) -> None:
    other = tmp_path / "other.safetensors"
    save_file({k: v.contiguous() for k, v in timm.create_model("test_efficientnet").state_dict().items()}, str(other))
    with pytest.raises(DataError, match=r"other\.safetensors: weights do not fit timm model 'test_resnet'"):
        load_feature_model(FeatureSource.timm(TINY_TIMM, other, 32), "cpu")
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a torch file at all")
    with pytest.raises(DataError, match=r"garbage\.pt: not a readable state-dict file"):
        load_feature_model(FeatureSource.timm(TINY_TIMM, garbage, 32), "cpu")
    broken = tmp_path / "broken.safetensors"
    broken.write_bytes(b"\x00" * 16)
    with pytest.raises(DataError, match=r"broken\.safetensors: not a readable safetensors file"):
        load_feature_model(FeatureSource.timm(TINY_TIMM, broken, 32), "cpu")
    unknown = tmp_path / "w.pt"
    torch.save({}, unknown)
    with pytest.raises(DataError, match="timm cannot build model 'no_such_model_xyz'"):
        load_feature_model(FeatureSource.timm("no_such_model_xyz", unknown, 32), "cpu")
