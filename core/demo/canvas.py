"""The painting surface: optical-density layers at 1 um/px ("draw" resolution, half of level 0),
coarse fields at 2 um/px, and the primitives (noise, Voronoi cells, stripes, sprites) that fill them.
"""

from __future__ import annotations

import math
from functools import lru_cache
from typing import Any

import numpy as np
import pyarrow as pa
from PIL import Image

DRAW_SCALE = 2  # level-0 px per draw px; at 0.5 um/px level 0 a draw px is 1 um
FIELD_SCALE = 2  # draw px per field px (2 um)


def image_array(image: Image.Image) -> np.ndarray:
    """A read-only array view of a PIL image, without copying where Pillow can share its memory.

    `np.asarray(image)` goes through `tobytes()` (two copies: it cost as much as the resize
    before it); Pillow's Arrow export shares an image held in one memory block.
    """
    try:
        flat = pa.array(image).to_numpy(zero_copy_only=True)
    except (ValueError, TypeError, pa.ArrowException):  # rows in several blocks, or a mode Arrow lacks
        return np.asarray(image)
    bands = len(image.getbands())
    shape = (image.height, image.width) if bands == 1 else (image.height, image.width, bands)
    return flat.reshape(shape)


def resize_field(field: np.ndarray, shape: tuple[int, int], resample: int = Image.BILINEAR) -> np.ndarray:
    """Float32 2-D array resampled to `shape` (rows, cols) by PIL (fast, deterministic)."""
    if field.shape == shape:
        return field.astype(np.float32, copy=False)
    image = Image.fromarray(np.ascontiguousarray(field, dtype=np.float32), mode="F")
    return image_array(image.resize((shape[1], shape[0]), resample))


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


class Canvas:
    """One slide being painted: stain layers at draw resolution plus helpers to fill them.

    Painting is ordered like a collage: `carve`/`cut` make empty space (lumens, fat vacuoles, air)
    by removing what was painted before; what is painted afterwards sits on top.
    """

    def __init__(self, rng: np.random.Generator, height: int, width: int, factors: dict[str, float]) -> None:
        self.rng = rng
        self.h, self.w = height, width
        self.fh, self.fw = -(-height // FIELD_SCALE), -(-width // FIELD_SCALE)
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
        self.fy, self.fx = yy * FIELD_SCALE, xx * FIELD_SCALE  # field pixel centres in um

    # -- fields ---------------------------------------------------------------------------
    def noise(self, feature_um: float, draw: bool = False) -> np.ndarray:
        """Smooth random field, roughly N(0, 1), varying over `feature_um`."""
        shape = (self.h, self.w) if draw else (self.fh, self.fw)
        px = feature_um / (1 if draw else FIELD_SCALE)
        small = (max(2, int(shape[0] / px) + 2), max(2, int(shape[1] / px) + 2))
        coarse = self.rng.standard_normal(small).astype(np.float32)
        return resize_field(coarse, shape, Image.BICUBIC)

    def up(self, field: np.ndarray) -> np.ndarray:
        """A field-resolution array at draw resolution."""
        return resize_field(field, (self.h, self.w))

    def up_box(self, field: np.ndarray) -> tuple[slice, slice, np.ndarray]:
        """`up(field)` over the box around `field`'s non-zero pixels: (rows, cols, values), where values
        equal `self.up(field)[rows, cols]` exactly and `self.up(field)` is 0 everywhere else.

        A lymphoid aggregate or a portal tract covers a few percent of the slide; upsampling only its box
        saves a full-slide resize per structure. The box keeps two zero pixels of margin: bilinear taps reach
        one pixel, so the crop's own edge (where PIL renormalises its weights) only ever sees zeros.
        """
        if (self.h, self.w) != (2 * self.fh, 2 * self.fw) or field.shape != (self.fh, self.fw):
            return slice(None), slice(None), self.up(field)  # not an exact 2x: crops would shift the taps
        rows, cols = np.flatnonzero(field.any(axis=1)), np.flatnonzero(field.any(axis=0))
        if rows.size == 0:
            return slice(0, 0), slice(0, 0), np.zeros((0, 0), np.float32)
        r0, r1 = max(0, int(rows[0]) - 2), min(self.fh, int(rows[-1]) + 3)
        c0, c1 = max(0, int(cols[0]) - 2), min(self.fw, int(cols[-1]) + 3)
        values = resize_field(field[r0:r1, c0:c1], (2 * (r1 - r0), 2 * (c1 - c0)))
        return slice(2 * r0, 2 * r1), slice(2 * c0, 2 * c1), values

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
        offsets = np.array([dv * nu + du for du in (-1, 0, 1) for dv in (-1, 0, 1)], np.int32)
        closest = np.zeros(u.shape, np.int8)  # which of the 9 neighbours is nearest; one gather at the end
        for k, offset in enumerate(offsets):
            neighbour = cell + offset
            du, dv = k // 3 - 1, k % 3 - 1
            d_u = (du + jit_u.take(neighbour) - frac_u) * stretch
            d_v = dv + jit_v.take(neighbour) - frac_v
            d = np.sqrt(d_u * d_u + d_v * d_v)
            np.copyto(closest, k, where=d < f1)
            np.minimum(f2, np.maximum(f1, d), out=f2)
            np.minimum(f1, d, out=f1)
        nearest = rand_flat.take(cell + offsets.take(closest))
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
            f1, f2 = resize_field(f1, shape), resize_field(f2, shape)
            nearest = resize_field(nearest, shape, Image.NEAREST)
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
        return field[points[0] // FIELD_SCALE, points[1] // FIELD_SCALE]

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

    def carve_field(self, field: np.ndarray) -> None:
        """`carve(up(field))`, touching only the box where `field` is non-zero (carving 0 changes nothing)."""
        rows, cols, amount = self.up_box(field)
        self.carve(amount, rows, cols)

    def carve(self, amount: np.ndarray, rows: slice = slice(None), cols: slice = slice(None)) -> None:
        """Empty space over a whole field (draw resolution, 0..1), or over its box `rows, cols`: air, fat
        vacuoles, clefts."""
        keep = 1.0 - np.clip(amount, 0.0, 1.0)
        for layer in (self.hema, self.eosin, self.nuclei, self.blood):
            layer[rows, cols] *= keep
        np.maximum(self.open[rows, cols], 1.0 - keep, out=self.open[rows, cols])

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
                rows, cols, values = self.up_box(value)
                layer[rows, cols] += values
            else:
                layer += value
