"""Mixed precision: the float16 autocast path the CUDA run takes gives the same embeddings as float32 within
tolerance. On this machine it runs through CPU autocast (same code path, same dtype); the CUDA comparison
runs only where a GPU is present."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from core.embed.compute import embed_batches
from core.embed.features import FeatureSource, load_feature_model


def _images(n: int = 12, size: int = 32) -> np.ndarray:
    rng = np.random.default_rng(0)
    base = rng.integers(40, 220, size=(n, 1, 1, 3))
    return np.clip(base + rng.normal(0, 30, size=(n, size, size, 3)), 0, 255).astype(np.uint8)


def _embed(model, images: np.ndarray, device: str, amp: bool) -> np.ndarray:
    out = [f for _, f in embed_batches(model, images, range(len(images)), 5, torch.device(device), amp)]
    return np.concatenate(out)


def _agree(reference: np.ndarray, other: np.ndarray) -> None:
    assert other.dtype == np.float32 and other.shape == reference.shape
    cosine = (reference * other).sum(1) / (np.linalg.norm(reference, axis=1) * np.linalg.norm(other, axis=1))
    assert cosine.min() > 0.995, cosine.min()
    assert np.linalg.norm(other - reference) / np.linalg.norm(reference) < 0.05


@pytest.fixture(scope="module")
def model_and_images():
    images = _images()
    source = FeatureSource.random("efficientnet_b0", 0, 32)
    model, _, _ = load_feature_model(source, "cpu", images)
    return model.to(memory_format=torch.channels_last), images


def test_float16_autocast_matches_float32(model_and_images) -> None:
    model, images = model_and_images
    full = _embed(model, images, "cpu", amp=False)
    half = _embed(model, images, "cpu", amp=True)
    assert not np.array_equal(full, half)  # the autocast path really ran in reduced precision
    _agree(full, half)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device here")
def test_cuda_mixed_precision_matches_cpu_float32(model_and_images) -> None:
    model, images = model_and_images
    full = _embed(model, images, "cpu", amp=False)
    on_gpu = _embed(model.to("cuda"), images, "cuda", amp=True)
    model.to("cpu")
    _agree(full, on_gpu)
