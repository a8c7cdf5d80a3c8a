"""One slide's tiling plan: tile size in microns, the grid of every scene, the cells that are mostly
tissue on the thumbnail mask, and a seeded order in which to QC them.

Tiles are a fixed physical size: `tile_size` px at `10 / magnification` µm per px (448 px at 20x =
224 µm). When the slide states its microns per pixel, the level-0 box is sized from it (a 0.44 µm/px
"20x" scan reads 509 px boxes, a 0.25 µm/px 40x scan 896 px); when it states only a magnification,
the magnification rule applies (40x -> 896 px).

Every scene that holds tissue is planned (CZI and SCN files may hold several sections); a scene
much coarser than the finest one (an overview or macro image stored as a scene) is skipped, and the
slide's facts say so. The cells are shuffled with a seed, so quota tiling reads a random sample of
the tissue and the same seed always reads the same cells.
"""

from __future__ import annotations

import math
import zlib
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from core.data.slides import Slide, SlideInfo, open_slide
from core.tiles.mask import tissue_mask

# A scene this many times coarser than the finest scene of the file is an overview, not a section.
_OVERVIEW_RATIO = 4.0
_SNAP = 0.02


@dataclass
class SlidePlan:
    """Candidate cells of one slide in their seeded QC order (one entry per cell in every array)."""

    scene: np.ndarray  # int32
    x: np.ndarray  # int64, level-0 px of the scene
    y: np.ndarray  # int64
    read_size: np.ndarray  # int32, level-0 box side
    level: np.ndarray  # int32, pyramid level slideio reads it from
    tissue_fraction: np.ndarray  # float32, share of the cell's thumbnail footprint that is tissue
    facts: dict[str, Any] = field(default_factory=dict)  # magnification, MPP, size, warnings, scenes

    def __len__(self) -> int:
        return int(self.x.size)

    def arrays(self) -> dict[str, np.ndarray]:
        return {name: getattr(self, name) for name in PLAN_COLUMNS}


PLAN_COLUMNS = ("scene", "x", "y", "read_size", "level", "tissue_fraction")
_PLAN_DTYPES = {"scene": np.int32, "x": np.int64, "y": np.int64, "read_size": np.int32, "level": np.int32,
                "tissue_fraction": np.float32}


def read_size_for(info: SlideInfo, tile_size: int, magnification: float) -> tuple[int, str]:
    """Level-0 box side for a `tile_size` px tile at `magnification` (µm rule when the MPP is known)."""
    by_magnification = max(1, round(tile_size * info.magnification / magnification))
    if not info.mpp_assumed:
        target_mpp = 10.0 / magnification  # 0.5 µm/px at 20x: the study's 448 px = 224 µm
        by_microns = max(1, round(tile_size * target_mpp / info.mpp))
        # Within 2% (an Aperio "20x" at 0.499 or 0.494 µm/px) the magnification's box is kept: the
        # physical size is within the scanner's own calibration, and the tile needs no resampling.
        if abs(by_microns - by_magnification) > _SNAP * by_magnification:
            return by_microns, "microns"
        return by_magnification, "microns (within 2% of the magnification)"
    return by_magnification, "magnification"


def level_for(info: SlideInfo, downsample: float) -> int:
    """The pyramid level slideio reads for this downsample: the coarsest one not below it."""
    best = 0
    for index, (_, _, level_downsample) in enumerate(info.levels):
        if level_downsample <= downsample * 1.01:
            best = index
    return best


def mask_thumbnail_side(info: SlideInfo, read_size: int) -> int:
    """The thumbnail side the tissue mask is computed on: each tile spans at least ~8 of its pixels, within
    memory reason."""
    return min(4096, max(1024, math.ceil(max(info.width, info.height) * 8 / read_size)))


