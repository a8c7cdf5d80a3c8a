"""Tile and slide embeddings of a dataset's selected tiles from any FeatureSource, cached on disk.

Layout: ws.cache_dir/embeddings/<key>/ with tiles.parquet (which tile is which row) and values.npy
(float32, tiles x dim). The key holds the source's content hash and the pack key of the tiles (their
pixel-defining columns, slide stamps and the input size), so a retrained checkpoint, a re-tiled slide or
another resolution never reuses stale vectors. values.npy is renamed into place last: its presence marks
a complete entry. While computing, rows land in values.partial.npy and done.json counts the rows flushed,
so a cancelled or killed job resumes where it stopped.
"""

from __future__ import annotations

import fcntl
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from core.base.config import Workspace
from core.base.errors import DataError
from core.base.fileio import atomic_path, atomic_write_json, read_json_object
from core.base.types import Cancel, Progress
from core.embed.features import FeatureSource
from core.tiles.pack import pack_key

log = logging.getLogger(__name__)


TILE_COLUMNS = ("tile_id", "sample_id", "tissue", "subject_id", "x", "y")
_FLUSH_EVERY_S = 2.0  # how often finished rows are made durable (resume loses at most this much work)


@dataclass
class TileEmbeddings:
    """Row i of `values` embeds tile `tile_keys[i]` ("sample_id:x:y") of slide `sample_ids[i]`."""

    tile_keys: np.ndarray
    sample_ids: np.ndarray
    values: np.ndarray
    source_key: str
    tiles: pd.DataFrame  # TILE_COLUMNS, same row order (tissue and donor for colouring and scores)
    path: Path
    cached: bool = False


@dataclass
class SlideEmbeddings:
    """Row i of `values` is the mean of the embeddings of slide `sample_ids[i]`'s `tile_counts[i]` tiles."""

    sample_ids: np.ndarray
    values: np.ndarray
    source_key: str
    tile_counts: np.ndarray | None = None
    tissues: np.ndarray | None = None  # per slide, for colouring and separation scores
    subject_ids: np.ndarray | None = None  # per slide: the donor
    cached: bool = False


# ---------------------------------------------------------------- which tiles


def selected_tiles(tile_index: pd.DataFrame) -> pd.DataFrame:
    """The tiles embedded: passed QC and chosen by balanced sampling (what training uses), with a tile_id."""
    keep = pd.Series(True, index=tile_index.index)
    for column in ("passed_qc", "selected"):
        if column in tile_index.columns:
            keep &= tile_index[column].astype(bool)
    tiles = tile_index[keep].reset_index(drop=True)
    # Same ids as core.train.loop.tile_ids (not imported: that pulls in torch).
    # Built column-wise: a Python loop over 200,000 rows took 0.45 s on every first page load.
    ids = (tiles["sample_id"].astype(str) + ":" + tiles["x"].astype(np.int64).astype(str) + ":"
           + tiles["y"].astype(np.int64).astype(str))
    tiles.insert(0, "tile_id", ids.astype(object))
    return tiles


def _tiling_params(ws: Workspace, data_dir: Path):
    from core.tiles import index as tiling

    chosen = getattr(tiling, "dataset_tiling_params", None)  # per-dataset params, when the tiler offers them
    return chosen(ws, data_dir) if chosen is not None else tiling.TilingParams()


def _slide_samples(ws: Workspace, data_dir: Path) -> pd.DataFrame:
    from core.data.dataset import load_cohort

    cohort = load_cohort(data_dir, ws)
    samples = cohort.samples[cohort.samples["has_slide"].astype(bool)]
    if samples.empty:
        raise DataError(data_dir, "no slides in this dataset: nothing to embed")
    return samples


def dataset_tiles(ws: Workspace, data_dir: str | Path, progress: Progress | None = None) -> pd.DataFrame:
    """The dataset's selected tiles, tiling the slides first when their index is not saved yet."""
    from core.tiles.index import build_tile_index

    data_dir = Path(data_dir)
    result = build_tile_index(_slide_samples(ws, data_dir), _tiling_params(ws, data_dir), ws, progress=progress)
    tiles = selected_tiles(result.index)
    if tiles.empty:
        raise DataError(result.path, "the tile index has no selected tiles that passed QC: nothing to embed")
    return tiles


def _saved_tiles(ws: Workspace, data_dir: Path) -> pd.DataFrame | None:
    """The selected tiles when the dataset's index is already saved; never tiles (cheap for pages)."""
    from core.tiles.index import find_tile_index, load_tile_index

    path = find_tile_index(_slide_samples(ws, data_dir), _tiling_params(ws, data_dir), ws)
    return selected_tiles(load_tile_index(path)) if path is not None else None


# ---------------------------------------------------------------- cache entries


