"""`render_slide`: one synthetic H&E slide as a level-0 RGB array (outline, tissue, stains, artifacts)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from PIL import Image
from scipy import ndimage

from core.demo.canvas import DRAW_SCALE, Canvas, resize_field
from core.demo.spec import FACTORS, MPP, TISSUES
from core.demo.tissues import PAINTERS, common_features

# Optical density per unit stain (R, G, B); exp(-OD) is transmitted light.
_HEMATOXYLIN = np.array([1.16, 1.45, 0.53], dtype=np.float32)  # nuclei: blue-purple
_EOSIN = np.array([0.15, 1.04, 0.47], dtype=np.float32)  # cytoplasm, collagen: pink
_BLOOD = np.array([0.25, 1.55, 1.25], dtype=np.float32)  # red cells: orange-red
_GLASS = np.array([0.035, 0.038, 0.03], dtype=np.float32)


def _outline(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """Irregular tissue pieces (one or two) covering about 55-70% of the slide, draw resolution."""
    h, w = max(8, height // 16), max(8, width // 16)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    two = rng.random() < 0.3
    centres = [(0.5, 0.29), (0.5, 0.71)] if two else [(0.5, 0.5)]
    level = np.full((h, w), -np.inf, np.float32)
    for cy, cx in centres:
        ry, rx = (0.43, 0.2) if two else (0.42, 0.44)
        cy, cx = cy + rng.uniform(-0.03, 0.03), cx + rng.uniform(-0.03, 0.03)
        dy, dx = (yy / h - cy) / ry, (xx / w - cx) / rx
        radius = np.hypot(dy, dx)
        theta = np.arctan2(dy, dx)
        wobble = sum(
            rng.uniform(0, 0.1 / k**0.5) * np.cos(k * theta + rng.uniform(0, 2 * math.pi)) for k in (2, 3, 4, 6)
        )
        level = np.maximum(level, 1.0 + wobble - radius)
    small_noise = resize_field(
        rng.standard_normal((max(2, h // 6), max(2, w // 6))).astype(np.float32), (h, w), Image.BICUBIC
    )
    level = level + 0.06 * small_noise
    return resize_field(level, (height, width)) > 0


def _ink(color: str) -> np.ndarray:
    """Optical density of marker ink."""
    rgb = {"green": (40, 150, 70), "blue": (30, 70, 200), "black": (22, 22, 26)}[color]
    return -np.log(np.asarray(rgb, np.float32) / 255.0)


def _curve_points(rng: np.random.Generator, box: tuple[float, float, float, float], n: int) -> np.ndarray:
    """Points (y, x) along a smooth random stroke spanning `box` (x, y, w, h) diagonally."""
    x, y, w, h = box
    t = np.linspace(0.0, 1.0, n)
    bend = rng.uniform(-0.25, 0.25, 2)
    xs = x + w * np.clip(t + bend[0] * np.sin(math.pi * t), 0, 1)
    rising = rng.random() < 0.5
    ys = y + h * np.clip((1 - t if rising else t) + bend[1] * np.sin(2 * math.pi * t), 0, 1)
    return np.stack([ys, xs])


def _artifact_od(c: Canvas, artifacts: list[dict[str, Any]], rng: np.random.Generator) -> tuple[np.ndarray, float]:
    """Extra optical density from pen strokes and dust specks; folds scale the tissue's own OD."""
    extra = np.zeros((c.h, c.w, 3), np.float32)
    fold = np.zeros((c.h, c.w), np.float32)
    for art in artifacts:
        box = tuple(v / DRAW_SCALE for v in (art["x"], art["y"], art["w"], art["h"]))
        if art["kind"] == "pen":
            ink = np.zeros((c.h, c.w), np.float32)
            pts = _curve_points(rng, box, 400).astype(np.int32)
            c.stamp(ink, pts, art["width_um"] / 2, None, 0.0, 1.0)
            np.minimum(ink, 1.0, out=ink)
            extra += ink[..., None] * _ink(art["color"])[None, None, :] * 1.1
        elif art["kind"] == "dust":
            x, y, w, h = box
            n = int(rng.integers(40, 120))
            specks = np.stack([rng.uniform(y, y + h, n), rng.uniform(x, x + w, n)]).astype(np.int32)
            dark = np.zeros((c.h, c.w), np.float32)
            c.stamp(dark, specks, rng.uniform(2, 12, n), rng.uniform(1.5, 8, n), None, rng.uniform(0.8, 2.2, n))
            extra += dark[..., None] * np.array([1.0, 1.0, 0.95], np.float32)
        elif art["kind"] == "fold":
            pts = _curve_points(rng, box, 300).astype(np.int32)
            c.stamp(fold, pts, art["width_um"] / 2, None, 0.0, 1.0)
    return extra, fold


