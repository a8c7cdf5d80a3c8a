"""Histological building blocks shared by the tissue painters: stroma, fat, vessels, glands, epithelia."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from scipy import ndimage

from core.demo.canvas import FIELD_SCALE, Canvas, resize_field


def stroma(c: Canvas, region: np.ndarray, density: float = 0.55, wavelength: float = 9.0) -> None:
    """Wavy pink collagen with sparse spindle fibroblasts, on a field-resolution boolean region."""
    theta = c.rng.uniform(0, math.pi)
    fibres = c.stripes(theta, wavelength, warp_um=80.0) * (c.noise(30) > -0.3)  # broken, not endless, fibres
    dens = density * (1.0 + 0.3 * c.factors["fibrosis"])
    c.add(0.02, dens * (0.7 + 0.35 * fibres) * (1 + 0.12 * c.noise(60)), where=region)
    points = c.scatter(region.astype(np.float32), 1.6)
    c.nuclei_at(points, 4.5, 1.3, theta, 0.95)


def fat(c: Canvas, region: np.ndarray, cell_um: float = 75.0) -> None:
    """Adipocytes over a field-resolution region: empty polygons, thin membranes, a few flat nuclei."""
    if not region.any():
        return
    f1, f2, _, _ = c.worley(cell_um, warp_um=cell_um * 0.25)
    edge = c.up(f2 - f1)  # ~2x distance to the membrane, upsampled before thresholding: thin, crisp
    inside = c.up(region.astype(np.float32))
    c.carve(inside)
    membrane = np.clip(1.0 - (edge - 1.2) / 1.5, 0.0, 1.0) * inside
    c.hema += 0.03 * membrane
    c.eosin += 0.55 * membrane
    points = c.scatter(region & (f2 - f1 < 4.0), 3.0)
    c.nuclei_at(points, 4.0, 1.4, None, 0.9)


def lymphocytes(c: Canvas, density: np.ndarray | float, per_10k_um2: float) -> None:
    """Small round very dark nuclei (lymphocytes)."""
    points = c.scatter(density, per_10k_um2)
    c.nuclei_at(points, 3.1, None, 0.0, 1.45)


def blob(c: Canvas, cy: float, cx: float, radius_um: float) -> np.ndarray:
    """Soft irregular disc (field resolution) in [0, 1], radius about `radius_um`."""
    noise = c.noise(radius_um * 0.8)
    # Non-zero only where d < 1.5 - 0.25 * noise: compute inside that reach's box (same numbers, less work).
    reach = radius_um * (1.5 - 0.25 * float(noise.min())) + 2 * FIELD_SCALE
    rows = slice(max(0, int((cy - reach) // FIELD_SCALE)), max(0, min(c.fh, int((cy + reach) // FIELD_SCALE) + 2)))
    cols = slice(max(0, int((cx - reach) // FIELD_SCALE)), max(0, min(c.fw, int((cx + reach) // FIELD_SCALE) + 2)))
    d = np.hypot(c.fy[rows, cols] - cy, c.fx[rows, cols] - cx) / radius_um
    inside = np.clip(1.5 - d - 0.25 * noise[rows, cols], 0.0, 1.0)
    out = np.zeros((c.fh, c.fw), inside.dtype)
    out[rows, cols] = inside
    return out


def random_in_tissue(c: Canvas, n: int) -> np.ndarray:
    """`n` random draw-px points (y, x) inside the tissue (none if there is no tissue)."""
    ys, xs = np.nonzero(c.tissue[::8, ::8])
    if ys.size == 0 or n <= 0:
        return np.zeros((2, 0), np.int32)
    pick = c.rng.integers(0, ys.size, n)
    return np.stack([ys[pick] * 8, xs[pick] * 8]).astype(np.int32)


def tissue_area_mm2(c: Canvas) -> float:
    return float(c.tissue[::4, ::4].sum()) * 16 / 1e6


def vessels(c: Canvas, per_mm2: float, radius: tuple[float, float] = (10.0, 30.0)) -> None:
    """Small vessels: a pink wall with flat endothelial nuclei around a lumen holding red cells."""
    centres = random_in_tissue(c, int(c.rng.poisson(per_mm2 * tissue_area_mm2(c))))
    if centres.shape[1] == 0:
        return
    n = centres.shape[1]
    r = c.rng.uniform(*radius, n).astype(np.float32)
    squash = c.rng.uniform(0.6, 1.0, n).astype(np.float32)
    angle = c.rng.uniform(0, math.pi, n).astype(np.float32)
    c.cut(centres, r + 6, r * squash + 6, angle)
    c.stamp(c.eosin, centres, r + 5, r * squash + 5, angle, 0.6)
    c.cut(centres, r, r * squash, angle)
    for (cy, cx), rr in zip(centres.T, r, strict=True):
        cells = np.array([[cy], [cx]]) + c.rng.normal(0, rr * 0.35, (2, int(rr)))
        c.stamp(c.blood, cells.astype(np.int32), 3.5, 3.5, 0.0, 0.85)
        around = c.rng.uniform(0, 2 * math.pi, max(3, int(rr / 4)))
        rim = np.array([[cy], [cx]]) + np.stack([np.sin(around), np.cos(around)]) * (rr + 2)
        c.nuclei_at(rim.astype(np.int32), 4.0, 1.3, around + math.pi / 2, 0.9)


def glands(
    c: Canvas, centres: np.ndarray, radius: Any, lumen: float, cell_eosin: float, nucleus_um: float = 3.4
) -> None:
    """Round glands, acini, tubules: a ring of epithelium with nuclei near its base, open lumen."""
    n = centres.shape[1]
    if n == 0:
        return
    r = np.broadcast_to(np.asarray(radius, np.float32), (n,))
    c.cut(centres, r + 3)
    c.stamp(c.eosin, centres, r, None, 0.0, cell_eosin)
    c.cut(centres, r * lumen)
    per_gland = np.maximum(4, (2 * math.pi * r / 7 * min(c.cellularity, 1.2)).astype(int))
    owner = np.repeat(np.arange(n), per_gland)
    around = c.rng.uniform(0, 2 * math.pi, owner.size)
    depth = r[owner] * c.rng.uniform(0.72, 0.9, owner.size)
    pts = centres[:, owner] + np.stack([np.sin(around), np.cos(around)]) * depth
    c.nuclei_at(pts.astype(np.int32), nucleus_um, nucleus_um * 0.8, around, 1.0)


def depth_from_surface(c: Canvas, facing: float) -> np.ndarray:
    """Field-resolution distance (um) into the tissue from its edge facing direction `facing` (rad)."""
    small = c.tissue[::8, ::8]
    ys, xs = np.nonzero(small)
    if ys.size == 0:
        return np.full((c.fh, c.fw), 1e4, np.float32)
    yy, xx = np.mgrid[0 : small.shape[0], 0 : small.shape[1]]
    # Background on the chosen side of the tissue's centre counts as "outside the surface".
    side = (yy - ys.mean()) * math.sin(facing) + (xx - xs.mean()) * math.cos(facing) > 0
    outside = np.pad(~small & side, 1, constant_values=False)
    outside[0 if math.sin(facing) < 0 else -1, :] = True  # the slide edge on that side too
    depth = ndimage.distance_transform_edt(~outside)[1:-1, 1:-1].astype(np.float32) * 8.0
    return resize_field(depth, (c.fh, c.fw))


def squamous(
    c: Canvas, depth: np.ndarray, thickness: np.ndarray, keratin_um: Any, cell_um: float = 15.0, pale: float = 0.0
) -> np.ndarray:
    """Stratified squamous epithelium from depth 0 to `thickness` (um, field arrays).

    Cells get pinker and flatter toward the surface, a dense dark basal layer sits at the bottom,
    laminated anucleate keratin covers the top `keratin_um`. Returns the epithelium region.
    """
    rel = np.clip(depth / np.maximum(thickness, 1.0), 0.0, 1.0)  # 0 surface .. 1 basal
    epi = (depth >= keratin_um) & (depth < thickness)
    f1, f2, _, points = c.worley(cell_um, warp_um=3.0)
    border = np.clip(1.0 - (f2 - f1) / 2.5, 0.0, 1.0)
    cyto = 0.58 - 0.22 * rel - pale * np.clip(1 - np.abs(rel - 0.5) * 3, 0, 1)
    c.add(0.05 + 0.1 * rel, cyto * (1.0 - 0.4 * border), where=epi)
    keratin = (depth < keratin_um) & (depth >= 0)
    if keratin.any():
        lamellae = c.stripes(0.0, 5.0, warp_um=20.0)
        c.add(0.0, 0.64 * (lamellae > 0.3), where=keratin)
        c.carve(c.up((keratin & (lamellae <= 0.3)).astype(np.float32)) * 0.8)
    # One nucleus per cell, smaller and flatter toward the surface.
    keep = c.at(epi, points) & (c.rng.random(points.shape[1]) < 0.55 + 0.4 * c.factors["nuclear_density"])
    pts = points[:, keep]
    r = c.at(rel, pts)
    c.nuclei_at(pts, 3.0 + 1.0 * (1 - r), np.maximum(1.1, 3.0 * r), 0.0, 0.8 + 0.2 * r)
    basal = (depth > thickness - 14.0) & (depth < thickness)
    c.nuclei_at(c.scatter(basal.astype(np.float32), 110.0), 3.2, 2.4, None, 1.2)
    return epi


def smooth_muscle(c: Canvas, region: np.ndarray, base_angle: float) -> None:
    """Fascicles of pink fibrillar cytoplasm with cigar-shaped nuclei along them."""
    if not region.any():
        return
    theta = base_angle
    fibrils = c.stripes(theta, 5.0, warp_um=50.0)
    c.add(0.05, 0.6 + 0.14 * fibrils, where=region)
    points = c.scatter(region.astype(np.float32), 9.0)
    c.nuclei_at(points, 6.5, 1.6, theta, 0.95)