def embeddings_key(source: FeatureSource, tiles: pd.DataFrame) -> str:
    """(feature source content hash, tiles' pixels at the source's input size) -> folder name."""
    return f"{source.key}-{pack_key(tiles, source.image_size)}"


def _folder(ws: Workspace, source: FeatureSource, tiles: pd.DataFrame) -> Path:
    return ws.cache_dir / "embeddings" / embeddings_key(source, tiles)


def _load_complete(folder: Path, tiles: pd.DataFrame, source: FeatureSource) -> TileEmbeddings | None:
    values_path = folder / "values.npy"
    if not values_path.is_file():
        return None
    try:
        values = np.load(values_path, mmap_mode="r")
        saved = pd.read_parquet(folder / "tiles.parquet")
    except Exception as exc:  # a damaged entry is recomputed, never fatal
        log.warning("embedding cache %s unreadable (%s); recomputing", folder, exc)
        return None
    if values.ndim != 2 or len(values) != len(tiles) or saved["tile_id"].tolist() != tiles["tile_id"].tolist():
        log.warning("embedding cache %s does not match its tiles; recomputing", folder)
        return None
    return _result(saved, values, source, folder, cached=True)


def _result(tiles: pd.DataFrame, values: np.ndarray, source: FeatureSource, folder: Path,
            cached: bool) -> TileEmbeddings:
    return TileEmbeddings(
        tile_keys=tiles["tile_id"].astype(str).to_numpy(), sample_ids=tiles["sample_id"].astype(str).to_numpy(),
        values=values, source_key=source.key, tiles=tiles.reset_index(drop=True), path=folder / "values.npy",
        cached=cached,
    )


def _metadata(tiles: pd.DataFrame) -> pd.DataFrame:
    frame = tiles[[c for c in TILE_COLUMNS if c in tiles.columns]].copy()
    for column in ("tile_id", "sample_id", "tissue", "subject_id"):
        if column in frame:
            frame[column] = frame[column].astype(str)
    return frame.reset_index(drop=True)


def cached_tile_embeddings(ws: Workspace, data_dir: str | Path, source: FeatureSource) -> TileEmbeddings | None:
    """The cached tile embeddings, or None when they (or the tile index) are not computed yet.

    Never tiles, packs or runs a model: what a page calls on every rerun before offering to launch a job.
    """
    tiles = _saved_tiles(ws, Path(data_dir))
    if tiles is None:
        return None
    return _load_complete(_folder(ws, source, tiles), tiles, source)


def cached_folders(ws: Workspace, data_dir: str | Path, sources: list[FeatureSource]) -> list[Path | None]:
    """Per source, the cache folder of its complete embeddings of the dataset's selected tiles, or None when
    not computed (the tile index is read once; nothing is loaded from the entries)."""
    tiles = _saved_tiles(ws, Path(data_dir))
    if tiles is None:
        return [None] * len(sources)
    folders = [_folder(ws, source, tiles) for source in sources]
    return [folder if (folder / "values.npy").is_file() else None for folder in folders]


def cached_slide_embeddings(ws: Workspace, data_dir: str | Path, source: FeatureSource) -> SlideEmbeddings | None:
    """Slide means of the cached tile embeddings, or None (like cached_tile_embeddings)."""
    tiles = cached_tile_embeddings(ws, data_dir, source)
    return saved_slide_means(tiles) if tiles is not None else None


SLIDE_MEANS_VERSION = "1"  # bump when slide_means changes what it computes


def saved_slide_means(tiles: TileEmbeddings) -> SlideEmbeddings:
    """slide_means, kept beside the tile embeddings (slide_means.npz, stamped with their file's size and
    mtime): averaging 200,000 memory-mapped rows took 0.66 s on a page's first slide-level view."""
    if tiles.path is None:
        return slide_means(tiles)
    values_path = Path(tiles.path)
    sidecar = values_path.with_name("slide_means.npz")
    try:
        stat = values_path.stat()
        stamp = np.array([SLIDE_MEANS_VERSION, str(stat.st_size), str(stat.st_mtime_ns), str(len(tiles.sample_ids))])
    except OSError:
        return slide_means(tiles)
    try:
        with np.load(sidecar, allow_pickle=False) as saved:
            if saved["stamp"].tolist() == stamp.tolist():
                optional = {name: saved[name] if name in saved.files else None
                            for name in ("tile_counts", "tissues", "subject_ids")}
                return SlideEmbeddings(sample_ids=saved["sample_ids"], values=saved["values"],
                                       source_key=tiles.source_key, cached=tiles.cached, **optional)
    except FileNotFoundError:
        pass
    except Exception as exc:  # a damaged sidecar is recomputed, never fatal
        log.warning("slide means %s unreadable (%s); recomputing", sidecar, exc)
    slides = slide_means(tiles)
    arrays = {"stamp": stamp, "sample_ids": slides.sample_ids.astype(str), "values": slides.values}
    if slides.tile_counts is not None:
        arrays["tile_counts"] = np.asarray(slides.tile_counts)
    arrays.update({name: np.asarray(getattr(slides, name)).astype(str) for name in ("tissues", "subject_ids")
                   if getattr(slides, name) is not None})  # fixed-width text: no pickled objects on disk
    try:
        with atomic_path(sidecar) as tmp, open(tmp, "wb") as handle:
            np.savez(handle, **arrays)
    except OSError as exc:  # a read-only cache still answers
        log.warning("could not keep slide means in %s (%s)", sidecar, exc)
    return slides


