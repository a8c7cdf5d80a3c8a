"""The full-resolution QC metrics as they were before core.tiles.qc computed them in one sampled pass
(a verbatim copy of the numpy code): the reference the fast metrics must agree with."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image
from scipy import ndimage

from core.tiles.qc import QcParams


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


def reference_metrics(tile: np.ndarray, params: QcParams | None = None) -> dict[str, float]:
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
