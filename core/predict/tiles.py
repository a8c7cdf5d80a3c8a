"""Steps 1-2 for one slide: read it (info, thumbnail, tissue mask) and QC every tissue cell of its grid.

The grid, the tissue mask and the QC are the training data's own (core.tiles.plan.plan_slide and
core.tiles.run.run_slides, the functions `tiles --all-tiles` runs), at the run's tiling parameters, so a
predicted slide's tiles are cut and filtered like the tiles the model learnt from. One difference: the
JPEG-size stage's bar depends on the tissue, which is what is being predicted, so the most lenient bar of
the run's tissues is used (fat and lung compress small even when they are good tissue).
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from core.base.errors import DataError, DataWarning
from core.data.dataset import UNKNOWN_TISSUE
from core.data.slides import open_slide
from core.tiles.index import TilingParams
from core.tiles.mask import tissue_mask
from core.tiles.parts import TilePart
from core.tiles.plan import mask_thumbnail_side, plan_slide, read_size_for
from core.tiles.qc import QC_STAGES
from core.tiles.run import SlideTask, run_slides

THUMB_SIDE = 1024  # the thumbnail the heatmaps are drawn over
# A slide coarser than this many times the run's tile resolution would be upsampled too far to look like
# the training tiles (a 10x scan for a 20x model is 2x: allowed, with the plan's warning).
MAX_UPSAMPLE = 2.0
# Colour spread (max - min channel, 0-255) under which a stained pixel is not coloured at all.
_GREY_SPREAD = 6
_MIN_COLOUR_SHARE = 0.002


@dataclass
class SlideTiles:
    info: dict[str, Any]
    thumbnail: np.ndarray  # uint8 RGB
    thumb_scale: float  # level-0 px per thumbnail px
    tissue_mask: np.ndarray  # bool, thumbnail shape
    tiles: pd.DataFrame  # one row per considered cell: scene, x, y, read_size, passed_qc, reason (grid order)
    summary: dict[str, Any]  # considered, kept, rejected {stage: n}
    warnings: list[str]


def predict_tiling_params(params: TilingParams, classes: list[str] | tuple[str, ...]) -> TilingParams:
    """The run's tiling over the full grid, with the most lenient JPEG-size bar of the run's tissues."""
    bars = [params.jpeg_kb.get(c, params.jpeg_kb_default) for c in classes] or [params.jpeg_kb_default]
    return replace(params, all_tiles=True, jpeg_kb_default=float(min(bars)))


def _check_colour(path: Path, thumbnail: np.ndarray, channels: int) -> None:
    """Grayscale input is no H&E slide: one channel, or RGB with no colour anywhere."""
    if channels == 1:
        raise DataError(path, "grayscale image (one channel): the model needs an RGB H&E slide")
    spread = thumbnail.max(axis=2).astype(np.int16) - thumbnail.min(axis=2)
    dark_enough = thumbnail.max(axis=2) < 235  # glass is white in every stain
    if dark_enough.any() and (spread[dark_enough] > _GREY_SPREAD).mean() < _MIN_COLOUR_SHARE:
        raise DataError(path, "grayscale image (no colour in any pixel): the model needs an RGB H&E slide")


def read_slide(path: Path, params: TilingParams) -> tuple[dict[str, Any], np.ndarray, float, np.ndarray, list[str]]:
    """(info, thumbnail, scale, tissue mask, warnings); DataError for unreadable, grey or too coarse slides."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", DataWarning)
        with open_slide(path) as slide:
            info = slide.info
            read_size, rule = read_size_for(info, params.tile_size, params.magnification)
            thumbnail, scale = slide.thumbnail(THUMB_SIDE)
    # The plan's tissue mask reads the same thumbnail when it is the display size (slides under ~57,000 px):
    # handed over, so a slide without a pyramid (the whole image decoded per thumbnail) is decoded once.
    shared = mask_thumbnail_side(info, read_size) == THUMB_SIDE
    notes = list(info.warnings)
    if info.bit_depth > 8:
        raise DataError(path, f"{info.bit_depth}-bit image: the model needs an 8-bit RGB H&E slide")
    _check_colour(path, thumbnail, info.channels)
    target_mpp = 10.0 / params.magnification
    if read_size * MAX_UPSAMPLE < params.tile_size:
        raise DataError(path, f"resolution too low for the run: {info.mpp:g} µm/px ({info.magnification:g}x"
                              f"{', assumed' if info.magnification_assumed else ''}); the model was trained on "
                              f"{target_mpp:g} µm/px tiles and at most {MAX_UPSAMPLE:g}x upsampling is allowed")
    if min(info.width, info.height) < read_size:
        raise DataError(path, f"image of {info.width}x{info.height} px is smaller than one tile "
                              f"({read_size} px at {info.mpp:g} µm/px)")
    mask = tissue_mask(thumbnail, params.mask_saturation, um_per_px=scale * info.mpp)
    facts = {
        "width": info.width, "height": info.height, "magnification": info.magnification,
        "magnification_assumed": info.magnification_assumed, "mpp": info.mpp, "mpp_assumed": info.mpp_assumed,
        "driver": info.driver, "scenes": info.scenes, "read_size": read_size, "tile_size": params.tile_size,
        "tile_sizing": rule, "mask_thumbnail": shared,
    }
    del caught  # the slide's own notes are in info.warnings; nothing else is worth repeating
    return facts, thumbnail, scale, mask, notes


