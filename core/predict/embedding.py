"""Step 3: embed a slide's kept tiles with the run's checkpoint (penultimate features, batched).

Tiles are read exactly as the training pack read them (core.data.slides read_region of the level-0 box at the
model's input size: nearest pyramid level, then an area filter), so the network sees the same kind of
pixels. A big slide's tiles are read by a small process pool in chunks while this process embeds the
chunks already read. The loaded model is kept per process (a page or the tour predicting twice loads once).
"""

from __future__ import annotations

import os
import threading
import warnings
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

import numpy as np
import pandas as pd

from core.base.types import Cancel
from core.embed.features import FeatureSource

# Tiles per chunk handed to a reading process, and the count above which a pool pays for its start-up.
READ_CHUNK = 256
POOL_FROM = 600
_MODELS: dict[str, tuple] = {}
_MODELS_GUARD = threading.Lock()


def feature_model(source: FeatureSource):
    """(model, device) for a checkpoint source, loaded once per process."""
    from core.embed.features import load_feature_model
    from core.train.models import pick_device

    with _MODELS_GUARD:
        hit = _MODELS.get(source.key)
        if hit is None:
            device = pick_device()
            model, _, dim = load_feature_model(source, device)
            hit = _MODELS[source.key] = (model, device, dim)
            while len(_MODELS) > 2:  # a few hundred MB each at most; keep the newest two
                _MODELS.pop(next(iter(_MODELS)))
        return hit


def preload(source: FeatureSource) -> threading.Thread:
    """Load the model in a thread (imports of torch and torchvision, the checkpoint) while the slide is read
    and QC'd; `feature_model` then finds it loaded. Errors surface in the embed step (loaded again there)."""

    def load() -> None:
        try:
            feature_model(source)
        except Exception:  # reported by the embed step's own call
            pass

    thread = threading.Thread(target=load, name="predict-model-preload", daemon=True)
    thread.start()
    return thread


def read_chunk(path: str, scenes: np.ndarray, xs: np.ndarray, ys: np.ndarray, sizes: np.ndarray,
               out_size: int) -> np.ndarray:
    """uint8 (n, S, S, 3) tiles of one slide, each its level-0 box read at `out_size` (pool entry)."""
    from core.base.errors import DataWarning
    from core.data.slides import open_slide

    warnings.simplefilter("ignore", DataWarning)  # the slide's notes were reported when it was read
    out = np.empty((len(xs), out_size, out_size, 3), np.uint8)
    handles = {}
    try:
        for i, (scene, x, y, size) in enumerate(zip(scenes, xs, ys, sizes, strict=True)):
            slide = handles.get(int(scene))
            if slide is None:
                slide = handles[int(scene)] = open_slide(path, int(scene))
            out[i] = slide.read_region(int(x), int(y), int(size), int(size), out_size=(out_size, out_size))
    finally:
        for slide in handles.values():
            slide.close()
    return out


def _chunks(path: Path, tiles: pd.DataFrame, size: int, workers: int) -> Iterator[np.ndarray]:
    arrays = [tiles[c].to_numpy() for c in ("scene", "x", "y", "read_size")]
    bounds = [(start, min(start + READ_CHUNK, len(tiles))) for start in range(0, len(tiles), READ_CHUNK)]
    if workers <= 1 or len(tiles) < POOL_FROM:
        for low, high in bounds:
            yield read_chunk(str(path), *(a[low:high] for a in arrays), size)
        return
    with ProcessPoolExecutor(workers, mp_context=get_context("spawn")) as pool:
        futures = [pool.submit(read_chunk, str(path), *(a[low:high] for a in arrays), size) for low, high in bounds]
        try:
            for future in futures:
                yield future.result()
        finally:
            for future in futures:
                future.cancel()


def embed_slide_tiles(path: str | Path, tiles: pd.DataFrame, source: FeatureSource,
                      progress: Callable[[float, str], None] | None = None,
                      cancel: Cancel | None = None, batch_size: int = 64) -> np.ndarray:
    """float32 (n, dim) penultimate features of `tiles` rows (scene, x, y, read_size) of the slide at `path`.

    On CPU the network runs on one thread while the reading processes take the other cores: a small
    network on 64 px tiles gains nothing from a second intra-op thread on a shared 2-core machine, whose
    OpenMP threads spin for 3x the CPU they compute with (measured: 3.5 ms CPU per tile on one thread,
    10-21 ms on two, at batch 64-256)."""
    import torch

    from core.embed.compute import embed_batches

    model, device, dim = feature_model(source)
    values = np.empty((len(tiles), dim), np.float32)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    done = 0
    amp = device.type == "cuda"
    model = model.to(memory_format=torch.channels_last)
    threads = torch.get_num_threads()
    if device.type == "cpu":
        torch.set_num_threads(1)
    try:
        for images in _chunks(Path(path), tiles, source.image_size, min(2, cores)):
            for start, features in embed_batches(model, images, range(len(images)), batch_size, device, amp):
                values[done + start : done + start + len(features)] = features
            done += len(images)
            if progress is not None:
                progress(done / max(len(tiles), 1), f"embedded {done:,} of {len(tiles):,} tiles")
            if cancel is not None and cancel():
                from core.jobs import JobCancelled

                raise JobCancelled("cancelled on request")
    finally:
        torch.set_num_threads(threads)
    return values
