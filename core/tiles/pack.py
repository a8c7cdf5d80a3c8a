"""Tile pack: the training tiles decoded and resized once into one memory-mapped uint8 array.

Decoding 448 px tiles every epoch would starve two CPU cores; a pack makes loading a slice
of an array, and makes the pixels every epoch sees identical (deterministic training).
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from core.base.cache import cache_key
from core.base.config import Workspace
from core.base.errors import DataError
from core.base.fileio import atomic_path, atomic_write_json, read_json_object, temp_path_for
from core.base.types import Progress

log = logging.getLogger(__name__)

ReadTile = Callable[..., np.ndarray]

# Columns that decide a tile's pixels; other index columns (QC metrics) don't change the pack.
_PIXEL_COLUMNS = ("sample_id", "slide_path", "level", "x", "y", "read_size", "tile_size")
# Bump when the pixels a read gives change (2: read_region reduces by an area filter), so an old pack
# of other pixels is never reused.
_PIXELS_VERSION = 2
_CHUNK = 32  # tiles per worker task: big enough to amortise pickling, small enough for steady progress


@dataclass
class TilePack:
    """`images[i]` is tile `tiles.iloc[i]` as (S, S, 3) uint8 RGB."""

    path: Path
    images: np.ndarray
    tiles: pd.DataFrame


def _default_read_tile() -> ReadTile:
    from core.tiles.index import read_tile  # imported late: tiling pulls in the slide readers

    return read_tile


def _slide_stamp(path: str) -> str:
    # Size and mtime of each slide: a replaced slide at the same path invalidates the pack.
    try:
        stat = os.stat(path)
        return f"{stat.st_size}:{stat.st_mtime_ns}"
    except OSError:
        return "missing"


def pack_key(tiles: pd.DataFrame, image_size: int) -> str:
    """Key from the tiles' pixel-defining columns, the slides' stamps, the size and CODE_VERSION."""
    columns = [c for c in _PIXEL_COLUMNS if c in tiles.columns]
    rows = pd.util.hash_pandas_object(tiles[columns].reset_index(drop=True), index=True).to_numpy()
    digest = hashlib.blake2b(rows.tobytes(), digest_size=16).hexdigest()
    stamps = sorted({f"{p}={_slide_stamp(p)}" for p in tiles["slide_path"].astype(str).unique()})
    return cache_key("tilepack", digest, stamps, int(image_size), _PIXELS_VERSION).replace(":", "-")


def _fit(image: np.ndarray, size: int) -> np.ndarray:
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] < 3:
        raise ValueError(f"tile has shape {image.shape}, expected (H, W, 3)")
    image = image[:, :, :3]
    if image.shape[:2] != (size, size):
        image = np.asarray(Image.fromarray(image.astype(np.uint8)).resize((size, size), Image.BILINEAR))
    return image.astype(np.uint8, copy=False)


def _read_chunk(read_tile: ReadTile, rows: list[dict], size: int) -> np.ndarray:
    out = np.empty((len(rows), size, size, 3), dtype=np.uint8)
    for i, row in enumerate(rows):
        try:
            out[i] = _fit(read_tile(pd.Series(row), out_size=size), size)
        except DataError:
            raise
        except Exception as exc:  # a broken tile names its slide instead of a pool traceback
            where = f"x={row.get('x')}, y={row.get('y')}"
            raise DataError(row.get("slide_path"), f"cannot read tile at {where}: {exc}") from exc
    return out


def _open_pack(path: Path, expected_shape: tuple[int, ...]) -> np.ndarray | None:
    """The memory-mapped pack, or None when missing, truncated or of the wrong shape."""
    if not path.is_file():
        return None
    try:
        images = np.load(path, mmap_mode="r")
    except Exception as exc:
        log.warning("tile pack %s unreadable (%s); rebuilding", path, exc)
        return None
    if images.shape != expected_shape or images.dtype != np.uint8:
        log.warning("tile pack %s has shape %s, expected %s; rebuilding", path, images.shape, expected_shape)
        return None
    return images


def _content_key(tiles: pd.DataFrame, image_size: int) -> str:
    """pack_key of the same tiles in a canonical order: equal for the same tiles in any order."""
    columns = [c for c in _PIXEL_COLUMNS if c in tiles.columns]
    return "content-" + pack_key(tiles[columns].sort_values(columns).reset_index(drop=True), image_size)


def _remember_order(folder: Path, path: Path, tiles: pd.DataFrame, size: int) -> None:
    """Note which pack holds these tiles (a link by content key) and their order in it, so a request for the same
    tiles in another order (training packs its split's order, embedding the index's) reorders it, not re-reads."""
    columns = [c for c in _PIXEL_COLUMNS if c in tiles.columns]
    rows = folder / f"{path.stem}.rows.parquet"
    with atomic_path(rows) as tmp:
        tiles[columns].reset_index(drop=True).to_parquet(tmp, index=False)
    atomic_write_json(folder / f"{_content_key(tiles, size)}.json", {"pack": path.name})


def _reordered(folder: Path, tiles: pd.DataFrame, size: int, shape: tuple[int, ...]) -> np.ndarray | None:
    """The same tiles' pixels from a pack in another order (None when there is none, or it does not match)."""
    link = read_json_object(folder / f"{_content_key(tiles, size)}.json")
    if not link or not isinstance(link.get("pack"), str):
        return None
    source = folder / link["pack"]
    images = _open_pack(source, shape)
    rows = folder / f"{source.stem}.rows.parquet"
    if images is None or not rows.is_file():
        return None
    try:
        stored = pd.read_parquet(rows)
    except Exception:
        return None
    columns = list(stored.columns)
    wanted = tiles[columns].reset_index(drop=True)
    found = wanted.reset_index(names="_want").merge(stored.reset_index(names="_have"), on=columns, how="left")
    if len(found) != len(wanted) or found["_have"].isna().any() or found["_have"].duplicated().any():
        return None
    return images[found.sort_values("_want")["_have"].to_numpy(dtype=np.int64)]