def _workers(cells: int) -> int:
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, min(cores, 8)) if cells > 0 else 1


def slide_tiles(path: str | Path, params: TilingParams, progress: Callable[[float, str], None] | None = None,
                workers: int | None = None, on_read: Callable[[], None] | None = None) -> SlideTiles:
    """Read the slide and QC every tissue cell of its grid with `params` (already predict_tiling_params).

    `on_read()` is called once the slide is read, then `progress(share of the QC in [0, 1], message)`.
    DataError naming the file for unreadable slides and for a slide with no tissue (or no tile passing QC)."""
    path = Path(path)
    info, thumbnail, scale, mask, notes = read_slide(path, params)
    if on_read is not None:
        on_read()
    if not mask.any():
        raise DataError(path, "no tissue found: the tissue mask of the slide is empty (blank or glass only)")
    with warnings.catch_warnings():  # its notes are the ones read_slide kept
        warnings.simplefilter("ignore", DataWarning)
        plan = plan_slide(str(path), params, (thumbnail, scale) if info.pop("mask_thumbnail") else None)
    notes += [n for n in plan.facts.get("warnings", []) if n not in notes]
    if len(plan) == 0:
        raise DataError(path, "no tissue found: no grid cell is at least "
                              f"{params.min_tissue_fraction:.0%} tissue on the tissue mask")
    task = SlideTask("slide", str(path), UNKNOWN_TISSUE, None, None, TilePart(plan=plan))
    total = len(plan)

    def cells(task: SlideTask, considered: int, passed: int) -> None:
        if progress is not None:
            progress(considered / max(total, 1), f"{considered:,} of {total:,} cells QC'd")

    chosen = workers if workers is not None else _workers(total)
    outcome = run_slides([task], params, Path(os.devnull), chosen, cells=cells)["slide"]
    if outcome.error is not None and outcome.transient:  # a worker died (memory, killed): not the file's fault
        raise RuntimeError(outcome.error)
    if outcome.error is not None:
        message = outcome.error
        prefix = f"{path}: "
        raise DataError(path, message[len(prefix):] if message.startswith(prefix) else message)
    part = outcome.part
    reasons = part.qc["reason"].astype(str)
    tiles = pd.DataFrame({
        "scene": plan.scene, "x": plan.x, "y": plan.y, "read_size": plan.read_size,
        "tissue_fraction": plan.tissue_fraction, "passed_qc": reasons == "", "reason": reasons,
    }).sort_values(["scene", "y", "x"], kind="stable").reset_index(drop=True)
    rejected = {stage: int((tiles["reason"] == stage).sum()) for stage in QC_STAGES}
    summary = {"considered": len(tiles), "kept": int(tiles["passed_qc"].sum()), "rejected": rejected}
    if summary["kept"] == 0:
        worst = max(rejected, key=rejected.get)
        raise DataError(path, f"no tissue found: none of the {len(tiles):,} tissue cells passed QC "
                              f"(most failed {worst})")
    if progress is not None:
        progress(1.0, f"{summary['kept']:,} of {summary['considered']:,} tiles passed QC")
    return SlideTiles(info, thumbnail, scale, mask, tiles, summary, notes)