def _apply_pixel_artifacts(rgb: np.ndarray, artifacts: list[dict[str, Any]], rng: np.random.Generator) -> None:
    """Blur and dirt patches act on the finished level-0 RGB (in place), after the grain."""
    h, w, _ = rgb.shape
    for art in artifacts:
        x0, y0 = int(art["x"]), int(art["y"])
        x1, y1 = min(w, x0 + int(art["w"])), min(h, y0 + int(art["h"]))
        if art["kind"] not in ("blur", "dust") or x1 <= x0 or y1 <= y0:
            continue
        crop = rgb[y0:y1, x0:x1].astype(np.float32)
        yy, xx = np.mgrid[0 : y1 - y0, 0 : x1 - x0].astype(np.float32)
        ellipse = np.hypot((yy / (y1 - y0) - 0.5) * 2, (xx / (x1 - x0) - 0.5) * 2)
        if art["kind"] == "blur":
            # Out of focus: strong gaussian blur, feathered at the edge of an ellipse.
            sigma = art["sigma_um"] / MPP
            blurred = ndimage.gaussian_filter(crop, sigma=(sigma, sigma, 0), truncate=2.5)
            alpha = np.clip((1.0 - ellipse) * 5, 0, 1)[..., None]
        else:
            # A greyish dirt smudge: mottled, but the same in every channel (little colour variance).
            alpha = np.clip((0.75 - ellipse) * 6, 0, 1)[..., None] * 0.95
            mottle = ndimage.gaussian_filter(rng.standard_normal(crop.shape[:2]).astype(np.float32), 3.0)
            mottle *= 7.0 / max(float(mottle.std()), 1e-6)
            blurred = np.array(art["grey"], np.float32) + mottle[..., None]
        rgb[y0:y1, x0:x1] = np.round(crop * (1 - alpha) + blurred * alpha).clip(0, 255).astype(np.uint8)


def _add_grain(rgb: np.ndarray, rng: np.random.Generator, strength: float = 0.11) -> np.ndarray:
    """Pixel-scale texture at level 0, as real scans have (granular stain, chromatin, sensor noise).

    Scaled by how dark each pixel is, so glass stays clean; one random patch is tiled (with an
    odd period, so it never lines up with tiles) instead of drawing 10 M random numbers.
    """
    h, w, _ = rgb.shape
    period = 509
    patch = (rng.standard_normal((period, period)) * strength * 256).astype(np.int16)
    # On int16 ((255 - green) * grain >> 8, subtracted and clipped), the patch applied block by block
    # instead of tiled into a slide-sized array, one channel at a time: an (h, w, 3) array broadcast
    # against (h, w, 1) runs numpy's inner loop 3 items long (1.4x slower).
    amount = np.subtract(255, rgb[..., 1], dtype=np.int16)  # darkness in green: the channel both stains absorb
    for top in range(0, h, period):
        for left in range(0, w, period):
            block = amount[top : top + period, left : left + period]
            block *= patch[: block.shape[0], : block.shape[1]]
    amount >>= 8
    out = np.empty((h, w, 3), np.uint8)
    channel = np.empty((h, w), np.int16)
    for ch in range(3):
        np.subtract(rgb[..., ch], amount, out=channel, dtype=np.int16)
        np.clip(channel, 0, 255, out=channel)
        out[..., ch] = channel
    return out