def candidate_cells(slide: Slide, read_size: int, saturation: float, min_fraction: float,
                    thumbnail: tuple[np.ndarray, float] | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(x, y, tissue_fraction) of the full grid cells, row-major, whose thumbnail footprint is mostly tissue.
    `thumbnail`: the slide's `thumbnail(mask_thumbnail_side(...))` when the caller has read it already."""
    info = slide.info
    columns, rows = info.width // read_size, info.height // read_size
    if columns == 0 or rows == 0:
        empty = np.zeros(0, np.int64)
        return empty, empty, np.zeros(0, np.float32)
    thumb, scale = thumbnail if thumbnail is not None else slide.thumbnail(mask_thumbnail_side(info, read_size))
    mask = tissue_mask(thumb, saturation, um_per_px=scale * info.mpp).astype(np.float64)
    integral = np.pad(mask.cumsum(0).cumsum(1), ((1, 0), (1, 0)))

    def spans(starts: np.ndarray, limit: int) -> tuple[np.ndarray, np.ndarray]:
        low = (starts / scale).astype(np.int64)
        high = np.maximum(low + 1, np.minimum(limit, np.round((starts + read_size) / scale).astype(np.int64)))
        return low, high

    x0, x1 = spans(np.arange(columns, dtype=np.int64) * read_size, mask.shape[1])
    y0, y1 = spans(np.arange(rows, dtype=np.int64) * read_size, mask.shape[0])
    inside = (integral[y1[:, None], x1[None, :]] - integral[y0[:, None], x1[None, :]]
              - integral[y1[:, None], x0[None, :]] + integral[y0[:, None], x0[None, :]])
    fraction = inside / ((y1 - y0)[:, None] * (x1 - x0)[None, :])
    row, col = np.nonzero(fraction >= min_fraction)  # row-major, like the grid
    return col.astype(np.int64) * read_size, row.astype(np.int64) * read_size, fraction[row, col].astype(np.float32)


def _scene_facts(info: SlideInfo, read_size: int, rule: str) -> dict[str, Any]:
    return {
        "magnification": info.magnification,
        "magnification_assumed": info.magnification_assumed,
        "mpp": info.mpp,
        "mpp_assumed": info.mpp_assumed,
        "width": info.width,
        "height": info.height,
        "read_size": read_size,
        "tile_sizing": rule,
        "warnings": list(info.warnings),
    }


def plan_slide(path: str, params: Any, thumbnail: tuple[np.ndarray, float] | None = None) -> SlidePlan:
    """Open every scene of `path` and plan its cells (raises DataError naming the file when unreadable).
    `thumbnail`: scene 0's mask thumbnail (`mask_thumbnail_side`) when the caller has read it already."""
    slides = [open_slide(path)]
    try:
        slides += [open_slide(path, scene) for scene in range(1, slides[0].info.scenes)]
        infos = [slide.info for slide in slides]
        finest = min(info.mpp for info in infos)
        parts: dict[str, list[np.ndarray]] = {name: [] for name in PLAN_COLUMNS}
        facts: dict[str, Any] = {}
        skipped, tiled = [], []
        for slide, info in zip(slides, infos, strict=True):
            if info.mpp > _OVERVIEW_RATIO * finest:
                skipped.append(info.scene)
                continue
            read_size, rule = read_size_for(info, params.tile_size, params.magnification)
            scene_facts = _scene_facts(info, read_size, rule)
            if read_size < params.tile_size:
                scene_facts["warnings"].append(
                    f"slide is {info.mpp:g} µm/px ({info.magnification:g}x), coarser than the "
                    f"{10 / params.magnification:g} µm/px asked: tiles are upsampled"
                )
            level = level_for(info, read_size / params.tile_size)
            given = thumbnail if info.scene == 0 else None
            xs, ys, fraction = candidate_cells(slide, read_size, params.mask_saturation, params.min_tissue_fraction,
                                               given)
            if xs.size:
                tiled.append(info.scene)
            if not facts or (xs.size and len(tiled) == 1):
                facts = scene_facts  # the facts of the first scene with tissue (else scene 0)
            parts["scene"].append(np.full(xs.size, info.scene))
            parts["x"].append(xs)
            parts["y"].append(ys)
            parts["read_size"].append(np.full(xs.size, read_size))
            parts["level"].append(np.full(xs.size, level))
            parts["tissue_fraction"].append(fraction)
    finally:
        for slide in slides:
            slide.close()
    columns = {name: np.concatenate(values).astype(_PLAN_DTYPES[name]) for name, values in parts.items()}
    # Seeded by the slide's geometry, not its name or file identity: a renamed or copied slide
    # gets the same sample of cells.
    rng = np.random.default_rng([int(params.seed), zlib.crc32(f"{infos[0].width}x{infos[0].height}".encode())])
    order = rng.permutation(columns["x"].size)
    facts = dict(facts)
    facts["scenes"] = len(infos)
    facts["scenes_tiled"] = tiled
    if len(infos) > 1:
        facts["warnings"] = list(facts.get("warnings", []))
        if skipped:
            facts["warnings"].append(f"scenes {skipped} look like overview images (coarser resolution): not tiled")
        facts["warnings"].append(f"{len(infos)} scenes in the file; tiles taken from scenes {tiled}")
    return SlidePlan(**{name: values[order] for name, values in columns.items()}, facts=facts)