# ---------------------------------------------------------------- computing


def _checked(progress: Progress | None, cancel: Cancel | None, phase: str) -> Progress:
    def report(done: int, total: int, message: str = "") -> None:
        if progress is not None:
            progress(done, total, f"{phase} {message}".strip())
        _raise_if_cancelled(cancel)

    return report


def _raise_if_cancelled(cancel: Cancel | None) -> None:
    if cancel is not None and cancel():
        from core.jobs import JobCancelled

        raise JobCancelled("cancelled on request; finished rows are kept and a new request resumes")


def _open_partial(folder: Path, shape: tuple[int, int]) -> tuple[np.ndarray, int]:
    """(writable memmap, rows already done) of an interrupted computation, or a fresh one."""
    partial = folder / "values.partial.npy"
    state = read_json_object(folder / "done.json") or {}
    if partial.is_file() and state.get("shape") == list(shape):
        try:
            values = np.load(partial, mmap_mode="r+")
            if values.shape == shape and values.dtype == np.float32:
                return values, min(int(state.get("done", 0)), shape[0])
        except Exception as exc:
            log.warning("partial embeddings %s unreadable (%s); starting over", partial, exc)
    (folder / "done.json").unlink(missing_ok=True)
    return np.lib.format.open_memmap(partial, mode="w+", dtype=np.float32, shape=shape), 0


def _mark_done(folder: Path, values: np.ndarray, done: int) -> None:
    values.flush()  # rows first, then the count that vouches for them
    atomic_write_json(folder / "done.json", {"shape": list(values.shape), "done": int(done)})


def embed_batches(model, images: np.ndarray, rows: range, batch_size: int, device, amp: bool):
    """Yield (start, float32 features) for `images[rows]` in batches: uint8 NHWC -> model -> CPU numpy."""
    import torch

    for start in range(rows.start, rows.stop, batch_size):
        stop = min(start + batch_size, rows.stop)
        batch = torch.from_numpy(np.array(images[start:stop]))  # a private copy: the pack is read-only
        batch = batch.pin_memory().to(device, non_blocking=True) if device.type == "cuda" else batch.to(device)
        x = batch.permute(0, 3, 1, 2).float().div_(255.0).contiguous(memory_format=torch.channels_last)
        with torch.inference_mode(), torch.autocast(device_type=device.type, dtype=torch.float16, enabled=amp):
            features = model(x)
        yield start, features.float().cpu().numpy()


def _compute(folder: Path, tiles: pd.DataFrame, source: FeatureSource, ws: Workspace, progress: Progress | None,
             cancel: Cancel | None, batch_size: int, device, pack_workers: int, read_tile) -> TileEmbeddings:
    import torch

    from core.embed.features import calibration_rows, load_feature_model
    from core.tiles.pack import build_tilepack
    from core.train.models import pick_device

    pack = build_tilepack(tiles, source.image_size, ws, read_tile, _checked(progress, cancel, "reading tiles"),
                          workers=pack_workers)
    device = torch.device(device) if device is not None else pick_device()
    calibration = np.asarray(pack.images[calibration_rows(len(tiles))]) if source.kind == "random" else None
    model, size, dim = load_feature_model(source, device, calibration)
    model = model.to(memory_format=torch.channels_last)
    folder.mkdir(parents=True, exist_ok=True)
    values, done = _open_partial(folder, (len(tiles), dim))
    total, first, started = len(tiles), done, time.perf_counter()
    last_flush = started
    amp = device.type == "cuda"  # mixed precision where it pays; fp32 elsewhere
    for start, features in embed_batches(model, pack.images, range(done, total), batch_size, device, amp):
        values[start : start + len(features)] = features
        done = start + len(features)
        now = time.perf_counter()
        if now - last_flush >= _FLUSH_EVERY_S or done == total:
            _mark_done(folder, values, done)
            last_flush = now
        if progress is not None:
            rate = (done - first) / max(now - started, 1e-9)
            progress(done, total, f"embedding tiles {done}/{total} ({rate:.0f} tiles/s)")
        if done < total and cancel is not None and cancel():
            _mark_done(folder, values, done)
            _raise_if_cancelled(cancel)
    _mark_done(folder, values, total)
    del values
    meta = _metadata(tiles)
    with atomic_path(folder / "tiles.parquet") as tmp:
        meta.to_parquet(tmp, index=False)
    (folder / "values.partial.npy").replace(folder / "values.npy")  # completes the entry
    if source.kind == "checkpoint":  # its head beside it: predicted tissue later without torch
        from core.embed.heads import checkpoint_head

        try:
            checkpoint_head(source, folder)
        except DataError as exc:
            log.warning("no predicted tissue for %s: %s", source.label, exc)
    (folder / "done.json").unlink(missing_ok=True)
    return _result(meta, np.load(folder / "values.npy", mmap_mode="r"), source, folder, cached=False)


