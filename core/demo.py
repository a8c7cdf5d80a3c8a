"""The synthetic GTEx-like demo cohort: real-format files (Aperio SVS, Portal CSV, GCT) made offline.

`make_demo_cohort(out_dir)` writes a dataset folder laid out like a GTEx download:

- `slides/<Tissue Sample ID>.svs`: pyramidal Aperio SVS (tiled JPEG level 0, a stripped thumbnail
  second, a 4x-downsampled tiled level, then label and macro pages) that slideio's SVS driver opens;
- `GTEx_Portal_histology.csv`: the Portal's histology table, same header and quoting;
- `GTEx_demo_gene_tpm.gct.gz`: GCT 1.2 of TPM values keyed by RNA sample IDs;
- `truth.json`: what was planted: per-slide morphology factors, the genes they drive, artifacts.

Slides are painted procedurally in optical-density space (haematoxylin + eosin, Beer-Lambert), so
colours mix like real stains. Four per-slide morphology factors in [0, 1] change what is drawn
AND shift the expression of a few genes, so image-to-gene models have something real to find.
Everything derives from one seed: the same arguments give byte-identical files.
"""

from __future__ import annotations

import csv
import fcntl
import gzip
import io
import json
import math
import multiprocessing
import shutil
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import tifffile
from PIL import Image
from scipy import ndimage

from core.config import Workspace
from core.errors import DataError
from core.fileio import atomic_write_bytes, atomic_write_json

# Bump when the generator's output changes, so an existing demo folder is regenerated.
GENERATOR_VERSION = "1"

TISSUES = (
    "Adipose - Subcutaneous",
    "Breast - Mammary Tissue",
    "Esophagus - Mucosa",
    "Esophagus - Gastroesophageal Junction",
    "Skin - Sun Exposed (Lower leg)",
    "Skin - Not Sun Exposed (Suprapubic)",
    "Lung",
    "Liver",
    "Muscle - Skeletal",
    "Thyroid",
)
# Pairs the GTEx image study found hardest to tell apart; here they share most of their drawing.
HARD_PAIRS = (
    ("Adipose - Subcutaneous", "Breast - Mammary Tissue"),
    ("Esophagus - Mucosa", "Esophagus - Gastroesophageal Junction"),
    ("Skin - Sun Exposed (Lower leg)", "Skin - Not Sun Exposed (Suprapubic)"),
)
FACTORS = ("nuclear_density", "adipocyte_fraction", "immune_infiltrate", "fibrosis")
ARTIFACT_KINDS = ("pen", "blur", "dust", "fold")
# RNA from these tissues has no slide, as GTEx whole blood has no histology.
RNA_ONLY_TISSUES = ("Whole Blood",)

HISTOLOGY_HEADER = (
    "Tissue Sample ID",
    "Tissue",
    "Subject ID",
    "Sex",
    "Age Bracket",
    "Hardy Scale",
    "Pathology Categories",
    "Pathology Notes",
)
HISTOLOGY_CSV = "GTEx_Portal_histology.csv"
EXPRESSION_GCT = "GTEx_demo_gene_tpm.gct.gz"
TRUTH_JSON = "truth.json"
SLIDES_DIR = "slides"
# Written last: its presence means the folder is complete.
COMPLETE_MARKER = ".demo_complete.json"
LOCK_NAME = "demo.lock"

MPP = 0.5  # level-0 microns per pixel ("20x")
APP_MAG = 20
DEFAULT_SLIDE_SIZE = (3584, 3072)  # level-0 width, height: ~30-45 tissue tiles of 448 px
DEFAULT_DONORS = 11
DEFAULT_GENES = 3000

ProgressFn = Callable[[int, int, str], None]


# =============================================================================================
# Painting: optical-density layers at 1 um/px ("draw" resolution, half of level 0), coarse
# fields at 2 um/px, upsampled to level 0 at the end.

# Optical density per unit stain (R, G, B); exp(-OD) is transmitted light.
_HEMATOXYLIN = np.array([1.16, 1.45, 0.53], dtype=np.float32)  # nuclei: blue-purple
_EOSIN = np.array([0.15, 1.04, 0.47], dtype=np.float32)  # cytoplasm, collagen: pink
_BLOOD = np.array([0.25, 1.55, 1.25], dtype=np.float32)  # red cells: orange-red
_GLASS = np.array([0.035, 0.038, 0.03], dtype=np.float32)
_DRAW_SCALE = 2  # level-0 px per draw px; at 0.5 um/px level 0 a draw px is 1 um
_FIELD_SCALE = 2  # draw px per field px (2 um)


def _resize(field: np.ndarray, shape: tuple[int, int], resample: int = Image.BILINEAR) -> np.ndarray:
    """Float32 2-D array resampled to `shape` (rows, cols) by PIL (fast, deterministic)."""
    if field.shape == shape:
        return field.astype(np.float32, copy=False)
    image = Image.fromarray(np.ascontiguousarray(field, dtype=np.float32), mode="F")
    return np.asarray(image.resize((shape[1], shape[0]), resample), dtype=np.float32)


