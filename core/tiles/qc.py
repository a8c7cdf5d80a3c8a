"""Tile quality control: the QC stages, each beside its own constants and threshold, and the one
pixel pass that measures them.

Stages run in QC_STAGES order; a tile's `reason` is the first stage it fails ("" when it passes).
Every metric is kept in the tile index, so thresholds can be re-tuned without re-reading slides.

- pen: marker-ink pixels (green, saturated blue, near black);
- dirt: grey pixels (dust, debris, smudges: unstained but darker than glass);
- half_empty: a connected run of flat, bright pieces larger than a fat cell (a strip of glass);
- blur: the blurriest stained piece has lost its fine detail relative to its stain;
- jpeg_size: the tile compresses below its tissue's bar (faint, low-information tissue).

Speed: QC must cost less than reading the tile. All pixel metrics come from one compiled pass that
looks at every second pixel of every second row (a share, a standard deviation or a variance is
estimated as well from a quarter of the pixels; the Laplacian at those pixels still uses their
full-resolution neighbours, so focus is measured at full resolution). The JPEG size is estimated
from the 2x box-reduced tile and the full tile is encoded only when the estimate lands near the
tissue's bar, so the decision stays the one the full-resolution encoding gives.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import imagecodecs
import numpy as np
from numba import njit
from scipy import ndimage

from core.data.dataset import UNKNOWN_TISSUE
from core.data.slides import Slide

Metrics = Mapping[str, float]

# ---------------------------------------------------------------------------------------------
# Stage pen: marker ink. H&E is pink (eosin) to purple (hematoxylin, hue ~250-330 deg); pen ink
# and tissue dye are green, strongly saturated blue, or black, which stained tissue almost never is.
PEN_GREEN_HUE = (70.0, 200.0)  # degrees, open interval, with saturation above PEN_GREEN_SATURATION
PEN_GREEN_SATURATION = 0.2
PEN_BLUE_HUE = (200.0, 240.0)  # degrees, [low, high), with saturation above PEN_BLUE_SATURATION
PEN_BLUE_SATURATION = 0.5
PEN_BLACK_VALUE = 0.12  # HSV value (max channel / 255) below this is black ink
# Real H&E reaches a share of ~0.03 (dark nuclei, JPEG fringes).
MAX_PEN_FRACTION = 0.05


def fails_pen(metrics: Metrics, params: QcParams, tissue: str) -> bool:
    return metrics["pen_fraction"] > params.max_pen_fraction


# ---------------------------------------------------------------------------------------------
# Stage dirt: grey pixels (saturation under DIRT_SATURATION, value between DIRT_VALUES): dust,
# debris, smudges. Stain is pink to purple, glass brighter, ink darker. Real H&E has up to ~0.004.
DIRT_SATURATION = 0.1
DIRT_VALUES = (0.3, 0.75)
MAX_GREY_FRACTION = 0.01


def fails_dirt(metrics: Metrics, params: QcParams, tissue: str) -> bool:
    return metrics["grey_fraction"] > params.max_grey_fraction


# ---------------------------------------------------------------------------------------------
# Stage half_empty (the GTEx filter): the tile is cut into PIECES x PIECES; a piece is bare glass
# when its grey-level SD is under MIN_PIECE_STD and its mean brighter than BLANK_GRAY. The tile
# fails when one 4-connected run of such pieces covers more than MAX_BLANK_SHARE of it: with
# 112 px pieces, two side by side (56 x 112 um) are larger than an adipocyte or alveolus lumen,
# so fat and lung pass while a tissue edge with a strip of glass fails.
PIECES = 4
MIN_PIECE_STD = 5.0
BLANK_GRAY = 200.0
MAX_BLANK_SHARE = 0.1


def _largest_run(blank: np.ndarray) -> int:
    """Pieces in the largest 4-connected group of True cells."""
    if not blank.any():
        return 0
    labels, _ = ndimage.label(blank)
    return int(np.bincount(labels.ravel())[1:].max())


def blank_share(piece_mean: np.ndarray, piece_std: np.ndarray, params: QcParams) -> float:
    blank = (piece_std < params.min_piece_std) & (piece_mean > params.blank_gray)
    return _largest_run(blank) / blank.size


def fails_half_empty(metrics: Metrics, params: QcParams, tissue: str) -> bool:
    return metrics["blank_share"] > params.max_blank_share


# ---------------------------------------------------------------------------------------------
# Stage blur: sharpness (Laplacian variance over mean squared stain darkness) of the blurriest
# piece that holds stain (mean darkness above BLUR_STAINED_DARKNESS), so a half-blurred tile fails
# and pale fat is not called blurred; BLUR_DARKNESS_FLOOR keeps pale pieces from dividing by ~0.
# Sharp real H&E (CMU-1) is >= 0.012, the demo's >= 0.2; a 1.2 px gaussian blur gives < 0.008.
BLUR_STAINED_DARKNESS = 15.0
BLUR_DARKNESS_FLOOR = 100.0
MIN_BLUR = 0.008


def sharpness(piece_mean: np.ndarray, laplacian_var: np.ndarray, darkness_sq: np.ndarray) -> float:
    """Focus relative to stain contrast: blur removes fine detail but keeps how dark the stain is."""
    stained = 255.0 - piece_mean > BLUR_STAINED_DARKNESS
    ratio = laplacian_var / (darkness_sq + BLUR_DARKNESS_FLOOR)
    return float(ratio[stained].min()) if stained.any() else 0.0


def fails_blur(metrics: Metrics, params: QcParams, tissue: str) -> bool:
    return metrics["blur"] < params.min_blur


# ---------------------------------------------------------------------------------------------
# Stage jpeg_size: JPEG bytes at JPEG_QUALITY below the tissue's bar. Bars are tuned for 448 px
# tiles (on the demo cohort: about half the 2nd percentile of clean tiles per tissue); fat and lung
# are mostly empty adipocyte lumen or air and compress small even when they are good tissue.
JPEG_QUALITY = 75
DEFAULT_JPEG_KB: dict[str, float] = {
    "Adipose - Subcutaneous": 8.0,
    "Adipose - Visceral (Omentum)": 8.0,
    "Breast - Mammary Tissue": 9.0,
    "Lung": 11.0,
    "Skin - Not Sun Exposed (Suprapubic)": 10.0,
}
JPEG_KB_DEFAULT = 16.0
_REFERENCE_TILE = 448
# KB of the full tile ~= JPEG_HALF_SCALE * (KB of its 2x box-reduced copy) ** JPEG_HALF_POWER: a
# least-squares fit on 184 tiles of the real CMU-1 scan and the GTEx-size benchmark slide (at most
# 16% off). Within JPEG_EXACT_BAND of the bar the full tile is encoded, so no decision rests on it.
JPEG_HALF_SCALE = 2.316
JPEG_HALF_POWER = 1.063
JPEG_EXACT_BAND = 0.3


def jpeg_kb(tile: np.ndarray, quality: int) -> float:
    return len(imagecodecs.jpeg8_encode(tile, level=quality)) / 1024.0


def fails_jpeg_size(metrics: Metrics, params: QcParams, tissue: str) -> bool:
    return metrics["jpeg_kb"] < params.jpeg_kb_for(tissue)


# ---------------------------------------------------------------------------------------------
# The stages, in the order they are applied. Specific artifacts come first so each is named by its
# own stage (a blurred or dirty tile also compresses small); jpeg_size last catches what is left.
Stage = Callable[[Metrics, "QcParams", str], bool]
STAGES: dict[str, Stage] = {
    "pen": fails_pen,
    "dirt": fails_dirt,
    "half_empty": fails_half_empty,
    "blur": fails_blur,
    "jpeg_size": fails_jpeg_size,
}
QC_STAGES = tuple(STAGES)


@dataclass(frozen=True)
class QcParams:
    # The tunable thresholds of the stages above (defaults are the stages' constants).
    max_pen_fraction: float = MAX_PEN_FRACTION
    max_grey_fraction: float = MAX_GREY_FRACTION
    dirt_saturation: float = DIRT_SATURATION
    dirt_values: tuple[float, float] = DIRT_VALUES
    pieces: int = PIECES
    min_piece_std: float = MIN_PIECE_STD
    blank_gray: float = BLANK_GRAY
    max_blank_share: float = MAX_BLANK_SHARE
    min_blur: float = MIN_BLUR
    jpeg_quality: int = JPEG_QUALITY
    jpeg_kb: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_JPEG_KB))
    jpeg_kb_default: float = JPEG_KB_DEFAULT
    # How the metrics are computed (part of every cache key built from the params): 2 = sampled pass.
    metrics_version: int = 2

    def jpeg_kb_for(self, tissue: str, tile_size: int | None = None) -> float:
        """The tissue's JPEG-size bar in KB, scaled from 448 px tiles to `tile_size` (default: the params' own)."""
        tile_size = tile_size or getattr(self, "tile_size", _REFERENCE_TILE)
        base = self.jpeg_kb.get(tissue, self.jpeg_kb_default)
        return base * (tile_size / _REFERENCE_TILE) ** 2


# ---------------------------------------------------------------------------------------------
# The pixel pass

# Tiles at least this large are measured on every second pixel and JPEG-estimated from a half copy;
# smaller ones (thumbnails, tests at 64 px) on every pixel.
SAMPLED_FROM = 256


@njit(cache=True, nogil=True)
def _pixel_pass(tile, step, n, grey_low, grey_high, grey_saturation):  # pragma: no cover - compiled
    """One pass over a uint8 RGB tile. Returns (counts [samples, grey, pen], channel sums [6], piece
    sums [5, n, n] of count, gray, gray^2, laplacian, laplacian^2) over the pixels (i, j) with i and j
    multiples of `step`; the Laplacian of a sampled pixel uses its full-resolution neighbours."""
    height, width = tile.shape[0], tile.shape[1]
    gray = np.empty((height, width), np.float32)
    for i in range(height):
        for j in range(width):
            gray[i, j] = (np.float32(0.299) * np.float32(tile[i, j, 0]) + np.float32(0.587) * np.float32(tile[i, j, 1])
                          + np.float32(0.114) * np.float32(tile[i, j, 2]))
    piece_h, piece_w = height // n, width // n
    counts = np.zeros(3, np.int64)
    channels = np.zeros(6)
    pieces = np.zeros((5, n, n))
    black = PEN_BLACK_VALUE * 255.0
    for i in range(0, height, step):
        for j in range(0, width, step):
            r, g, b = float(tile[i, j, 0]), float(tile[i, j, 1]), float(tile[i, j, 2])
            counts[0] += 1
            channels[0] += r
            channels[1] += g
            channels[2] += b
            channels[3] += r * r
            channels[4] += g * g
            channels[5] += b * b
            top = max(r, max(g, b))
            spread = top - min(r, min(g, b))
            if spread < grey_saturation * top and top >= grey_low and top < grey_high:
                counts[1] += 1
            if top < black:
                counts[2] += 1
            elif spread > 0.0 and top != r:  # red on top: hue 300-60 deg, never ink
                if top == g:
                    hue = 60.0 * ((b - r) / spread + 2.0)
                else:
                    hue = 60.0 * ((r - g) / spread + 4.0)
                saturation = spread / top
                if PEN_GREEN_HUE[0] < hue < PEN_GREEN_HUE[1] and saturation > PEN_GREEN_SATURATION:
                    counts[2] += 1
                elif PEN_BLUE_HUE[0] <= hue < PEN_BLUE_HUE[1] and saturation > PEN_BLUE_SATURATION:
                    counts[2] += 1
            if i < piece_h * n and j < piece_w * n:
                v = gray[i, j]
                lap = 0.0
                if 0 < i < height - 1 and 0 < j < width - 1:
                    lap = gray[i - 1, j] + gray[i + 1, j] + gray[i, j - 1] + gray[i, j + 1] - 4.0 * v
                pi, pj = i // piece_h, j // piece_w
                pieces[0, pi, pj] += 1.0
                pieces[1, pi, pj] += v
                pieces[2, pi, pj] += v * v
                pieces[3, pi, pj] += lap
                pieces[4, pi, pj] += lap * lap
    return counts, channels, pieces


@njit(cache=True, nogil=True)
def _half(tile):  # pragma: no cover - compiled
    """The 2x box-reduced copy of a uint8 RGB tile (rounded mean of each 2 x 2 block)."""
    height, width = tile.shape[0] // 2, tile.shape[1] // 2
    out = np.empty((height, width, 3), np.uint8)
    for i in range(height):
        for j in range(width):
            for c in range(3):
                total = (np.uint16(tile[2 * i, 2 * j, c]) + np.uint16(tile[2 * i + 1, 2 * j, c])
                         + np.uint16(tile[2 * i, 2 * j + 1, c]) + np.uint16(tile[2 * i + 1, 2 * j + 1, c]))
                out[i, j, c] = (total + 2) // 4
    return out


def _jpeg_metric(tile: np.ndarray, params: QcParams, tissue: str | None, sampled: bool) -> float:
    """KB of the tile as JPEG: estimated from the half copy, encoded in full near the tissue's bar."""
    if not sampled:
        return jpeg_kb(tile, params.jpeg_quality)
    size = tile.shape[1]
    estimate = JPEG_HALF_SCALE * jpeg_kb(_half(tile), params.jpeg_quality) ** JPEG_HALF_POWER
    tissues = [tissue] if tissue is not None else [*params.jpeg_kb, UNKNOWN_TISSUE]
    if any(abs(estimate / params.jpeg_kb_for(t, size) - 1.0) <= JPEG_EXACT_BAND for t in tissues):
        return jpeg_kb(tile, params.jpeg_quality)
    return float(estimate)


