"""Tile quality control: the QC stages, their thresholds and the per-tile metrics they read.

Stages run in QC_STAGES order; a tile's `reason` is the first stage it fails ("" when it passes).
Every metric is kept in the tile index, so thresholds can be re-tuned without re-reading slides.

- pen: marker-ink pixels (green, saturated blue, near black);
- dirt: grey pixels (dust, debris, smudges: unstained but darker than glass);
- half_empty: a connected run of flat, bright pieces larger than a fat cell (a strip of glass);
- blur: the blurriest stained piece has lost its fine detail relative to its stain;
- jpeg_size: the tile compresses below its tissue's bar (faint, low-information tissue).
"""

from __future__ import annotations

import io
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
from PIL import Image
from scipy import ndimage

from core.dataset import UNKNOWN_TISSUE
from core.slides import Slide

# Applied in this order; a tile's `reason` is the first stage it fails. Specific artifacts come first
# so each is named by its own stage (a blurred or dirty tile also compresses small); jpeg_size last
# catches what is left: faint, low-information tissue.
QC_STAGES = ("pen", "dirt", "half_empty", "blur", "jpeg_size")

# JPEG thresholds are tuned for 448 px tiles at quality 75 (on the demo cohort: about half the
# 2nd percentile of clean tiles per tissue); fat and lung are mostly empty adipocyte lumen or air
# and compress small even when they are good tissue, so they get lower bars.
DEFAULT_JPEG_KB: dict[str, float] = {
    "Adipose - Subcutaneous": 8.0,
    "Adipose - Visceral (Omentum)": 8.0,
    "Breast - Mammary Tissue": 9.0,
    "Lung": 11.0,
    "Skin - Not Sun Exposed (Suprapubic)": 10.0,
}
_REFERENCE_TILE = 448


@dataclass(frozen=True)
class QcParams:
    # QC thresholds, one group per stage of QC_STAGES (tuned on the demo cohort's truth.json).
    # pen: share of marker-ink pixels above this (real H&E reaches ~0.03: dark nuclei, JPEG fringes).
    max_pen_fraction: float = 0.05
    # dirt: share of grey pixels above this: saturation under dirt_saturation and value between
    # dirt_values (dust, debris, smudges; stain is pink to purple, glass brighter, ink darker).
    # Real H&E has up to ~0.004 of such pixels.
    max_grey_fraction: float = 0.01
    dirt_saturation: float = 0.1
    dirt_values: tuple[float, float] = (0.3, 0.75)
    # half_empty: the tile is cut into pieces x pieces; a piece is bare glass when its grey-level
    # SD is under min_piece_std AND its mean is brighter than blank_gray. The tile fails when one
    # 4-connected run of such pieces covers more than max_blank_share of it: with 112 px pieces,
    # two side by side (56 x 112 um) are larger than an adipocyte or alveolus lumen, so fat and
    # lung pass while a tissue edge with a strip of glass fails.
    pieces: int = 4
    min_piece_std: float = 5.0
    blank_gray: float = 200.0
    max_blank_share: float = 0.1
    # blur: sharpness (Laplacian variance over mean squared stain darkness) of the blurriest
    # piece that holds stain, so a half-blurred tile fails and pale fat is not called blurred.
    # Sharp real H&E (CMU-1) is >= 0.012, the demo's >= 0.2; a 1.2 px gaussian blur gives < 0.008.
    min_blur: float = 0.008
    # jpeg_size: JPEG bytes at this quality below the tissue's bar (KB at 448 px).
    jpeg_quality: int = 75
    jpeg_kb: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_JPEG_KB))
    jpeg_kb_default: float = 16.0

    def jpeg_kb_for(self, tissue: str, tile_size: int | None = None) -> float:
        """The tissue's JPEG-size bar in KB, scaled from 448 px tiles to `tile_size` (default: the params' own)."""
        tile_size = tile_size or getattr(self, "tile_size", _REFERENCE_TILE)
        base = self.jpeg_kb.get(tissue, self.jpeg_kb_default)
        return base * (tile_size / _REFERENCE_TILE) ** 2


def _planes(tile: np.ndarray) -> np.ndarray:
    """float32 (3, H, W) copy of an RGB tile: planar arrays make per-pixel max/min/std 10x faster."""
    return np.moveaxis(tile[..., :3], 2, 0).astype(np.float32)


def _gray(tile: np.ndarray) -> np.ndarray:
    red, green, blue = _planes(tile)
    return 0.299 * red + 0.587 * green + 0.114 * blue


def _pen_fraction(planes: np.ndarray) -> float:
    """Share of pixels in marker-ink colours: green/cyan, saturated blue, or near black.

    H&E is pink (eosin) to purple (hematoxylin, hue ~250-330 deg); pen ink and tissue dye are
    green, strongly saturated blue, or black, which stained tissue almost never is.
    """
    red, green, blue = planes[:, ::2, ::2] / 255.0  # a share needs no full resolution: 4x fewer pixels
    top = np.maximum(np.maximum(red, green), blue)
    spread = top - np.minimum(np.minimum(red, green), blue)
    saturation = spread / np.maximum(top, 1e-6)
    safe = np.maximum(spread, 1e-6)
    hue = 60.0 * np.where(
        top == red,
        ((green - blue) / safe) % 6.0,
        np.where(top == green, (blue - red) / safe + 2.0, (red - green) / safe + 4.0),
    )
    ink_green = (hue > 70) & (hue < 200) & (saturation > 0.2)
    ink_blue = (hue >= 200) & (hue < 240) & (saturation > 0.5)
    black = top < 0.12
    return float((ink_green | ink_blue | black).mean())


