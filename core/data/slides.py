"""The one slide reader of the project: whole-slide images and plain images through slideio.

The slideio driver is chosen from the file's content (magic bytes, TIFF ImageDescription), the
extension only breaks ties, so uploaded temp files with odd names (``tmpab12``) open too.
Regions are read with ``Scene.read_block(rect, size)`` at the nearest pyramid level at or above the
requested output size (a downsampled read never decodes level 0 when a closer level exists), then
reduced by an area filter (slideio's own resize aliases).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

import numpy as np
import slideio
import tifffile
from PIL import Image

from core.base.errors import DataError, DataWarning

DEFAULT_MAGNIFICATION = 20.0
DEFAULT_MPP = 0.5

# Resolutions outside this range (µm/px) are not microscope metadata: PNG/JPEG carry 72 dpi
# (~353 µm/px) and plain TIFFs often a placeholder of 1 (m/px).
_MPP_RANGE = (0.05, 20.0)
# Objective powers scanners report; an MPP-derived magnification is snapped to the nearest one.
_STANDARD_MAGNIFICATIONS = (2.5, 5.0, 10.0, 20.0, 40.0, 60.0, 80.0)

_TIFF_MAGIC = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")  # classic and BigTIFF
_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
_JPEG_MAGIC = b"\xff\xd8\xff"
_CZI_MAGIC = b"ZISRAWFILE"

DRIVER_BY_EXTENSION = {
    ".svs": "SVS",
    ".ndpi": "NDPI",
    ".scn": "SCN",
    ".czi": "CZI",
    ".ome.tif": "OMETIFF",
    ".ome.tiff": "OMETIFF",
    ".tif": "GDAL",
    ".tiff": "GDAL",
    ".png": "GDAL",
    ".jpg": "GDAL",
    ".jpeg": "GDAL",
}
# Every slide file name the project reads; longest first so "x.ome.tiff" loses ".ome.tiff", not just ".tiff".
SLIDE_EXTENSIONS: tuple[str, ...] = tuple(sorted(DRIVER_BY_EXTENSION, key=len, reverse=True))
_TIFF_DRIVERS = {"SVS", "NDPI", "SCN", "OMETIFF"}
# Cells read as one block by Slide.read_tiles (a row of 16 cells of 448 px is 9.6 MB).
RUN_CELLS = 16


@dataclass(frozen=True)
class SlideInfo:
    path: str
    driver: str
    width: int
    height: int
    levels: list[tuple[int, int, float]]  # (width, height, downsample from level 0)
    magnification: float
    mpp: float
    magnification_assumed: bool
    mpp_assumed: bool
    # Extension of the contract: odd-but-usable facts (e.g. 16-bit grayscale shown as 8-bit RGB).
    warnings: list[str] = field(default_factory=list)
    scene: int = 0  # which scene of the file (CZI, SCN and some OME-TIFFs hold several sections)
    scenes: int = 1  # how many scenes the file holds
    channels: int = 3  # channels stored in the file (1: grayscale, shown as grey RGB)
    bit_depth: int = 8  # bits per stored sample (16: a 16-bit grayscale image scaled to 8 bits)


def _extension(path: Path) -> str:
    name = path.name.lower()
    for ext in (".ome.tiff", ".ome.tif"):
        if name.endswith(ext):
            return ext
    return path.suffix.lower()


def _tiff_driver(path: Path, ext: str) -> str:
    """SVS/NDPI/SCN/OME-TIFF/plain TIFF from the first image directory; checks for truncation."""
    if ext in (".ndpi", ".scn"):
        return DRIVER_BY_EXTENSION[ext]
    try:
        with tifffile.TiffFile(path) as tif:
            if not tif.pages:
                raise DataError(path, "truncated or corrupt TIFF: no readable image directory")
            page = tif.pages[0]
            description = page.description or ""
            _check_tiff_data_in_file(path, page)
            if tif.is_ndpi:
                return "NDPI"
            if tif.is_scn:
                return "SCN"
    except DataError:
        raise
    except Exception as exc:  # tifffile raises many types on broken files
        raise DataError(path, f"truncated or corrupt TIFF ({exc})") from exc
    if description.startswith("Aperio"):
        return "SVS"
    if "<OME" in description[:4096] or ext in (".ome.tif", ".ome.tiff"):
        return "OMETIFF"
    return "GDAL"


def _check_tiff_data_in_file(path: Path, page: tifffile.TiffPage) -> None:
    """A copy cut short keeps its header but loses image tiles; catch that before slideio reads zeros."""
    offsets = np.asarray(page.dataoffsets, dtype=np.int64)
    counts = np.asarray(page.databytecounts, dtype=np.int64)
    if offsets.size:
        end = int((offsets + counts).max())
        size = path.stat().st_size
        if end > size:
            raise DataError(path, f"truncated: image data ends at byte {end} but the file has {size} bytes")


def detect_driver(path: str | Path) -> str:
    """The slideio driver for a file, from its content first and its extension second."""
    path = Path(path)
    if not path.exists():
        raise DataError(path, "file not found")
    if not path.is_file():
        raise DataError(path, "not a file")
    try:
        with path.open("rb") as handle:
            head = handle.read(16)
    except OSError as exc:
        raise DataError(path, f"cannot read file ({exc.strerror or exc})") from exc
    ext = _extension(path)
    if not head:
        raise DataError(path, "empty file")
    if head[:4] in _TIFF_MAGIC:
        return _tiff_driver(path, ext)
    if head.startswith(_PNG_MAGIC) or head.startswith(_JPEG_MAGIC):
        return "GDAL"
    if head.startswith(_CZI_MAGIC):
        return "CZI"
    if ext in DRIVER_BY_EXTENSION:
        kind = "TIFF" if DRIVER_BY_EXTENSION[ext] in _TIFF_DRIVERS or ext in (".tif", ".tiff") else ext[1:].upper()
        raise DataError(path, f"not a slide: extension says {kind} but the content starts with {head[:8]!r}")
    raise DataError(path, f"unsupported file type (content starts with {head[:8]!r}); expected a slide or image")


def _real_mpp(resolution: tuple[float, float]) -> float | None:
    """µm/px from slideio's resolution (metres), or None when it is absent or a placeholder."""
    if not resolution or not resolution[0] or not math.isfinite(resolution[0]):
        return None
    mpp = float(resolution[0]) * 1e6
    return mpp if _MPP_RANGE[0] <= mpp <= _MPP_RANGE[1] else None