def tile_metrics(tile: np.ndarray, params: QcParams | None = None, tissue: str | None = None) -> dict[str, float]:
    """QC metrics of one uint8 RGB tile: jpeg_kb, min_piece_std, min_channel_std, blur,
    pen_fraction, blank_share, grey_fraction (see the stages above for what each asks).

    With `tissue`, the JPEG size is exact only near that tissue's bar (estimated elsewhere); without
    it, near any bar of the params."""
    params = params or QcParams()
    tile = np.ascontiguousarray(tile[..., :3], dtype=np.uint8)
    sampled = min(tile.shape[:2]) >= SAMPLED_FROM
    low, high = params.dirt_values
    counts, channels, pieces = _pixel_pass(
        tile, 2 if sampled else 1, params.pieces, low * 255.0, high * 255.0, params.dirt_saturation
    )
    samples = float(counts[0])
    channel_mean = channels[:3] / samples
    channel_var = np.maximum(channels[3:] / samples - channel_mean**2, 0.0)
    count, gray_sum, gray_sq, lap_sum, lap_sq = pieces
    piece_mean = gray_sum / count
    piece_var = np.maximum(gray_sq / count - piece_mean**2, 0.0)
    laplacian_var = np.maximum(lap_sq / count - (lap_sum / count) ** 2, 0.0)
    darkness_sq = 255.0**2 - 2 * 255.0 * piece_mean + gray_sq / count  # mean of (255 - gray)^2
    piece_std = np.sqrt(piece_var)
    return {
        "jpeg_kb": _jpeg_metric(tile, params, tissue, sampled),
        "min_piece_std": float(piece_std.min()),
        "min_channel_std": float(np.sqrt(channel_var).min()),
        "blur": sharpness(piece_mean, laplacian_var, darkness_sq),
        "pen_fraction": float(counts[2]) / samples,
        "blank_share": blank_share(piece_mean, piece_std, params),
        "grey_fraction": float(counts[1]) / samples,
    }