def build_tilepack(
    tiles: pd.DataFrame,
    image_size: int,
    ws: Workspace,
    read_tile: ReadTile | None = None,
    progress: Progress | None = None,
    workers: int = 2,
) -> TilePack:
    """Pack `tiles` (rows of a tile index, in order) at `image_size`; reuses a valid pack on disk.

    `read_tile(row, out_size=None)` defaults to core.tiles.index.read_tile; with workers > 1 it must be
    picklable (a module-level function). workers <= 1 reads in this process.
    """
    if len(tiles) == 0:
        raise DataError(None, "no tiles to pack: the tile index has no selected tiles that passed QC")
    size = int(image_size)
    folder = ws.cache_dir / "tilepacks"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{pack_key(tiles, size)}.npy"
    shape = (len(tiles), size, size, 3)
    images = _open_pack(path, shape)
    if images is not None:
        if progress:
            progress(len(tiles), len(tiles), "tile pack reused")
        return TilePack(path, images, tiles)
    reordered = _reordered(folder, tiles, size, shape)
    if reordered is not None:
        tmp = temp_path_for(path)
        try:
            with tmp.open("wb") as handle:  # a handle: np.save would add .npy to the temp name
                np.save(handle, reordered)
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
        _remember_order(folder, path, tiles, size)
        if progress:
            progress(len(tiles), len(tiles), "tile pack reused (reordered)")
        return TilePack(path, _open_pack(path, shape), tiles)

    reader = read_tile or _default_read_tile()
    records = tiles.to_dict("records")
    chunks = [records[i : i + _CHUNK] for i in range(0, len(records), _CHUNK)]
    tmp = temp_path_for(path)
    out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=shape)
    try:
        done = 0
        if workers > 1:
            # spawn, not fork: a forked child would inherit the worker lock and torch's thread state.
            with ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn")) as pool:
                results = pool.map(_read_chunk, [reader] * len(chunks), chunks, [size] * len(chunks))
                for chunk, block in zip(chunks, results, strict=True):
                    out[done : done + len(chunk)] = block
                    done += len(chunk)
                    if progress:
                        progress(done, len(tiles), "packing tiles")
        else:
            for chunk in chunks:
                out[done : done + len(chunk)] = _read_chunk(reader, chunk, size)
                done += len(chunk)
                if progress:
                    progress(done, len(tiles), "packing tiles")
        out.flush()
        del out
        os.replace(tmp, path)  # readers only ever see a complete pack
    finally:
        tmp.unlink(missing_ok=True)
    images = _open_pack(path, shape)
    if images is None:
        raise DataError(path, "tile pack was written but cannot be read back (disk full?)")
    _remember_order(folder, path, tiles, size)
    return TilePack(path, images, tiles)