class Slide:
    """An open slide (context manager) showing one scene; coordinates are level-0 pixels of that scene."""

    def __init__(self, path: str | Path, scene: int = 0) -> None:
        path = Path(path)
        driver = detect_driver(path)
        try:
            self._slide = slideio.open_slide(str(path), driver)
            if self._slide.num_scenes < 1:
                raise DataError(path, "the file holds no image")
            if not 0 <= scene < self._slide.num_scenes:
                raise DataError(path, f"scene {scene} asked, but the file holds {self._slide.num_scenes} scene(s)")
            self._scene = self._slide.get_scene(scene)
            self._scene_index, self._scene_count = scene, self._slide.num_scenes
        except DataError:
            raise
        except Exception as exc:  # slideio raises RuntimeError with a C++ source path
            raise DataError(path, f"cannot open as a {driver} slide (corrupt or truncated?)") from exc
        self.path = path
        self._grayscale_scale: float | None = None
        self.info = self._read_info(driver)
        for message in self.info.warnings:
            warnings.warn(f"{path}: {message}", DataWarning, stacklevel=3)  # the open_slide caller

    def _read_info(self, driver: str) -> SlideInfo:
        scene, notes = self._scene, []
        channels = scene.num_channels
        dtype = np.dtype(scene.get_channel_data_type(0))
        if channels not in (1, 3, 4):
            raise DataError(self.path, f"unsupported: {channels} channels (expected RGB brightfield)")
        if dtype == np.uint16 and channels == 1:
            # Readable, but not H&E: show it scaled to 8 bits (by its significant bits) as grey RGB.
            bits = scene.get_channel_significant_bits(0) or 16
            self._grayscale_scale = 255.0 / (2 ** min(bits, 16) - 1)
            notes.append("16-bit grayscale image shown as 8-bit RGB; it is not an H&E slide")
        elif dtype != np.uint8:
            raise DataError(self.path, f"unsupported: {channels}-channel {dtype} image (expected 8-bit RGB)")
        _, _, width, height = scene.rect
        if width <= 0 or height <= 0:
            raise DataError(self.path, "the image has no pixels")
        levels = []
        for index in range(max(scene.num_zoom_levels, 1)):
            level = scene.get_zoom_level_info(index)
            size = level.size
            levels.append((int(size.width), int(size.height), float(width) / max(int(size.width), 1)))
        mpp = _real_mpp(scene.resolution)
        magnification = float(scene.magnification or 0.0)
        magnification_assumed = magnification <= 0
        if magnification_assumed:
            # An MPP without a magnification still pins the scale (~10 µm / magnification).
            guess = 10.0 / mpp if mpp else DEFAULT_MAGNIFICATION
            magnification = min(_STANDARD_MAGNIFICATIONS, key=lambda m: abs(math.log(m / guess)))
            notes.append(f"no magnification in metadata; assuming {magnification:g}x")
        mpp_assumed = mpp is None
        if mpp_assumed:
            mpp = DEFAULT_MPP * DEFAULT_MAGNIFICATION / magnification
            notes.append(f"no microns-per-pixel in metadata; assuming {mpp:g}")
        return SlideInfo(
            path=str(self.path),
            driver=driver,
            width=int(width),
            height=int(height),
            levels=levels,
            magnification=float(magnification),
            mpp=float(mpp),
            magnification_assumed=magnification_assumed,
            mpp_assumed=mpp_assumed,
            warnings=notes,
            scene=self._scene_index,
            scenes=self._scene_count,
            channels=int(channels),
            bit_depth=8 * dtype.itemsize,
        )

    def read_region(
        self, x: int, y: int, w: int, h: int, out_size: int | tuple[int, int] | None = None
    ) -> np.ndarray:
        """uint8 RGB (H, W, 3) of the level-0 box; `out_size` (w, h) or longest side resamples it.

        A smaller `out_size` is read from the nearest pyramid level at or above it and then reduced
        by an area (box) filter: slideio's own resize aliases (fine stain texture turns to noise,
        and 20x and 40x scans of one tissue would give differently aliased tiles)."""
        self._check_box(x, y, w, h)
        size = _out_size(w, h, out_size)
        if size[0] >= w and size[1] >= h:  # same size (or upsampled: nothing to alias)
            return self._read_block(x, y, w, h, (0, 0) if size == (w, h) else size)
        downsample = self._level_downsample(min(w / size[0], h / size[1]))
        level_size = (max(size[0], round(w / downsample)), max(size[1], round(h / downsample)))
        return area_resize(self._read_block(x, y, w, h, level_size), size)

    def read_tiles(self, xs: np.ndarray, ys: np.ndarray, size: int, out_size: int) -> Iterator[np.ndarray]:
        """read_region(x, y, size, size, out_size) of each cell, in order, with the same pixels.

        Cells that follow each other along a row at level 0 are read as one block (at most
        RUN_CELLS): a 448 px cell spans 2-3 of a scanner's 240 px JPEG tiles each way, and reading
        cell by cell decodes every shared tile again, about 1.7x the work of reading the row."""
        level0 = out_size >= size or self._level_downsample(size / out_size) == 1.0
        start, count = 0, len(xs)
        while start < count:
            end = start + 1
            while (level0 and out_size <= size and end < count and end - start < RUN_CELLS
                   and ys[end] == ys[start] and xs[end] == xs[end - 1] + size):
                end += 1
            if end - start == 1:
                yield self.read_region(int(xs[start]), int(ys[start]), size, size, out_size=(out_size, out_size))
            else:
                x, y, width = int(xs[start]), int(ys[start]), (end - start) * size
                self._check_box(x, y, width, size)
                row = self._read_block(x, y, width, size, (0, 0))
                for k in range(end - start):
                    cell = row[:, k * size : (k + 1) * size]
                    yield cell.copy() if out_size == size else area_resize(cell, (out_size, out_size))
            start = end

    def _check_box(self, x: int, y: int, w: int, h: int) -> None:
        info = self.info
        if w <= 0 or h <= 0 or x < 0 or y < 0 or x + w > info.width or y + h > info.height:
            raise DataError(self.path, f"region ({x}, {y}, {w}, {h}) is outside the {info.width}x{info.height} slide")

    def _level_downsample(self, downsample: float) -> float:
        """Downsample of the coarsest pyramid level whose resolution is still at or above the target."""
        return max((level[2] for level in self.info.levels if level[2] <= downsample * 1.001), default=1.0)

    def _read_block(self, x: int, y: int, w: int, h: int, size: tuple[int, int]) -> np.ndarray:
        try:
            block = self._scene.read_block((int(x), int(y), int(w), int(h)), size=size)
        except Exception as exc:
            problem = f"cannot read region ({x}, {y}, {w}, {h}): corrupt or truncated image data"
            raise DataError(self.path, problem) from exc
        return self._to_rgb(block)

    def _to_rgb(self, block: np.ndarray) -> np.ndarray:
        if self._grayscale_scale is not None:
            block = np.clip(block.astype(np.float32) * self._grayscale_scale + 0.5, 0, 255).astype(np.uint8)
        if block.ndim == 2:
            block = block[:, :, None]
        if block.shape[2] == 1:
            block = np.repeat(block, 3, axis=2)
        elif block.shape[2] == 4:
            block = block[:, :, :3]  # alpha carries nothing for brightfield
        return np.ascontiguousarray(block, dtype=np.uint8)

    def thumbnail(self, max_side: int = 1024) -> tuple[np.ndarray, float]:
        """(uint8 RGB thumbnail, level-0 pixels per thumbnail pixel) from one downsampled read."""
        info = self.info
        scale = max(1.0, max(info.width, info.height) / max_side)
        size = (max(1, round(info.width / scale)), max(1, round(info.height / scale)))
        image = self.read_region(0, 0, info.width, info.height, out_size=size)
        return image, info.width / image.shape[1]

    def close(self) -> None:
        for handle in (getattr(self, "_scene", None), getattr(self, "_slide", None)):
            if handle is not None:
                handle.close()
        self._scene = self._slide = None

    def __enter__(self) -> Slide:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def _out_size(w: int, h: int, out_size: int | tuple[int, int] | None) -> tuple[int, int]:
    if out_size is None:
        return (w, h)
    if isinstance(out_size, int):
        scale = out_size / max(w, h)
        return (max(1, round(w * scale)), max(1, round(h * scale)))
    return (int(out_size[0]), int(out_size[1]))


def area_resize(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """uint8 RGB `image` reduced to `size` (w, h) by area averaging (an exact block mean for whole factors)."""
    height, width = image.shape[:2]
    if (width, height) == tuple(size):
        return image
    picture = Image.fromarray(image)
    factor = width // size[0]
    if factor * size[0] == width and factor * size[1] == height:
        return np.asarray(picture.reduce(factor))
    return np.asarray(picture.resize(tuple(size), Image.Resampling.BOX))


def open_slide(path: str | Path, scene: int = 0) -> Slide:
    """Open one scene of a slide or image; raises DataError naming the file when it cannot be read."""
    return Slide(path, scene)


def slide_info(path: str | Path, scene: int = 0) -> SlideInfo:
    with open_slide(path, scene) as slide:
        return slide.info