def warm_up() -> None:
    """Compile (or load from numba's on-disk cache) the pixel pass: `make run`, `make bench` and the
    Docker build run this once, so a fresh clone's first tiling run does not spend ~8 s compiling."""
    tile_metrics(np.zeros((SAMPLED_FROM, SAMPLED_FROM, 3), np.uint8))


def qc_failures(metrics: Metrics, params: QcParams, tissue: str = UNKNOWN_TISSUE) -> dict[str, bool]:
    """Whether the tile fails each QC stage, every stage evaluated (for tuning and reports)."""
    return {name: bool(stage(metrics, params, tissue)) for name, stage in STAGES.items()}


def qc_reason(metrics: Metrics, params: QcParams, tissue: str = UNKNOWN_TISSUE) -> str:
    """The first QC stage the tile fails, or "" when it passes them all."""
    return next((name for name, stage in STAGES.items() if stage(metrics, params, tissue)), "")


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
    tiles = slide.read_tiles(xs, ys, read_size, tile_size)
    for i, tile in enumerate(tiles):
        metrics = tile_metrics(tile, params, tissue)
        for name in METRIC_COLUMNS:
            columns[name][i] = metrics[name]
        reasons[i] = qc_reason(metrics, params, tissue)
    columns["reason"] = reasons.astype(str) if n else np.array([], dtype=str)
    columns["passed_qc"] = columns["reason"] == ""
    return columns