def _largest_run(blank: np.ndarray) -> int:
    """Pieces in the largest 4-connected group of True cells."""
    if not blank.any():
        return 0
    labels, _ = ndimage.label(blank)
    return int(np.bincount(labels.ravel())[1:].max())


def tile_metrics(tile: np.ndarray, params: QcParams | None = None) -> dict[str, float]:
    """QC metrics of one uint8 RGB tile: jpeg_kb, min_piece_std, min_channel_std, blur,
    pen_fraction, blank_share, grey_fraction (see QcParams for what each stage asks)."""
    params = params or QcParams()
    buffer = io.BytesIO()
    Image.fromarray(tile).save(buffer, format="JPEG", quality=params.jpeg_quality)
    planes = _planes(tile)
    red, green, blue = planes
    gray = 0.299 * red + 0.587 * green + 0.114 * blue
    top = np.maximum(np.maximum(red, green), blue)
    spread = top - np.minimum(np.minimum(red, green), blue)
    low, high = params.dirt_values
    grey = (spread < params.dirt_saturation * top) & (top >= low * 255) & (top < high * 255)

    n = params.pieces
    h, w = gray.shape[0] // n, gray.shape[1] // n  # pieces x pieces blocks (a remainder row is dropped)
    laplacian = np.zeros_like(gray)
    laplacian[1:-1, 1:-1] = gray[:-2, 1:-1] + gray[2:, 1:-1] + gray[1:-1, :-2] + gray[1:-1, 2:] - 4.0 * gray[1:-1, 1:-1]
    darkness = 255.0 - gray

    def per_piece(values: np.ndarray) -> np.ndarray:
        return values[: h * n, : w * n].reshape(n, h, n, w)

    piece_std = per_piece(gray).std(axis=(1, 3))
    piece_mean = per_piece(gray).mean(axis=(1, 3))
    blank = (piece_std < params.min_piece_std) & (piece_mean > params.blank_gray)
    # Focus relative to stain contrast: blur removes fine detail but keeps how dark the stain is.
    # Only pieces with some stain count (+100: pale pieces do not divide by ~0).
    stained = 255.0 - piece_mean > 15.0
    sharpness = per_piece(laplacian).var(axis=(1, 3)) / (per_piece(darkness * darkness).mean(axis=(1, 3)) + 100.0)
    return {
        "jpeg_kb": buffer.tell() / 1024.0,
        "min_piece_std": float(piece_std.min()),
        "min_channel_std": float(planes.reshape(3, -1).std(axis=1).min()),
        "blur": float(sharpness[stained].min()) if stained.any() else 0.0,
        "pen_fraction": _pen_fraction(planes),
        "blank_share": _largest_run(blank) / (n * n),
        "grey_fraction": float(grey.mean()),
    }


def qc_failures(metrics: Mapping[str, float], params: QcParams, tissue: str = UNKNOWN_TISSUE) -> dict[str, bool]:
    """Whether the tile fails each QC stage, every stage evaluated (for tuning and reports)."""
    return {
        "pen": metrics["pen_fraction"] > params.max_pen_fraction,
        "dirt": metrics["grey_fraction"] > params.max_grey_fraction,
        "half_empty": metrics["blank_share"] > params.max_blank_share,
        "blur": metrics["blur"] < params.min_blur,
        "jpeg_size": metrics["jpeg_kb"] < params.jpeg_kb_for(tissue),
    }


def qc_reason(metrics: Mapping[str, float], params: QcParams, tissue: str = UNKNOWN_TISSUE) -> str:
    """The first QC stage the tile fails, or "" when it passes them all."""
    failed = qc_failures(metrics, params, tissue)
    return next((stage for stage in QC_STAGES if failed[stage]), "")



# Metric columns read_and_qc returns (float32), in the tile index's order.
METRIC_COLUMNS = (
    "jpeg_kb", "min_piece_std", "min_channel_std", "blur", "pen_fraction", "blank_share", "grey_fraction",
)


def read_and_qc(
    slide: Slide,
    xs: np.ndarray,
    ys: np.ndarray,
    read_size: int,
    tile_size: int,
    params: QcParams,
    tissue: str = UNKNOWN_TISSUE,
) -> dict[str, np.ndarray]:
    """Read and QC a batch of cells of one open slide (level-0 boxes `read_size` square at xs, ys), each
    seen as a `tile_size` tile. Returns one array per METRIC_COLUMNS entry, plus `passed_qc` (bool) and
    `reason` (the first failed stage or ""), rows aligned with the cells."""
    n = len(xs)
    columns: dict[str, np.ndarray] = {name: np.empty(n, dtype=np.float32) for name in METRIC_COLUMNS}
    reasons = np.empty(n, dtype=object)
    for i, (x, y) in enumerate(zip(xs, ys, strict=True)):
        tile = slide.read_region(int(x), int(y), read_size, read_size, out_size=(tile_size, tile_size))
        metrics = tile_metrics(tile, params)
        for name in METRIC_COLUMNS:
            columns[name][i] = metrics[name]
        reasons[i] = qc_reason(metrics, params, tissue)
    columns["reason"] = reasons.astype(str) if n else np.array([], dtype=str)
    columns["passed_qc"] = columns["reason"] == ""
    return columns