def tile_embeddings(
    ws: Workspace,
    data_dir: str | Path,
    source: FeatureSource,
    progress: Progress | None = None,
    cancel: Cancel | None = None,
    **options,
) -> TileEmbeddings:
    """Embeddings of the dataset's selected tiles from `source`, computed once and then read from disk.

    Tiles the slides if needed, reads the tiles once into a tile pack at the source's input size, and
    runs batched inference (CUDA with mixed precision, else MPS, else CPU). `progress(done, total,
    message)` follows tiling, reading and embedding; `cancel()` returning True stops with
    core.jobs.JobCancelled after saving the finished rows, which the next call continues from.
    `options` go to embed_tiles (batch_size, device, pack_workers).
    """
    tiles = dataset_tiles(ws, Path(data_dir), _checked(progress, cancel, "tiling"))
    return embed_tiles(ws, tiles, source, progress, cancel, **options)


def embed_tiles(
    ws: Workspace,
    tiles: pd.DataFrame,
    source: FeatureSource,
    progress: Progress | None = None,
    cancel: Cancel | None = None,
    *,
    batch_size: int = 64,
    device: str | None = None,
    pack_workers: int = 2,
    read_tile: Callable[..., np.ndarray] | None = None,
) -> TileEmbeddings:
    """tile_embeddings for given tile-index rows (selected_tiles of an index); `read_tile(row, out_size)`
    replaces core.tiles.index.read_tile (benchmarks, tests)."""
    folder = _folder(ws, source, tiles)
    hit = _load_complete(folder, tiles, source)
    if hit is None:
        folder.mkdir(parents=True, exist_ok=True)
        # One writer per entry: a page computing in-process and a worker must not fill one partial file.
        with open(folder / "lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            hit = _load_complete(folder, tiles, source)  # the other writer may have finished meanwhile
            if hit is None:
                return _compute(folder, tiles, source, ws, progress, cancel, batch_size, device, pack_workers,
                                read_tile)
    if progress is not None:
        progress(len(tiles), len(tiles), "embeddings reused from the cache")
    return hit


def slide_means(tiles: TileEmbeddings) -> SlideEmbeddings:
    """Mean tile embedding per slide, slides sorted by sample id (with each slide's tissue and donor)."""
    sample_ids, first, inverse, counts = np.unique(tiles.sample_ids, return_index=True, return_inverse=True,
                                                   return_counts=True)
    values = tiles.values
    dim = values.shape[1]
    if len(inverse) == 0:
        means = np.zeros((0, dim), np.float32)
    else:
        if np.any(np.diff(inverse) < 0):  # a slide's tiles not contiguous (the index keeps them so): regroup
            values = np.asarray(values)[np.argsort(inverse, kind="stable")]
        starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
        # float64 sums: a slide of thousands of tiles keeps its precision; no float64 copy of the whole matrix.
        means = (np.add.reduceat(values, starts, axis=0, dtype=np.float64) / counts[:, None]).astype(np.float32)
    meta = tiles.tiles
    return SlideEmbeddings(
        sample_ids=sample_ids.astype(str), values=means, source_key=tiles.source_key, tile_counts=counts,
        tissues=meta["tissue"].astype(str).to_numpy()[first] if "tissue" in meta else None,
        subject_ids=meta["subject_id"].astype(str).to_numpy()[first] if "subject_id" in meta else None,
        cached=tiles.cached,
    )


def slide_embeddings(
    ws: Workspace,
    data_dir: str | Path,
    source: FeatureSource,
    progress: Progress | None = None,
    cancel: Cancel | None = None,
    **options,
) -> SlideEmbeddings:
    """Per slide, the mean of its selected tiles' embeddings (tile_embeddings does the work and caching)."""
    return saved_slide_means(tile_embeddings(ws, data_dir, source, progress, cancel, **options))