def _transmitted_rgb(
    hema: np.ndarray,
    eosin: np.ndarray,
    blood: np.ndarray,
    inside: np.ndarray,
    extra: np.ndarray,
    hema_od: np.ndarray,
    eosin_od: np.ndarray,
    sensor: np.ndarray,
) -> np.ndarray:
    """uint8 RGB light through the stains: exp(-OD) * 255 plus sensor noise, OD = stains * `inside` + glass + `extra`.

    One colour plane at a time, in place: the same float32 operations in the same order as on an
    (h, w, 3) array, without its temporaries and its 3-item inner loops.
    """
    rgb = np.empty((*hema.shape, 3), np.uint8)
    plane = np.empty(hema.shape, np.float32)
    term = np.empty(hema.shape, np.float32)
    for ch in range(3):
        np.multiply(hema, hema_od[ch], out=plane)
        plane += np.multiply(eosin, eosin_od[ch], out=term)
        plane += np.multiply(blood, _BLOOD[ch], out=term)
        plane *= inside
        plane += _GLASS[ch]
        plane += extra[..., ch]
        np.negative(plane, out=plane)
        np.exp(plane, out=plane)
        plane *= 255.0
        plane += sensor
        np.clip(plane, 0, 255, out=plane)
        rgb[..., ch] = plane
    return rgb


def render_slide(
    tissue: str,
    factors: dict[str, float],
    width: int,
    height: int,
    seed: int | list[int],
    artifacts: list[dict[str, Any]] | None = None,
) -> np.ndarray:
    """The level-0 RGB (height, width, 3) uint8 image of one synthetic H&E slide.

    `factors` holds the four FACTORS in [0, 1]; `artifacts` are dicts with `kind` and a level-0
    box (x, y, w, h) as planned by `plan_cohort`.
    """
    if tissue not in PAINTERS:
        raise ValueError(f"no painter for tissue {tissue!r}; known: {', '.join(TISSUES)}")
    rng = np.random.default_rng(seed)
    dh, dw = -(-height // DRAW_SCALE), -(-width // DRAW_SCALE)
    c = Canvas(rng, dh, dw, {name: float(factors[name]) for name in FACTORS})
    c.tissue = _outline(rng, dh, dw)
    PAINTERS[tissue](c)
    common_features(c, tissue)
    extra, fold = _artifact_od(c, artifacts or [], rng)
    # Per-slide stain strength varies, as between staining batches.
    hema_od = _HEMATOXYLIN * rng.uniform(0.88, 1.12) * rng.uniform(0.96, 1.04, 3).astype(np.float32)
    eosin_od = _EOSIN * rng.uniform(0.85, 1.15) * rng.uniform(0.96, 1.04, 3).astype(np.float32)
    grain = rng.random((dh, dw), dtype=np.float32)
    nuclei = c.nuclei * (0.72 + 0.5 * grain)  # chromatin texture
    hema = np.maximum(c.hema, 0) + nuclei
    eosin = np.maximum(c.eosin, 0) * (0.94 + 0.12 * grain)
    inside = c.tissue.astype(np.float32) * (1.0 + 0.9 * fold)  # a fold doubles the section
    sensor = rng.normal(0.0, 1.6, (dh, dw)).astype(np.float32)
    rgb = _transmitted_rgb(hema, eosin, c.blood, inside, extra, hema_od, eosin_od, sensor)
    image = Image.fromarray(rgb).resize((dw * DRAW_SCALE, dh * DRAW_SCALE), Image.BILINEAR)
    level0 = _add_grain(np.asarray(image)[:height, :width], rng)
    _apply_pixel_artifacts(level0, artifacts or [], rng)
    return level0