@lru_cache(maxsize=512)
def _ellipse_sprite(a: float, b: float, angle_bin: int, ring: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Offsets (dy, dx) and soft values of a filled ellipse (semi-axes a >= b px, 12 angle bins).

    `ring` > 0 hollows it: values fall to 0 inside radius fraction `ring` (lumens, rims).
    """
    angle = angle_bin * math.pi / 12
    half = int(math.ceil(a)) + 1
    dy, dx = np.mgrid[-half : half + 1, -half : half + 1].astype(np.float32)
    u = (dx * math.cos(angle) + dy * math.sin(angle)) / a
    v = (-dx * math.sin(angle) + dy * math.cos(angle)) / b
    r = np.sqrt(u * u + v * v)
    # Soft edge one pixel wide, rim a little darker than the centre (nuclear membrane).
    edge = np.clip((1.0 - r) * min(a, b) + 0.5, 0.0, 1.0)
    values = edge * (0.8 + 0.2 * np.clip(r, 0, 1))
    if ring > 0:
        values = values * np.clip((r - ring) * min(a, b) + 0.5, 0.0, 1.0)
    keep = values > 0.02
    return dy[keep].astype(np.int32), dx[keep].astype(np.int32), values[keep].astype(np.float32)


class _Canvas:
    """One slide being painted: stain layers at draw resolution plus helpers to fill them.

    Painting is ordered like a collage: `carve`/`cut` make empty space (lumens, fat vacuoles, air)
    by removing what was painted before; what is painted afterwards sits on top.
    """

    def __init__(self, rng: np.random.Generator, height: int, width: int, factors: dict[str, float]) -> None:
        self.rng = rng
        self.h, self.w = height, width
        self.fh, self.fw = -(-height // _FIELD_SCALE), -(-width // _FIELD_SCALE)
        self.factors = factors
        self.hema = np.zeros((height, width), np.float32)
        self.eosin = np.zeros((height, width), np.float32)
        self.blood = np.zeros((height, width), np.float32)
        self.nuclei = np.zeros((height, width), np.float32)  # max-combined nucleus sprites
        self.open = np.zeros((height, width), np.float32)  # carved-out share, for later placement
        self.tissue = np.ones((height, width), bool)
        # Scales every scattered cell count: the nuclear_density factor.
        self.cellularity = 0.6 + 0.8 * factors["nuclear_density"]
        yy, xx = np.mgrid[0 : self.fh, 0 : self.fw].astype(np.float32)
        self.fy, self.fx = yy * _FIELD_SCALE, xx * _FIELD_SCALE  # field pixel centres in um

    # -- fields ---------------------------------------------------------------------------
    def noise(self, feature_um: float, draw: bool = False) -> np.ndarray:
        """Smooth random field, roughly N(0, 1), varying over `feature_um`."""
        shape = (self.h, self.w) if draw else (self.fh, self.fw)
        px = feature_um / (1 if draw else _FIELD_SCALE)
        small = (max(2, int(shape[0] / px) + 2), max(2, int(shape[1] / px) + 2))
        coarse = self.rng.standard_normal(small).astype(np.float32)
        return _resize(coarse, shape, Image.BICUBIC)

    def up(self, field: np.ndarray) -> np.ndarray:
        """A field-resolution array at draw resolution."""
        return _resize(field, (self.h, self.w))

    def worley(
        self, cell_um: float, stretch: float = 1.0, angle: float = 0.0, warp_um: float = 0.0
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Cellular (Voronoi) pattern at field resolution, in um.

        Returns (f1, f2, cell_rand, points): distance to the nearest and second-nearest seed
        point, a uniform random value per nearest cell, and the seed points (y, x) in draw px.
        `stretch` elongates cells along `angle` (muscle fibres, collagen bundles).
        """
        # Big cells are computed on a coarser grid and upsampled: a quarter of the work.
        step = 2 if cell_um >= 100 else 1
        y, x = self.fy[::step, ::step], self.fx[::step, ::step]
        if warp_um:
            y = y + warp_um * self.noise(cell_um * 3)[::step, ::step]
            x = x + warp_um * self.noise(cell_um * 3)[::step, ::step]
        cos, sin = math.cos(angle), math.sin(angle)
        u = (x * cos + y * sin) / (cell_um * stretch)  # along the stretch axis, in cells
        v = (-x * sin + y * cos) / cell_um
        u0, v0 = int(math.floor(u.min())) - 1, int(math.floor(v.min())) - 1
        nu, nv = int(math.ceil(u.max())) - u0 + 2, int(math.ceil(v.max())) - v0 + 2
        jitter = self.rng.random((2, nv, nu), dtype=np.float32) * 0.9 + 0.05
        rand = self.rng.random((nv, nu), dtype=np.float32)
        jit_u, jit_v, rand_flat = jitter[0].ravel(), jitter[1].ravel(), rand.ravel()
        cell = (np.floor(v).astype(np.int32) - v0) * nu + (np.floor(u).astype(np.int32) - u0)
        frac_u = u - np.floor(u)  # position inside the cell, in cells
        frac_v = v - np.floor(v)
        f1 = np.full(u.shape, np.inf, np.float32)
        f2 = np.full(u.shape, np.inf, np.float32)
        nearest = np.zeros(u.shape, np.float32)
        for du in (-1, 0, 1):
            for dv in (-1, 0, 1):
                neighbour = cell + (dv * nu + du)
                d_u = (du + jit_u.take(neighbour) - frac_u) * stretch
                d_v = dv + jit_v.take(neighbour) - frac_v
                d = np.sqrt(d_u * d_u + d_v * d_v)
                np.copyto(nearest, rand_flat.take(neighbour), where=d < f1)
                np.minimum(f2, np.maximum(f1, d), out=f2)
                np.minimum(f1, d, out=f1)
        f1 *= cell_um
        f2 *= cell_um
        # Seed points back in draw px (unwarped: close enough to the cell they seed).
        gv, gu = np.mgrid[0:nv, 0:nu].astype(np.float32)
        pu = (gu + jitter[0] + u0) * cell_um * stretch
        pv = (gv + jitter[1] + v0) * cell_um
        px, py = pu * cos - pv * sin, pu * sin + pv * cos
        inside = (px >= 0) & (px < self.w) & (py >= 0) & (py < self.h)
        points = np.stack([py[inside], px[inside]]).astype(np.int32)
        if step > 1:
            shape = (self.fh, self.fw)
            f1, f2 = _resize(f1, shape), _resize(f2, shape)
            nearest = _resize(nearest, shape, Image.NEAREST)
        return f1, f2, nearest, points

    def stripes(
        self, theta: float, wavelength_um: float, warp_um: float = 60.0, warp_feature_um: float = 400.0
    ) -> np.ndarray:
        """Wavy parallel fibres in [0, 1] at field resolution, running along angle `theta`.

        Waviness comes from warping the across-fibre coordinate (a varying angle field instead
        would compress the stripes far from the origin into fingerprint whorls).
        """
        across = -self.fx * math.sin(theta) + self.fy * math.cos(theta)
        across = across + warp_um * self.noise(warp_feature_um) + 0.1 * warp_um * self.noise(warp_feature_um / 4)
        return 0.5 + 0.5 * np.sin(across * (2 * math.pi / wavelength_um))

    def at(self, field: np.ndarray, points: np.ndarray) -> np.ndarray:
        """Values of a field- or draw-resolution array at draw-px points (y, x)."""
        if field.shape == (self.h, self.w):
            return field[points[0], points[1]]
        return field[points[0] // _FIELD_SCALE, points[1] // _FIELD_SCALE]

    # -- cells -----------------------------------------------------------------------------
    def scatter(self, density: np.ndarray | float, per_10k_um2: float) -> np.ndarray:
        """Random points (y, x) in draw px, `per_10k_um2` * cellularity * density per 100x100 um."""
        expected = per_10k_um2 * self.cellularity * self.h * self.w / 10_000
        n = int(self.rng.poisson(max(expected, 0.0)))
        points = np.stack([self.rng.integers(0, self.h, n), self.rng.integers(0, self.w, n)]).astype(np.int32)
        if np.isscalar(density):
            keep = self.rng.random(n) < float(density)
        else:
            keep = self.rng.random(n) < self.at(np.asarray(density, np.float32), points)
        return points[:, keep]

    def _sprites(
        self, points: np.ndarray, a_um: Any, b_um: Any, angle: Any, strength: Any, ring: float
    ) -> list[tuple[np.ndarray, np.ndarray]]:
        """(flat pixel indices, values) of ellipse sprites at `points`, grouped by sprite shape."""
        n = points.shape[1]
        if n == 0:
            return []
        a = np.broadcast_to(np.asarray(a_um, np.float32), (n,))
        b = a if b_um is None else np.broadcast_to(np.asarray(b_um, np.float32), (n,))
        if angle is None:
            bins = self.rng.integers(0, 12, n)
        else:
            bins = np.round(np.broadcast_to(np.asarray(angle, np.float32), (n,)) * 12 / math.pi).astype(int) % 12
        # Quarter-pixel steps keep the number of distinct sprites small.
        qa = np.maximum(np.round(a * 4).astype(int), 2)
        qb = np.maximum(np.round(np.minimum(a, b) * 4).astype(int), 2)
        jitter = self.rng.uniform(0.85, 1.15, n).astype(np.float32)
        gain = np.broadcast_to(np.asarray(strength, np.float32), (n,)) * jitter
        keys = (qa * 1000 + qb) * 16 + bins
        groups = []
        for key in np.unique(keys):
            members = np.flatnonzero(keys == key)
            first = members[0]
            dy, dx, values = _ellipse_sprite(qa[first] / 4, qb[first] / 4, int(bins[first]), ring)
            ys = points[0, members, None] + dy[None, :]
            xs = points[1, members, None] + dx[None, :]
            inside = (ys >= 0) & (ys < self.h) & (xs >= 0) & (xs < self.w)
            vals = gain[members, None] * values[None, :]
            groups.append(((ys * self.w + xs)[inside], vals[inside]))
        return groups

    def stamp(
        self,
        layer: np.ndarray,
        points: np.ndarray,
        a_um: Any,
        b_um: Any = None,
        angle: Any = None,
        strength: Any = 1.0,
        ring: float = 0.0,
    ) -> None:
        """Max-combine ellipse sprites (semi-axes a, b um; angle rad, random if None) into `layer`."""
        flat = layer.reshape(-1)
        for index, values in self._sprites(points, a_um, b_um, angle, strength, ring):
            np.maximum.at(flat, index, values)

    def nuclei_at(self, points: np.ndarray, a_um: Any, b_um: Any = None, angle: Any = None, dark: Any = 1.0) -> None:
        self.stamp(self.nuclei, points, a_um, b_um, angle, dark)

    def cut(self, points: np.ndarray, a_um: Any, b_um: Any = None, angle: Any = 0.0) -> None:
        """Empty round/oval holes (lumens, vacuoles) at `points`, removing what was painted there."""
        for index, values in self._sprites(points, a_um, b_um, angle, 1.0, 0.0):
            keep = 1.0 - np.clip(values, 0.0, 1.0)
            for layer in (self.hema, self.eosin, self.nuclei, self.blood):
                np.multiply.at(layer.reshape(-1), index, keep)
            np.maximum.at(self.open.reshape(-1), index, 1.0 - keep)

    def carve(self, amount: np.ndarray) -> None:
        """Empty space over a whole field (draw resolution, 0..1): air, fat vacuoles, clefts."""
        keep = 1.0 - np.clip(amount, 0.0, 1.0)
        for layer in (self.hema, self.eosin, self.nuclei, self.blood):
            layer *= keep
        np.maximum(self.open, 1.0 - keep, out=self.open)

    def add(self, hema: Any = 0.0, eosin: Any = 0.0, where: np.ndarray | None = None) -> None:
        """Add stain (field- or draw-resolution arrays, or scalars) to the base layers.

        A field-resolution `where` is applied before upsampling, so region edges come out
        anti-aliased and each layer costs one resize.
        """
        for layer, value in ((self.hema, hema), (self.eosin, eosin)):
            if np.isscalar(value) and value == 0:
                continue
            value = np.asarray(value, np.float32)
            if where is not None:
                if value.ndim == 2 and value.shape != where.shape:
                    raise ValueError("stain and region must have the same resolution")
                value = np.where(where, value, np.float32(0.0))
            if value.ndim == 2 and value.shape != layer.shape:
                value = self.up(value)
            layer += value


# -- building blocks shared by the tissues -------------------------------------------------


def _stroma(c: _Canvas, region: np.ndarray, density: float = 0.55, wavelength: float = 9.0) -> None:
    """Wavy pink collagen with sparse spindle fibroblasts, on a field-resolution boolean region."""
    theta = c.rng.uniform(0, math.pi)
    fibres = c.stripes(theta, wavelength, warp_um=80.0) * (c.noise(30) > -0.3)  # broken, not endless, fibres
    dens = density * (1.0 + 0.3 * c.factors["fibrosis"])
    c.add(0.02, dens * (0.7 + 0.35 * fibres) * (1 + 0.12 * c.noise(60)), where=region)
    points = c.scatter(region.astype(np.float32), 1.6)
    c.nuclei_at(points, 4.5, 1.3, theta, 0.95)


def _fat(c: _Canvas, region: np.ndarray, cell_um: float = 75.0) -> None:
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


def _lymphocytes(c: _Canvas, density: np.ndarray | float, per_10k_um2: float) -> None:
    """Small round very dark nuclei (lymphocytes)."""
    points = c.scatter(density, per_10k_um2)
    c.nuclei_at(points, 3.1, None, 0.0, 1.45)


def _blob(c: _Canvas, cy: float, cx: float, radius_um: float) -> np.ndarray:
    """Soft irregular disc (field resolution) in [0, 1], radius about `radius_um`."""
    d = np.hypot(c.fy - cy, c.fx - cx) / radius_um
    return np.clip(1.5 - d - 0.25 * c.noise(radius_um * 0.8), 0.0, 1.0)


def _random_in_tissue(c: _Canvas, n: int) -> np.ndarray:
    """`n` random draw-px points (y, x) inside the tissue (none if there is no tissue)."""
    ys, xs = np.nonzero(c.tissue[::8, ::8])
    if ys.size == 0 or n <= 0:
        return np.zeros((2, 0), np.int32)
    pick = c.rng.integers(0, ys.size, n)
    return np.stack([ys[pick] * 8, xs[pick] * 8]).astype(np.int32)


def _tissue_area_mm2(c: _Canvas) -> float:
    return float(c.tissue[::4, ::4].sum()) * 16 / 1e6


def _vessels(c: _Canvas, per_mm2: float, radius: tuple[float, float] = (10.0, 30.0)) -> None:
    """Small vessels: a pink wall with flat endothelial nuclei around a lumen holding red cells."""
    centres = _random_in_tissue(c, int(c.rng.poisson(per_mm2 * _tissue_area_mm2(c))))
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


def _glands(
    c: _Canvas, centres: np.ndarray, radius: Any, lumen: float, cell_eosin: float, nucleus_um: float = 3.4
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


def _depth_from_surface(c: _Canvas, facing: float) -> np.ndarray:
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
    return _resize(depth, (c.fh, c.fw))


def _squamous(
    c: _Canvas, depth: np.ndarray, thickness: np.ndarray, keratin_um: Any, cell_um: float = 15.0, pale: float = 0.0
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


def _smooth_muscle(c: _Canvas, region: np.ndarray, base_angle: float) -> None:
    """Fascicles of pink fibrillar cytoplasm with cigar-shaped nuclei along them."""
    if not region.any():
        return
    theta = base_angle
    fibrils = c.stripes(theta, 5.0, warp_um=50.0)
    c.add(0.05, 0.6 + 0.14 * fibrils, where=region)
    points = c.scatter(region.astype(np.float32), 9.0)
    c.nuclei_at(points, 6.5, 1.6, theta, 0.95)


# -- tissues --------------------------------------------------------------------------------


def _paint_adipose(c: _Canvas, breast: bool = False) -> None:
    fat_share = c.factors["adipocyte_fraction"]
    fibrosis = c.factors["fibrosis"]
    if breast:
        share = 0.3 + 0.4 * fat_share - 0.15 * fibrosis
    else:
        share = 0.8 + 0.15 * fat_share - 0.2 * fibrosis
    field = c.noise(450) + 0.5 * c.noise(150)
    fat = field > np.quantile(field, 1.0 - share)
    _stroma(c, ~fat, density=0.68 if breast else 0.5, wavelength=9.0 if breast else 7.0)
    _fat(c, fat, cell_um=72.0)
    _vessels(c, 6.0)
    if not breast:
        return
    # Lobules: clusters of small acini in pale, cellular intralobular stroma; a few ducts.
    candidates = np.argwhere(~fat[::10, ::10]) * 10 * _FIELD_SCALE
    if len(candidates) == 0:
        return
    n_lobules = max(1, int(c.rng.poisson(3.0 * _tissue_area_mm2(c) * (1 - share))))
    for cy, cx in candidates[c.rng.integers(0, len(candidates), n_lobules)]:
        lobule = _blob(c, cy, cx, c.rng.uniform(90, 150)) > 0.5
        c.eosin -= 0.2 * c.up(lobule.astype(np.float32))  # looser, paler stroma
        _lymphocytes(c, lobule.astype(np.float32), 6.0)
        n_acini = int(c.rng.integers(6, 16))
        centres = np.array([[cy], [cx]]) + c.rng.normal(0, 50, (2, n_acini))
        _glands(c, centres.astype(np.int32), c.rng.uniform(13, 21, n_acini), 0.3, 0.45)
    ducts = candidates[c.rng.integers(0, len(candidates), 2)].T
    _glands(c, ducts.astype(np.int32), c.rng.uniform(28, 42, 2), 0.6, 0.45)


def _paint_esophagus(c: _Canvas, junction: bool = False) -> None:
    facing = -math.pi / 2 + c.rng.uniform(-0.3, 0.3)  # the epithelium faces "up"
    depth = _depth_from_surface(c, facing)
    along = c.fx * math.cos(facing + math.pi / 2) + c.fy * math.sin(facing + math.pi / 2)
    # Lamina propria papillae push up into the epithelium.
    papillae = np.maximum(0.0, np.sin(along * 2 * math.pi / 110 + 2 * c.noise(400))) ** 3
    if junction:
        # Squamous on part of the surface, columnar glandular (cardiac) mucosa on the rest.
        split = np.quantile(along, c.rng.uniform(0.25, 0.5)) + 150 * c.noise(600)
        squamous_side = along < split
        thickness = np.where(squamous_side, 190 + 30 * c.noise(300) - 60 * papillae, 0.0)
    else:
        squamous_side = np.ones_like(depth, bool)
        thickness = 380 + 70 * c.noise(400) - 150 * papillae
    epi = _squamous(c, depth, thickness, keratin_um=0.0, cell_um=16.0, pale=0.2)
    mucosa_bottom = np.where(squamous_side, thickness, 400.0) + 140
    lamina = (depth >= thickness) & (depth < mucosa_bottom) & ~epi
    _stroma(c, lamina, density=0.36, wavelength=6.0)
    _lymphocytes(c, lamina.astype(np.float32) * 0.5, 10.0)
    if junction:
        glandular = ~squamous_side & (depth < 400)
        c.add(0.0, 0.12, where=glandular)
        pts = np.argwhere(glandular[::14, ::14]) * 14 * _FIELD_SCALE
        pts = pts + c.rng.integers(-8, 8, pts.shape)
        keep = c.rng.random(len(pts)) < 0.8
        _glands(c, pts[keep].T.astype(np.int32), c.rng.uniform(17, 27, int(keep.sum())), 0.3, 0.26, 3.0)
    mm_bottom = mucosa_bottom + (220 if junction else 80) + 30 * c.noise(300)
    _smooth_muscle(c, (depth >= mucosa_bottom) & (depth < mm_bottom), facing + math.pi / 2)
    submucosa = depth >= mm_bottom
    if junction:
        # Deep smooth muscle bundles separated by thin septa.
        f1, f2, _, _ = c.worley(260.0, stretch=2.0, angle=c.rng.uniform(0, math.pi), warp_um=60)
        bundles = submucosa & (f2 - f1 > 25)
        _smooth_muscle(c, bundles, c.rng.uniform(0, math.pi))
        _stroma(c, submucosa & ~bundles, density=0.5)
    else:
        _stroma(c, submucosa, density=0.5, wavelength=10.0)
    _vessels(c, 10.0)


def _paint_skin(c: _Canvas, sun_exposed: bool) -> None:
    facing = -math.pi / 2 + c.rng.uniform(-0.3, 0.3)
    depth = _depth_from_surface(c, facing)
    along = c.fx * math.cos(facing + math.pi / 2) + c.fy * math.sin(facing + math.pi / 2)
    keratin = (32.0 if sun_exposed else 24.0) + 5 * c.noise(300)
    if sun_exposed:
        # Thin epidermis with flattened rete ridges (chronic sun damage).
        ridges = 12 * np.maximum(0, np.sin(along * 2 * math.pi / 160 + c.noise(500))) ** 2
        thickness = keratin + 45 + 8 * c.noise(200) + ridges
    else:
        ridges = 60 * np.maximum(0, np.sin(along * 2 * math.pi / 130 + c.noise(500))) ** 2
        thickness = keratin + 62 + 10 * c.noise(200) + ridges
    _squamous(c, depth, thickness, keratin_um=keratin, cell_um=12.0)
    c.add(0.4, where=(depth > keratin) & (depth < keratin + 5))  # granular layer
    dermis_depth = depth - thickness
    papillary = (dermis_depth >= 0) & (dermis_depth < 70)
    _stroma(c, papillary, density=0.42, wavelength=5.0)
    reticular = dermis_depth >= 70
    if sun_exposed:
        # Solar elastosis: grey-blue amorphous, curly elastotic material in the upper dermis.
        elastotic = (dermis_depth >= 35) & (dermis_depth < 400 + 60 * c.noise(400))
        curls = (np.abs(c.noise(10)) < 0.15).astype(np.float32)
        c.add(0.26 + 0.1 * curls, 0.3 + 0.08 * curls, where=elastotic)
        c.nuclei_at(c.scatter(elastotic.astype(np.float32), 1.0), 4.0, 1.5, None, 0.9)
        reticular = reticular & ~elastotic
    # Reticular dermis: coarse wavy collagen bundles separated by thin clefts.
    theta = facing + math.pi / 2 + c.rng.uniform(-0.3, 0.3)
    waves = c.stripes(theta, 40.0, warp_um=120.0)
    cleft = (waves > 0.93) & (c.noise(120) > -0.6)
    bundle = reticular & ~cleft
    shade = 0.85 + 0.3 * np.clip(0.5 + 0.3 * c.noise(80), 0, 1)
    c.add(0.02, (0.62 + 0.18 * c.factors["fibrosis"]) * shade * (0.9 + 0.1 * c.stripes(theta, 6.0)), where=bundle)
    c.nuclei_at(c.scatter(bundle.astype(np.float32), 0.8), 4.5, 1.2, None, 0.9)
    c.carve(c.up((reticular & cleft).astype(np.float32)) * 0.85)
    # Adnexa: sweat-gland coils deep in the dermis.
    deep = np.argwhere(reticular[::10, ::10] & (dermis_depth[::10, ::10] > 300)) * 10 * _FIELD_SCALE
    if len(deep):
        for cy, cx in deep[c.rng.integers(0, len(deep), int(c.rng.integers(1, 4)))]:
            pts = np.array([[cy], [cx]]) + c.rng.normal(0, 35, (2, 10))
            _glands(c, pts.astype(np.int32), c.rng.uniform(11, 15, 10), 0.35, 0.5, 3.0)
    # Subcutaneous fat at the bottom, more of it with the adipocyte factor.
    _fat(c, dermis_depth > 900 - 550 * c.factors["adipocyte_fraction"] + 80 * c.noise(500), cell_um=70.0)
    _vessels(c, 8.0)


def _paint_lung(c: _Canvas) -> None:
    f1, f2, _, _ = c.worley(125.0, warp_um=35.0)
    wall_um = 7.0 + 5.0 * c.noise(500) ** 2 + 14.0 * c.factors["fibrosis"]
    edge = f2 - f1
    wall = c.up(np.clip(1.0 - (edge - wall_um) / 2.5, 0.0, 1.0))
    c.add(0.08, 0.42)
    c.carve(1.0 - wall)
    points = c.scatter((edge < wall_um + 2).astype(np.float32), 14.0)
    c.nuclei_at(points, 3.6, 2.4, None, 0.95)
    c.stamp(c.blood, c.scatter((edge < wall_um).astype(np.float32), 10.0), 3.0, None, 0.0, 0.7)
    # Alveolar macrophages: pink cells with a nucleus, loose in the air spaces.
    macro = c.scatter((edge > wall_um + 20).astype(np.float32), 0.5)
    c.stamp(c.eosin, macro, 8.0, 7.0, None, 0.45)
    c.nuclei_at(macro, 3.5, 3.0, None, 0.9)
    # A bronchiole or artery: thick muscular wall around an open lumen.
    for cy, cx in _random_in_tissue(c, int(c.rng.integers(0, 3))).T:
        blob = _blob(c, cy, cx, c.rng.uniform(70, 140))
        ring = (blob > 0.3) & (blob < 0.75)
        c.carve(c.up(ring.astype(np.float32)))
        _smooth_muscle(c, ring, c.rng.uniform(0, math.pi))
    _vessels(c, 4.0)


def _paint_liver(c: _Canvas) -> None:
    f1, f2, rand, points = c.worley(23.0, warp_um=5.0)
    # Plates radiate from central veins: sinusoids are thin gaps between radial plates.
    veins = _random_in_tissue(c, max(1, round(_tissue_area_mm2(c) / 0.35)))
    dist = np.full(f1.shape, np.inf, np.float32)
    spokes = np.zeros(f1.shape, np.float32)
    warp = 0.15 * c.noise(200)
    for vy, vx in veins.T:
        d = np.hypot(c.fy - vy, c.fx - vx)
        phase = np.arctan2(c.fy - vy, c.fx - vx) * 37 + warp * 37  # ~34 um apart at 200 um
        spokes = np.where(d < dist, 0.5 + 0.5 * np.sin(phase), spokes)
        dist = np.minimum(dist, d)
    sinus = np.where(dist > 45, spokes, 0.0)
    border = np.clip(1.0 - (f2 - f1) / 2.0, 0.0, 1.0)
    c.add(0.14 + 0.05 * rand, (0.5 + 0.12 * rand) * (1 - 0.25 * border))
    c.carve(c.up(np.clip((sinus - 0.88) / 0.06, 0.0, 1.0)) * 0.9)
    c.stamp(c.blood, c.scatter((sinus > 0.9).astype(np.float32), 3.0), 3.0, None, 0.0, 0.8)
    # Round central nuclei; steatosis (the adipocyte factor) turns cells into fat vacuoles.
    steatosis = 0.45 * c.factors["adipocyte_fraction"] ** 1.5
    roll = c.rng.random(points.shape[1])
    vacuoles = points[:, roll < steatosis]
    c.cut(vacuoles, c.rng.uniform(9, 16, vacuoles.shape[1]))
    keep = (roll >= steatosis) & (c.rng.random(points.shape[1]) < 0.55 + 0.4 * c.factors["nuclear_density"])
    c.nuclei_at(points[:, keep], 4.6, 4.2, None, 0.85)
    c.nuclei_at(c.scatter((sinus > 0.8).astype(np.float32), 4.0), 4.0, 1.3, None, 0.95)  # Kupffer cells
    c.cut(veins, c.rng.uniform(25, 45, veins.shape[1]))
    # Portal tracts: collagen islands with a bile duct and lymphocytes.
    for cy, cx in _random_in_tissue(c, max(1, round(_tissue_area_mm2(c) / 0.6))).T:
        tract = _blob(c, cy, cx, c.rng.uniform(60, 110) * (1 + 0.8 * c.factors["fibrosis"])) > 0.5
        c.carve(c.up(tract.astype(np.float32)))
        _stroma(c, tract, density=0.45)
        _lymphocytes(c, tract.astype(np.float32), 12.0)
        _glands(c, np.array([[cy], [cx]], np.int32), 14.0, 0.35, 0.4, 3.0)


def _paint_muscle(c: _Canvas) -> None:
    cross_section = c.rng.random() < 0.35
    angle = c.rng.uniform(0, math.pi)
    if cross_section:
        f1, f2, rand, _ = c.worley(55.0, warp_um=8.0)
    else:
        f1, f2, rand, _ = c.worley(50.0, stretch=9.0, angle=angle, warp_um=10.0)
    edge = f2 - f1
    c.add(0.03, (0.72 + 0.4 * (rand - 0.5)) * (1 + 0.05 * c.noise(8)))
    c.carve(np.clip(1.0 - (c.up(edge) - 3.0) / 1.5, 0.0, 1.0) * 0.85)
    # Peripheral nuclei, flattened along the fibres.
    points = c.scatter((edge < 7.0).astype(np.float32), 7.0)
    if cross_section:
        c.nuclei_at(points, 3.2, 2.2, None, 0.95)
    else:
        c.nuclei_at(points, 6.5, 1.8, angle, 0.95)
    # Perimysium: septa with collagen and vessels; with the factors, fibrosis and fat between fascicles.
    septa_field = np.abs(c.noise(700))
    septa = septa_field < 0.06 + 0.12 * c.factors["fibrosis"]
    c.carve(c.up(septa.astype(np.float32)))
    _stroma(c, septa, density=0.5)
    _fat(c, septa_field < 0.2 * c.factors["adipocyte_fraction"], cell_um=65.0)
    _vessels(c, 5.0)


def _paint_thyroid(c: _Canvas) -> None:
    f1, f2, rand, _ = c.worley(85.0, warp_um=20.0)
    inset = (f2 - f1) / 2  # ~ distance to the follicle edge
    rim_um = 8.0 + 4.0 * c.factors["nuclear_density"]
    colloid = inset > rim_um + 1.0
    rim = (inset > 1.5) & ~colloid
    c.add(np.where(rim, 0.08, 0.0), np.where(colloid, 0.42 + 0.3 * rand, np.where(rim, 0.42, 0.3)))
    # Retraction gap between colloid and epithelium, and the odd empty follicle.
    gap = (inset > rim_um + 1.0) & (inset < rim_um + 3.5)
    empty = colloid & (rand < 0.08)
    c.carve(c.up((gap | empty).astype(np.float32)) * 0.9)
    c.nuclei_at(c.scatter(rim.astype(np.float32), 60.0), 3.3, 3.0, None, 1.0)
    c.stamp(c.blood, c.scatter((inset <= 1.5).astype(np.float32), 6.0), 3.0, None, 0.0, 0.8)
    _vessels(c, 4.0)


_PAINTERS: dict[str, Callable[[_Canvas], None]] = {
    "Adipose - Subcutaneous": lambda c: _paint_adipose(c, breast=False),
    "Breast - Mammary Tissue": lambda c: _paint_adipose(c, breast=True),
    "Esophagus - Mucosa": lambda c: _paint_esophagus(c, junction=False),
    "Esophagus - Gastroesophageal Junction": lambda c: _paint_esophagus(c, junction=True),
    "Skin - Sun Exposed (Lower leg)": lambda c: _paint_skin(c, sun_exposed=True),
    "Skin - Not Sun Exposed (Suprapubic)": lambda c: _paint_skin(c, sun_exposed=False),
    "Lung": _paint_lung,
    "Liver": _paint_liver,
    "Muscle - Skeletal": _paint_muscle,
    "Thyroid": _paint_thyroid,
}
# Tissues that get fat islands from the adipocyte factor (the others draw fat their own way).
_FAT_ISLAND_TISSUES = {"Esophagus - Mucosa", "Esophagus - Gastroesophageal Junction", "Lung", "Thyroid"}


# -- whole slide -----------------------------------------------------------------------------


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
    small_noise = _resize(
        rng.standard_normal((max(2, h // 6), max(2, w // 6))).astype(np.float32), (h, w), Image.BICUBIC
    )
    level = level + 0.06 * small_noise
    return _resize(level, (height, width)) > 0


def _common_features(c: _Canvas, tissue: str) -> None:
    """Factor-driven features every tissue gets: fat islands, fibrous bands, lymphoid aggregates."""
    f = c.factors
    if tissue in _FAT_ISLAND_TISSUES:
        islands = c.noise(500)
        _fat(c, islands > np.quantile(islands, 1.0 - 0.22 * f["adipocyte_fraction"] ** 1.3), cell_um=70.0)
    # Fibrosis: dense, paucicellular collagen scars replacing the tissue.
    scar_field = np.abs(c.noise(600))
    scar = scar_field < 0.12 * f["fibrosis"] ** 1.5
    if scar.any():
        c.carve(c.up(scar.astype(np.float32)))
        _stroma(c, scar, density=0.72, wavelength=12.0)
    # Immune infiltrate: lymphoid aggregates plus scattered lymphocytes.
    n_aggregates = int(c.rng.poisson(3.0 * f["immune_infiltrate"] ** 1.5 * _tissue_area_mm2(c)))
    solid = 1.0 - c.open[::_FIELD_SCALE, ::_FIELD_SCALE][: c.fh, : c.fw]
    for cy, cx in _random_in_tissue(c, n_aggregates).T:
        blob = _blob(c, cy, cx, c.rng.uniform(50, 130))
        c.eosin *= 1.0 - 0.35 * c.up(blob)
        _lymphocytes(c, blob * 0.9, 110.0)
    _lymphocytes(c, solid * f["immune_infiltrate"], 5.0)


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


def _artifact_od(c: _Canvas, artifacts: list[dict[str, Any]], rng: np.random.Generator) -> tuple[np.ndarray, float]:
    """Extra optical density from pen strokes and dust specks; folds scale the tissue's own OD."""
    extra = np.zeros((c.h, c.w, 3), np.float32)
    fold = np.zeros((c.h, c.w), np.float32)
    for art in artifacts:
        box = tuple(v / _DRAW_SCALE for v in (art["x"], art["y"], art["w"], art["h"]))
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
    grain = np.tile(patch, (-(-h // period), -(-w // period)))[:h, :w]
    darkness = 255 - rgb[..., 1].astype(np.int16)  # green: the channel both stains absorb
    amount = (darkness * grain) >> 8
    return np.clip(rgb - amount[..., None], 0, 255).astype(np.uint8)


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
    if tissue not in _PAINTERS:
        raise ValueError(f"no painter for tissue {tissue!r}; known: {', '.join(TISSUES)}")
    rng = np.random.default_rng(seed)
    dh, dw = -(-height // _DRAW_SCALE), -(-width // _DRAW_SCALE)
    c = _Canvas(rng, dh, dw, {name: float(factors[name]) for name in FACTORS})
    c.tissue = _outline(rng, dh, dw)
    _PAINTERS[tissue](c)
    _common_features(c, tissue)
    extra, fold = _artifact_od(c, artifacts or [], rng)
    # Per-slide stain strength varies, as between staining batches.
    hema_od = _HEMATOXYLIN * rng.uniform(0.88, 1.12) * rng.uniform(0.96, 1.04, 3).astype(np.float32)
    eosin_od = _EOSIN * rng.uniform(0.85, 1.15) * rng.uniform(0.96, 1.04, 3).astype(np.float32)
    grain = rng.random((dh, dw), dtype=np.float32)
    nuclei = c.nuclei * (0.72 + 0.5 * grain)  # chromatin texture
    hema = np.maximum(c.hema, 0) + nuclei
    eosin = np.maximum(c.eosin, 0) * (0.94 + 0.12 * grain)
    inside = c.tissue.astype(np.float32) * (1.0 + 0.9 * fold)  # a fold doubles the section
    od = np.empty((dh, dw, 3), np.float32)
    for ch in range(3):
        od[..., ch] = (hema * hema_od[ch] + eosin * eosin_od[ch] + c.blood * _BLOOD[ch]) * inside + _GLASS[ch]
    od += extra
    rgb = np.exp(-od) * 255.0 + rng.normal(0.0, 1.6, (dh, dw)).astype(np.float32)[..., None]
    rgb = np.clip(rgb, 0, 255).astype(np.uint8)
    image = Image.fromarray(rgb).resize((dw * _DRAW_SCALE, dh * _DRAW_SCALE), Image.BILINEAR)
    level0 = _add_grain(np.asarray(image)[:height, :width], rng)
    _apply_pixel_artifacts(level0, artifacts or [], rng)
    return level0


# =============================================================================================
# Aperio SVS writer


def _aperio_header(width: int, height: int, tile: int, quality: int) -> str:
    size = f"{width}x{height}"
    return f"Aperio Image Library v12.0.0 \r\n{size} [0,0 {size}] ({tile}x{tile}) JPEG/RGB Q={quality}"


def write_aperio_svs(path: str | Path, rgb: np.ndarray, tile: int = 256, quality: int = 80, image_id: int = 0) -> None:
    """Write `rgb` (level 0, uint8) as a pyramidal Aperio SVS, laid out like a scanner's file.

    Pages, as Aperio writes them and slideio's SVS driver expects: level 0 (tiled JPEG), a small
    stripped thumbnail, downsampled levels (4x, 16x, ... while wider than one tile, tiled JPEG),
    then the label (LZW) and macro (JPEG) images, each named in its ImageDescription.
    """
    height, width = rgb.shape[:2]
    name = Path(path).stem
    fields = (
        f"AppMag = {APP_MAG}|StripeWidth = 2040|ScanScope ID = SS0000|Filename = {name}|Date = 01/01/16"
        f"|Time = 12:00:00|Time Zone = GMT+00:00|User = histogene-demo|MPP = {MPP:.4f}|Left = 20.0|Top = 20.0"
        f"|LineCameraSkew = 0.000000|LineAreaXOffset = 0.000000|LineAreaYOffset = 0.000000"
        f"|Focus Offset = 0.000000|ImageID = {image_id}|OriginalWidth = {width}|OriginalHeight = {height}"
        "|Filtered = 5|Title = synthetic H&E (HistoGene Explorer demo)"
    )
    header = _aperio_header(width, height, tile, quality)
    image = Image.fromarray(rgb)
    scale = max(width, height) / 768
    thumb_size = (max(1, round(width / scale)), max(1, round(height / scale)))
    thumb_text = f"{width}x{height} -> {thumb_size[0]}x{thumb_size[1]} - "
    thumb = np.asarray(image.resize(thumb_size, Image.BILINEAR))
    jpeg = {"compression": "jpeg", "compressionargs": {"level": quality}, "photometric": "rgb", "metadata": None}
    buffer = io.BytesIO()
    with tifffile.TiffWriter(buffer) as tif:
        tif.write(rgb, tile=(tile, tile), description=f"{header}|{fields}", software=False, **jpeg)
        tif.write(
            thumb,
            rowsperstrip=16,
            description=f"Aperio Image Library v12.0.0 \r\n{thumb_text}|{fields}",
            software=False,
            **jpeg,
        )
        level, downsample = image, 1
        while True:
            downsample *= 4
            size = (width // downsample, height // downsample)
            if min(size) < tile // 2:
                break
            level = level.reduce(4) if level.size[0] // 4 == size[0] else level.resize(size, Image.BOX)
            tif.write(
                np.asarray(level),
                tile=(tile, tile),
                description=f"{header} -> {size[0]}x{size[1]} JPEG/RGB Q={quality}|{fields}",
                software=False,
                **jpeg,
            )
        label = _label_image(name)
        tif.write(
            label,
            rowsperstrip=16,
            compression="lzw",
            photometric="rgb",
            subfiletype=1,
            description=f"Aperio Image Library v12.0.0 \r\nlabel {label.shape[1]}x{label.shape[0]}",
            metadata=None,
            software=False,
        )
        macro = _macro_image(thumb)
        tif.write(
            macro,
            rowsperstrip=16,
            subfiletype=9,
            description=f"Aperio Image Library v12.0.0 \r\nmacro {macro.shape[1]}x{macro.shape[0]}",
            software=False,
            **jpeg,
        )
    atomic_write_bytes(path, buffer.getvalue())


def _label_image(name: str) -> np.ndarray:
    """A slide label: white with a barcode derived from the sample ID (no text rendering needed)."""
    label = np.full((400, 380, 3), 250, np.uint8)
    bits = np.unpackbits(np.frombuffer(name.encode()[:40].ljust(40, b"\0"), np.uint8))
    for i, bit in enumerate(bits[:320]):
        label[40:200, 30 + i : 31 + i] = 20 if bit else 250
    return label


def _macro_image(thumb: np.ndarray) -> np.ndarray:
    """A macro (whole glass slide) picture: grey glass, the tissue in the middle."""
    macro = np.full((431, 1280, 3), 205, np.uint8)
    small = np.asarray(Image.fromarray(thumb).resize((380, max(1, round(380 * thumb.shape[0] / thumb.shape[1])))))
    small = small[:400]
    top = (431 - small.shape[0]) // 2
    macro[top : top + small.shape[0], 500:880] = small
    return macro


# =============================================================================================
# Cohort plan: donors, samples, factors, artifacts


_ID_CHARS = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"
_HARDY = (
    ("Ventilator case", 0.6),
    ("Slow death", 0.15),
    ("Fast death - natural causes", 0.12),
    ("Intermediate death", 0.08),
    ("Fast death - violent", 0.05),
)
_AGES = ("20-29", "30-39", "40-49", "50-59", "60-69", "70-79")
_NOTES = (
    "2 pieces, {a}x{b} mm; well preserved",
    "{a}x{b} mm; {fat}% fat, rest is {main}",
    "1 piece, {a}x{b} mm; mild autolysis",
    "2 pieces; {main}, good quality",
    "{main} ~{keep}% of specimen, {fat}% adipose",
)
_MAIN = {
    "Adipose - Subcutaneous": "adipose with thin fibrous septa",
    "Breast - Mammary Tissue": "fibrous stroma with scattered lobules",
    "Esophagus - Mucosa": "squamous mucosa and submucosa",
    "Esophagus - Gastroesophageal Junction": "mucosa, glands and muscularis",
    "Skin - Sun Exposed (Lower leg)": "epidermis and dermis",
    "Skin - Not Sun Exposed (Suprapubic)": "epidermis and dermis",
    "Lung": "alveolar parenchyma",
    "Liver": "hepatic parenchyma",
    "Muscle - Skeletal": "skeletal muscle",
    "Thyroid": "thyroid follicles",
}


def _random_code(rng: np.random.Generator, n: int, first: str | None = None) -> str:
    chars = [_ID_CHARS[i] for i in rng.integers(0, len(_ID_CHARS), n)]
    if first:
        chars[0] = first
    return "".join(chars)


def _plan_artifacts(rng: np.random.Generator, width: int, height: int) -> list[dict[str, Any]]:
    """Artifacts for one slide (often none), with level-0 boxes (x, y, w, h)."""
    if rng.random() >= 0.35:
        return []
    kinds = rng.choice(ARTIFACT_KINDS, size=int(rng.integers(1, 3)), replace=False)
    arts = []
    side = min(width, height)
    for kind in sorted(kinds.tolist()):
        if kind == "pen":
            w, h = int(width * rng.uniform(0.3, 0.55)), int(height * rng.uniform(0.08, 0.3))
            extra = {"color": str(rng.choice(("green", "blue", "black"))), "width_um": float(rng.uniform(60, 110))}
        elif kind == "blur":
            w = h = int(side * rng.uniform(0.3, 0.45))
            extra = {"sigma_um": float(rng.uniform(1.8, 3.0))}  # out of focus, structure still visible
        elif kind == "dust":
            w, h = int(side * rng.uniform(0.22, 0.32)), int(side * rng.uniform(0.22, 0.32))
            grey = int(rng.integers(120, 175))
            extra = {"grey": [grey, grey - 3, grey - 6]}
        else:  # fold
            w, h = int(width * rng.uniform(0.35, 0.6)), int(height * rng.uniform(0.1, 0.35))
            extra = {"width_um": float(rng.uniform(80, 160))}
        x = int(rng.uniform(0.2, 0.8) * width - w / 2)
        y = int(rng.uniform(0.2, 0.8) * height - h / 2)
        x, y = max(0, min(x, width - w)), max(0, min(y, height - h))
        arts.append({"kind": kind, "x": x, "y": y, "w": w, "h": h, **extra})
    return arts


def plan_cohort(
    seed: int = 0,
    n_donors: int = DEFAULT_DONORS,
    tissues: tuple[str, ...] = TISSUES,
    coverage: float = 0.8,
    slide_size: tuple[int, int] = DEFAULT_SLIDE_SIZE,
    missing_expression: float = 0.1,
) -> pd.DataFrame:
    """One row per tissue sample: IDs, donor facts, tissue, factors, artifacts, slide/expression flags.

    Each donor gives about `coverage` of the tissues, spread evenly so every tissue has donors on
    both sides of any donor split. About `missing_expression` of the slides get no RNA; RNA-only
    samples (a skipped tissue, or Whole Blood) have no slide and no histology row, as in GTEx.
    """
    unknown = [t for t in tissues if t not in _PAINTERS]
    if unknown:
        raise ValueError(f"unknown tissues {unknown}; known: {', '.join(TISSUES)}")
    if n_donors < 1 or not tissues:
        raise ValueError("n_donors >= 1 and at least one tissue are required")
    rng = np.random.default_rng([seed, 1])
    n_t = len(tissues)
    skips = min(n_t - 1, round(n_t * (1.0 - coverage)))
    order = rng.permutation(n_t)
    donors = set()
    rows = []
    for d in range(n_donors):
        donor = "GTEX-" + _random_code(rng, 5, first="1")
        while donor in donors:
            donor = "GTEX-" + _random_code(rng, 5, first="1")
        donors.add(donor)
        sex = str(rng.choice(("male", "female"), p=(0.6, 0.4)))
        age = str(rng.choice(_AGES, p=(0.08, 0.08, 0.14, 0.28, 0.36, 0.06)))
        hardy = str(rng.choice([h for h, _ in _HARDY], p=[p for _, p in _HARDY]))
        skipped = {int(order[(d * skips + k) % n_t]) for k in range(skips)}
        codes = rng.permutation(np.arange(1, 36))
        candidates = [(t, True) for t in range(n_t)] + [(-1, False)]
        for k, (t_index, _) in enumerate(candidates):
            tissue = tissues[t_index] if t_index >= 0 else RNA_ONLY_TISSUES[0]
            has_slide = t_index >= 0 and t_index not in skipped
            if t_index < 0 and rng.random() < 0.5:
                continue  # about half the donors have blood RNA
            if t_index >= 0 and not has_slide and rng.random() < 0.5:
                continue  # some skipped tissues still have RNA
            sample_id = f"{donor}-{codes[k]:02d}26"
            factors = {name: float(np.round(rng.beta(2.0, 2.0), 4)) for name in FACTORS}
            has_expression = (not has_slide) or rng.random() >= missing_expression
            rows.append(
                {
                    "sample_id": sample_id,
                    "rna_sample_id": f"{sample_id}-SM-{_random_code(rng, 5)}",
                    "tissue": tissue,
                    "subject_id": donor,
                    "sex": sex,
                    "age_bracket": age,
                    "hardy_scale": hardy,
                    "has_slide": has_slide,
                    "has_expression": has_expression,
                    **factors,
                    "artifacts": _plan_artifacts(rng, *slide_size) if has_slide else [],
                }
            )
    plan = pd.DataFrame(rows).sort_values(["tissue", "sample_id"], kind="stable").reset_index(drop=True)
    plan["slide_seed"] = [[seed, 2, i] for i in range(len(plan))]
    return plan


def _pathology(rng: np.random.Generator, tissue: str, row: pd.Series) -> tuple[str, str]:
    """Portal-style Pathology Categories and Notes, echoing the strongest factors."""
    categories = []
    if row["fibrosis"] > 0.75:
        categories.append("fibrosis")
    if row["immune_infiltrate"] > 0.75:
        categories.append("inflammation")
    if tissue == "Liver" and row["adipocyte_fraction"] > 0.65:
        categories.append("steatosis")
    if not categories and rng.random() < 0.25:
        categories.append("clean_specimens")
    template = _NOTES[int(rng.integers(0, len(_NOTES)))]
    fat = (
        int(5 + 40 * row["adipocyte_fraction"])
        if tissue not in TISSUES[:2]
        else int(60 + 35 * row["adipocyte_fraction"])
    )
    note = template.format(
        a=int(rng.integers(5, 15)),
        b=int(rng.integers(4, 10)),
        fat=min(fat, 95),
        keep=100 - min(fat, 95),
        main=_MAIN.get(tissue, "tissue"),
    )
    return ", ".join(categories), note


def _histology_csv(plan: pd.DataFrame, seed: int) -> bytes:
    rng = np.random.default_rng([seed, 3])
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(HISTOLOGY_HEADER)
    for _, row in plan[plan["has_slide"]].iterrows():
        categories, notes = _pathology(rng, row["tissue"], row)
        writer.writerow(
            [
                row["sample_id"],
                row["tissue"],
                row["subject_id"],
                row["sex"],
                row["age_bracket"],
                row["hardy_scale"],
                categories,
                notes,
            ]
        )
    return out.getvalue().encode()


# =============================================================================================
# Expression: tissue programs + factor-driven genes + noise, as TPM


_FACTOR_GENES = {
    "nuclear_density": ("MKI67", "TOP2A", "PCNA", "MCM2", "TYMS", "CCNB1", "HMGB2", "CDK1"),
    "adipocyte_fraction": ("ADIPOQ", "PLIN1", "LEP", "CIDEA", "CIDEC", "FABP4", "LIPE", "PLIN4"),
    "immune_infiltrate": ("PTPRC", "CD3E", "MS4A1", "CD79A", "CD52", "CORO1A", "LCK", "CD19"),
    "fibrosis": ("COL1A1", "COL1A2", "COL3A1", "FN1", "POSTN", "LUM", "DCN", "THBS2"),
}
_FAMILIES = (
    "ZNF",
    "SLC",
    "TMEM",
    "CCDC",
    "KLHL",
    "ANKRD",
    "LRRC",
    "RBM",
    "TRIM",
    "WDR",
    "ZBTB",
    "KIF",
    "USP",
    "RNF",
    "PRR",
    "FBXO",
    "ARHGAP",
    "DNAH",
    "SPATA",
    "TBC1D",
)
# Names a gene filter should drop: clone-based, accession-based and repeated non-coding RNA names.
_NONSTANDARD_REPEATED = ("Y_RNA", "Metazoa_SRP", "snoU13", "5S_rRNA", "7SK", "U3")


@dataclass
class SimulatedExpression:
    """`tpm[g, s]` is gene `genes.iloc[g]` in RNA sample `sample_ids[s]`."""

    genes: pd.DataFrame  # gene_id, symbol, kind, factor ("" unless kind == "image"), effect
    sample_ids: list[str]
    tpm: np.ndarray


def _nonstandard_name(rng: np.random.Generator, i: int) -> str:
    pick = i % 4
    if pick == 0:
        letter = chr(65 + rng.integers(0, 26))
        return f"RP11-{rng.integers(1, 999)}{letter}{rng.integers(1, 24)}.{rng.integers(1, 9)}"
    if pick == 1:
        return f"AC0{rng.integers(10000, 99999)}.{rng.integers(1, 6)}"
    if pick == 2:
        letter = chr(65 + rng.integers(0, 26))
        return f"CTD-{rng.integers(2000, 3200)}{letter}{rng.integers(1, 24)}.{rng.integers(1, 4)}"
    return _NONSTANDARD_REPEATED[(i // 4) % len(_NONSTANDARD_REPEATED)]


def simulate_expression(plan: pd.DataFrame, n_genes: int = DEFAULT_GENES, seed: int = 0) -> SimulatedExpression:
    """log2(1+TPM) = tissue program + effect * factor + noise, for the plan's samples with RNA.

    Gene kinds (column `kind`), so each gene filter has something to remove:
    `low` (never above logTPM 5), `flat` (high but SD < 0.5), `nonstandard` and `duplicate`
    (expressed and variable, removable only by name), `tissue` (tissue programs), `noise`
    (variable, unrelated to anything) and `image` (driven by one morphology factor).
    """
    if n_genes < 100:
        raise ValueError("n_genes must be at least 100")
    rng = np.random.default_rng([seed, 4])
    samples = plan[plan["has_expression"]].sort_values("rna_sample_id").reset_index(drop=True)
    tissue_names = sorted(samples["tissue"].unique())
    t_index = samples["tissue"].map({t: i for i, t in enumerate(tissue_names)}).to_numpy()
    n_s, n_t = len(samples), len(tissue_names)
    per_factor = max(2, min(8, n_genes // 150))
    counts = {
        "image": per_factor * len(FACTORS),
        "nonstandard": max(8, round(0.04 * n_genes)),
        "duplicate": 2 * max(2, round(0.004 * n_genes)),
        "low": round(0.35 * n_genes),
        "flat": round(0.08 * n_genes),
        "tissue": round(0.3 * n_genes),
    }
    counts["noise"] = n_genes - sum(counts.values())
    kinds = np.concatenate([[k] * n for k, n in counts.items()])
    rng.shuffle(kinds)
    noise = rng.standard_normal((n_genes, n_s)).astype(np.float64)
    # Tissue programs; hard pairs share 80% of theirs.
    offsets = rng.normal(0, 1.2, (n_genes, n_t))
    markers = rng.integers(0, n_t, n_genes)
    offsets[np.arange(n_genes), markers] += rng.uniform(2, 5, n_genes)
    for a, b in HARD_PAIRS:
        if a in tissue_names and b in tissue_names:
            ia, ib = tissue_names.index(a), tissue_names.index(b)
            shared = rng.random(n_genes) < 0.8
            offsets[shared, ib] = offsets[shared, ia] + rng.normal(0, 0.3, int(shared.sum()))
    program = offsets[:, t_index]
    values = np.empty((n_genes, n_s))
    factor_of = np.full(n_genes, "", dtype=object)
    effect = np.zeros(n_genes)
    factor_cycle = iter(np.repeat(FACTORS, per_factor))
    for g, kind in enumerate(kinds):
        if kind == "low":
            values[g] = np.clip(rng.uniform(-1, 3) + 0.6 * noise[g], 0, 4.8)
        elif kind == "flat":
            values[g] = rng.uniform(6, 11) + 0.12 * noise[g]
        elif kind == "tissue":
            values[g] = rng.uniform(3, 7) + program[g] + 0.45 * noise[g]
        elif kind == "image":
            factor = next(factor_cycle)
            factor_of[g], effect[g] = factor, round(float(rng.uniform(2.5, 4.0)), 3)
            level = samples[factor].to_numpy()
            values[g] = rng.uniform(5, 8) + 0.4 * program[g] + effect[g] * level + 0.35 * noise[g]
        else:  # noise, nonstandard, duplicate: expressed and variable
            values[g] = rng.uniform(5, 9) + rng.uniform(0.6, 1.2) * noise[g]
    values = np.maximum(values, 0.0)
    symbols = _gene_symbols(rng, kinds, factor_of)
    ids = np.sort(rng.choice(np.arange(100_000, 300_000), n_genes, replace=False))
    versions = rng.integers(1, 18, n_genes)
    genes = pd.DataFrame(
        {
            "gene_id": [f"ENSG00000{i:06d}.{v}" for i, v in zip(ids, versions, strict=True)],
            "symbol": symbols,
            "kind": kinds,
            "factor": factor_of.astype(str),
            "effect": effect,
        }
    )
    return SimulatedExpression(genes, samples["rna_sample_id"].tolist(), np.exp2(values) - 1.0)


def _gene_symbols(rng: np.random.Generator, kinds: np.ndarray, factor_of: np.ndarray) -> list[str]:
    """Unique standard-looking symbols, except the `nonstandard` and `duplicate` kinds."""
    reserved = {s for names in _FACTOR_GENES.values() for s in names}
    pool = [f"{family}{n}" for family in _FAMILIES for n in range(1, 400)]
    pool = [s for s in rng.permutation(pool).tolist() if s not in reserved]
    used_factor = {f: 0 for f in FACTORS}
    symbols: list[str] = []
    duplicate_names: list[str] = []
    nonstandard_i = 0
    for g, kind in enumerate(kinds):
        if kind == "image":
            factor = factor_of[g]
            names = _FACTOR_GENES[factor]
            symbols.append(names[used_factor[factor]] if used_factor[factor] < len(names) else pool.pop())
            used_factor[factor] += 1
        elif kind == "nonstandard":
            symbols.append(_nonstandard_name(rng, nonstandard_i))
            nonstandard_i += 1
        elif kind == "duplicate":
            # Pairs: every name is used by exactly two Ensembl IDs (as e.g. PINX1 in GENCODE 26).
            if duplicate_names and len(duplicate_names) % 2 == 1:
                symbols.append(duplicate_names[-1])
            else:
                symbols.append(pool.pop())
            duplicate_names.append(symbols[-1])
        else:
            symbols.append(pool.pop())
    return symbols


def _gct_bytes(expression: SimulatedExpression) -> bytes:
    """GCT 1.2 text, gzipped reproducibly (no timestamp or file name in the gzip header)."""
    lines = [
        "#1.2",
        f"{len(expression.genes)}\t{len(expression.sample_ids)}",
        "\t".join(["Name", "Description", *expression.sample_ids]),
    ]
    for (gene_id, symbol), row in zip(
        expression.genes[["gene_id", "symbol"]].itertuples(index=False), expression.tpm, strict=True
    ):
        lines.append("\t".join([gene_id, symbol, *(f"{v:.4g}" for v in row)]))
    raw = ("\n".join(lines) + "\n").encode()
    out = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=out, mtime=0, compresslevel=6) as handle:
        handle.write(raw)
    return out.getvalue()


# =============================================================================================
# The dataset folder


def _make_slide(task: dict[str, Any]) -> str:
    """Worker: render one slide and write it as SVS; returns the sample ID."""
    rgb = render_slide(task["tissue"], task["factors"], task["width"], task["height"], task["seed"], task["artifacts"])
    write_aperio_svs(task["path"], rgb, image_id=task["image_id"])
    return task["sample_id"]


def _pool_context() -> multiprocessing.context.BaseContext:
    # forkserver/spawn: safe when the caller has threads (Streamlit, the job heartbeat).
    methods = multiprocessing.get_all_start_methods()
    return multiprocessing.get_context("forkserver" if "forkserver" in methods else "spawn")


def make_demo_cohort(
    out_dir: str | Path,
    seed: int = 0,
    n_donors: int = DEFAULT_DONORS,
    n_tissues: int = len(TISSUES),
    slide_size: tuple[int, int] = DEFAULT_SLIDE_SIZE,
    n_genes: int = DEFAULT_GENES,
    workers: int = 2,
    progress: ProgressFn | None = None,
) -> Path:
    """Write the demo cohort into `out_dir` (slides/, histology CSV, GCT, truth.json) and return it.

    `slide_size` is (width, height) at level 0. The completion marker is written last and removed
    first, so a folder without it is incomplete. Bad sizes raise DataError naming `out_dir`.
    """
    out = Path(out_dir)
    width, height = (int(v) for v in slide_size)
    problems = [
        (n_donors < 2, f"need at least 2 donors (got {n_donors})"),
        (not 1 <= n_tissues <= len(TISSUES), f"n_tissues must be 1..{len(TISSUES)} (got {n_tissues})"),
        (min(width, height) < 256 or max(width, height) > 20000, f"slide size {width}x{height} outside 256..20000 px"),
        (n_genes < 100, f"need at least 100 genes (got {n_genes})"),
        (workers < 1, f"workers must be >= 1 (got {workers})"),
    ]
    for bad, problem in problems:
        if bad:
            raise DataError(out, problem)
    out.mkdir(parents=True, exist_ok=True)
    (out / COMPLETE_MARKER).unlink(missing_ok=True)
    slides_dir = out / SLIDES_DIR
    slides_dir.mkdir(exist_ok=True)
    report = progress or (lambda done, total, message: None)

    plan = plan_cohort(seed, n_donors, TISSUES[:n_tissues], slide_size=(width, height))
    slides = plan[plan["has_slide"]]
    total = len(slides) + 1
    report(0, total, "writing the histology table and expression matrix")
    expression = simulate_expression(plan, n_genes, seed)
    atomic_write_bytes(out / HISTOLOGY_CSV, _histology_csv(plan, seed))
    atomic_write_bytes(out / EXPRESSION_GCT, _gct_bytes(expression))
    atomic_write_json(out / TRUTH_JSON, _truth(plan, expression, seed, width, height, n_genes))
    report(1, total, "tables written")

    wanted = {f"{sid}.svs" for sid in slides["sample_id"]}
    for stale in slides_dir.glob("*.svs"):
        if stale.name not in wanted:  # from an earlier cohort with other sizes
            stale.unlink()
    tasks = [
        {
            "sample_id": row.sample_id,
            "tissue": row.tissue,
            "factors": {name: getattr(row, name) for name in FACTORS},
            "width": width,
            "height": height,
            "seed": row.slide_seed,
            "artifacts": row.artifacts,
            "path": str(slides_dir / f"{row.sample_id}.svs"),
            "image_id": 100000 + i,
        }
        for i, row in enumerate(slides.itertuples(index=False))
    ]
    done = 1
    if workers == 1 or len(tasks) < 2:
        for task in tasks:
            done += 1
            report(done, total, f"slide {_make_slide(task)}")
    else:
        with ProcessPoolExecutor(max_workers=min(workers, len(tasks)), mp_context=_pool_context()) as pool:
            futures = [pool.submit(_make_slide, task) for task in tasks]
            try:
                for future in as_completed(futures):
                    done += 1
                    report(done, total, f"slide {future.result()}")
            except BaseException:
                for future in futures:
                    future.cancel()
                raise
    marker = {
        "generator_version": GENERATOR_VERSION,
        "seed": seed,
        "n_donors": n_donors,
        "n_tissues": n_tissues,
        "slide_size": [width, height],
        "n_genes": n_genes,
        "slides": len(tasks),
    }
    atomic_write_json(out / COMPLETE_MARKER, marker)
    return out


def _truth(
    plan: pd.DataFrame, expression: SimulatedExpression, seed: int, width: int, height: int, n_genes: int
) -> dict[str, Any]:
    """What was planted, for checking models against: factors, image-linked genes, artifacts."""
    genes = expression.genes
    image = genes[genes["kind"] == "image"]
    return {
        "generator_version": GENERATOR_VERSION,
        "seed": seed,
        "slide_size": [width, height],
        "mpp": MPP,
        "magnification": APP_MAG,
        "factors": list(FACTORS),
        "factor_meaning": {
            "nuclear_density": "cells per area (all nuclei scale with 0.6 + 0.8 * value)",
            "adipocyte_fraction": "fat: more adipocytes (adipose, breast, skin, muscle), fat islands, liver steatosis",
            "immune_infiltrate": "lymphoid aggregates and scattered lymphocytes",
            "fibrosis": "denser, thicker collagen and paucicellular scars",
        },
        "image_genes": [
            {"gene_id": r.gene_id, "symbol": r.symbol, "factor": r.factor, "effect": float(r.effect)}
            for r in image.itertuples(index=False)
        ],
        "expression_model": "log2(1+TPM) = base + tissue program + effect * factor + N(0, 0.35)",
        "gene_kinds": {kind: int(n) for kind, n in genes["kind"].value_counts().sort_index().items()},
        "genes": [{"gene_id": r.gene_id, "symbol": r.symbol, "kind": r.kind} for r in genes.itertuples(index=False)],
        "samples": [
            {
                "sample_id": r.sample_id,
                "rna_sample_id": r.rna_sample_id,
                "tissue": r.tissue,
                "subject_id": r.subject_id,
                "has_slide": bool(r.has_slide),
                "has_expression": bool(r.has_expression),
                "factors": {name: float(getattr(r, name)) for name in FACTORS},
                "artifacts": r.artifacts,
            }
            for r in plan.itertuples(index=False)
        ],
    }


def demo_is_ready(ws: Workspace) -> bool:
    """True when the workspace's demo cohort is complete and made by this generator version."""
    marker = ws.demo_dir / COMPLETE_MARKER
    try:
        return json.loads(marker.read_text()).get("generator_version") == GENERATOR_VERSION
    except (OSError, ValueError):
        return False


def ensure_demo_cohort(
    ws: Workspace, progress: ProgressFn | None = None, *, force: bool = False, **options: Any
) -> Path:
    """The demo cohort in `ws.demo_dir`, generated once (again if incomplete, outdated or `force`).

    A file lock in the workspace makes concurrent callers wait for one generation instead of
    writing the same folder twice. `options` go to `make_demo_cohort` (sizes, seed, workers).
    """
    ws.root.mkdir(parents=True, exist_ok=True)
    with open(ws.root / LOCK_NAME, "a+") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            if demo_is_ready(ws) and not force:
                return ws.demo_dir
            if ws.demo_dir.exists():
                shutil.rmtree(ws.demo_dir)
            return make_demo_cohort(ws.demo_dir, progress=progress, **options)
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
