"""A GTEx-size whole-slide image for the benchmarks, generated on demand from real H&E.

    .venv/bin/python benchmarks/gtex_slide.py [--width 40000 --height 30000 --seed 0 --out PATH]

`make_gtex_size_svs(path=None, width=40000, height=30000, seed=0) -> Path` writes a pyramidal Aperio
SVS laid out like a scanner's (tiled JPEG/RGB level 0 with 240 px tiles at Q=70, a stripped thumbnail,
levels downsampled 4x, 16x and 32x, then label and macro images; AppMag 20, MPP 0.499), and reuses
the file when it is already there with the same parameters. By default it goes to
`benchmarks/out/` (git-ignored).

The pixels are real: the tissue is the H&E of `CMU-1-Small-Region.svs` (../shared/testdata), cut
into 640 px windows that lie wholly in its dense tissue, each turned by one of the 8 rotations and
mirrorings and laid on a 512 px grid with 64 px cross-fades (no hard seams), inside a tissue-shaped
mask (smooth random blobs covering 58% of the slide, as a GTEx section roughly does) over glass of
the real slide's background colour. So JPEG decoding, the QC metrics and the share of tiles that
pass behave as on a real scan, at GTEx size.

Level 0 is produced 240 rows at a time and streamed into the TIFF writer tile by tile; only the 4x
level (1/16 of the pixels, 225 MB at the default size) is held in memory until it is written.
Everything derives from `seed`: the same arguments give the same pixels.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import tifffile
from PIL import Image
from scipy import ndimage

REPO = Path(__file__).resolve().parents[1]
OUT_DIR = REPO / "benchmarks" / "out"
SOURCE_SVS = REPO.parent / "shared" / "testdata" / "CMU-1-Small-Region.svs"

GENERATOR_VERSION = "1"  # bump when the pixels change, so an old file is not reused
TILE = 240  # Aperio's JPEG tile
QUALITY = 70
DOWNSAMPLES = (4, 16, 32)  # pyramid levels below level 0, as an Aperio scanner writes them
TISSUE_SHARE = 0.58
MPP = 0.499
APP_MAG = 20
CELL = 512  # grid step of the tissue patches (level-0 px)
FEATHER = 64  # each patch reaches this far into its neighbours; weights cross-fade there
PATCH = CELL + 2 * FEATHER
_ORIGIN = CELL // 2 + FEATHER  # the grid starts half a cell outside the slide, so its border is not faded
SOURCE_WINDOWS = 96  # distinct source windows sampled from the real slide's tissue
SHAPE_GRID = 64  # level-0 px per sample of the tissue-shape field
EDGE_PX = 4.0  # tissue edge softness (px)


# ---------------------------------------------------------------------------------------------
# The real tissue: windows of CMU-1 that lie wholly in dense tissue


def _stained(rgb: np.ndarray) -> np.ndarray:
    planes = rgb.astype(np.int16)
    top = planes.max(axis=2)
    spread = top - planes.min(axis=2)
    return (spread > 0.07 * top) & (top < 235)


class _TissueSource:
    """Windows of the real slide's dense tissue and the colour of its glass."""

    def __init__(self, svs: Path, rng: np.random.Generator) -> None:
        import slideio  # the project's reader; imported late so `--help` works without it

        scene = slideio.open_slide(str(svs), "SVS").get_scene(0)
        rgb = np.ascontiguousarray(scene.read_block(scene.rect)[..., :3])
        stained = _stained(rgb)
        block = 8
        rows, cols = rgb.shape[0] // block, rgb.shape[1] // block
        pooled = stained[: rows * block, : cols * block].reshape(rows, block, cols, block).mean(axis=(1, 3))
        tissue = ndimage.binary_fill_holes(ndimage.binary_closing(pooled > 0.25, iterations=2))
        k = PATCH // block

        def window_sums(values: np.ndarray) -> np.ndarray:
            integral = np.pad(values.astype(np.float64).cumsum(0).cumsum(1), ((1, 0), (1, 0)))
            return (integral[k:, k:] - integral[:-k, k:] - integral[k:, :-k] + integral[:-k, :-k]) / (k * k)

        inside = window_sums(tissue) >= 0.999
        dense = window_sums(pooled) > 0.8  # mostly stained, not the loose stroma at the edges
        ys, xs = np.nonzero(inside & dense)
        if ys.size == 0:
            raise RuntimeError(f"{svs}: no {PATCH} px window lies wholly in tissue")
        pick = rng.choice(ys.size, size=min(SOURCE_WINDOWS, ys.size), replace=False)
        self.windows = [
            rgb[y * block : y * block + PATCH, x * block : x * block + PATCH].copy()
            for y, x in zip(ys[pick], xs[pick], strict=True)
        ]
        glass = rgb[~ndimage.binary_dilation(stained, iterations=8)]
        self.glass = np.median(glass, axis=0).astype(np.float32)

    def patch(self, index: int, turn: int) -> np.ndarray:
        """Window `index` turned by dihedral transform `turn` (0-7): 4 rotations, each optionally mirrored."""
        window = np.rot90(self.windows[index], turn % 4)
        return window[:, ::-1] if turn >= 4 else window


# ---------------------------------------------------------------------------------------------
# The slide's layout: tissue-shape field and per-cell patch choice


def _smooth_noise(rng: np.random.Generator, shape: tuple[int, int], feature: float) -> np.ndarray:
    small = (max(2, int(shape[0] / feature) + 2), max(2, int(shape[1] / feature) + 2))
    coarse = Image.fromarray(rng.standard_normal(small).astype(np.float32), mode="F")
    return np.asarray(coarse.resize((shape[1], shape[0]), Image.BICUBIC), dtype=np.float32)


def _shape_field(rng: np.random.Generator, width: int, height: int) -> tuple[np.ndarray, float, float]:
    """(field on a SHAPE_GRID grid, threshold giving TISSUE_SHARE tissue, gain giving EDGE_PX edges)."""
    shape = (height // SHAPE_GRID + 2, width // SHAPE_GRID + 2)
    side = max(shape)
    field = (
        _smooth_noise(rng, shape, side / 3)
        + 0.35 * _smooth_noise(rng, shape, side / 12)
        + 0.12 * _smooth_noise(rng, shape, side / 40)
    )
    # Glass along the slide's borders, as a section sits inside the cover slip.
    yy, xx = np.mgrid[0 : shape[0], 0 : shape[1]].astype(np.float32)
    border = np.minimum(np.minimum(yy, shape[0] - 1 - yy) / shape[0], np.minimum(xx, shape[1] - 1 - xx) / shape[1])
    field -= 5.0 * (np.clip(0.2 - border, 0, None) / 0.2) ** 2
    threshold = float(np.quantile(field[:-1, :-1], 1.0 - TISSUE_SHARE))
    gy, gx = np.gradient(field)
    per_px = float(np.median(np.hypot(gy, gx))) / SHAPE_GRID
    return field, threshold, 1.0 / max(per_px * EDGE_PX, 1e-9)


def _interp_axis(length: int, start: int, count: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Bilinear lookup along one axis: level-0 px start..start+count -> grid indices and weights."""
    pos = (np.arange(start, start + count, dtype=np.float32) + 0.5) / SHAPE_GRID - 0.5
    pos = np.clip(pos, 0, length - 1.001)
    low = pos.astype(np.int64)
    return low, low + 1, (pos - low).astype(np.float32)


def _ramp(count: int, offset: int) -> np.ndarray:
    """1-D cross-fade weights of a patch over `count` px starting `offset` px into it (sum to 1 across cells)."""
    u = np.arange(offset, offset + count, dtype=np.float32) + 0.5
    return np.clip(u / (2 * FEATHER), 0, 1) * np.clip((PATCH - u) / (2 * FEATHER), 0, 1)


class _Layout:
    def __init__(self, source: _TissueSource, width: int, height: int, seed: int) -> None:
        self.source, self.width, self.height, self.seed = source, width, height, seed
        self.field, self.threshold, self.gain = _shape_field(np.random.default_rng([seed, 1]), width, height)
        rng = np.random.default_rng([seed, 2])
        cells = (height // CELL + 2, width // CELL + 2)
        self.choice = rng.integers(0, len(source.windows), cells)
        self.turn = rng.integers(0, 8, cells)
        period = 509  # sensor noise on glass, one patch repeated with an odd period
        self.noise = (rng.standard_normal((period, period)) * 1.2).astype(np.float32)

    def alpha(self, y0: int, rows: int) -> np.ndarray:
        """Tissue opacity (rows, width) for level-0 rows y0..y0+rows."""
        f = self.field
        r0, r1, ry = _interp_axis(f.shape[0], y0, rows)
        c0, c1, cx = _interp_axis(f.shape[1], 0, self.width)
        along = f[r0] * (1 - ry)[:, None] + f[r1] * ry[:, None]  # (rows, grid columns)
        full = along[:, c0] * (1 - cx) + along[:, c1] * cx
        return np.clip((full - self.threshold) * self.gain + 0.5, 0.0, 1.0)

    def strip(self, y0: int, rows: int) -> np.ndarray:
        """uint8 RGB (rows, width, 3) of level-0 rows y0..y0+rows."""
        width = self.width
        alpha = self.alpha(y0, rows)
        tissue = np.zeros((rows, width, 3), np.float32)
        # Cells whose patch (cell +- FEATHER) reaches these rows.
        first, last = (y0 - _ORIGIN - CELL) // CELL + 1, (y0 + rows + _ORIGIN - 1) // CELL
        for cy in range(max(first, 0), last + 1):
            top = cy * CELL - _ORIGIN
            a, b = max(y0, top), min(y0 + rows, top + PATCH)
            if a >= b:
                continue
            wy = _ramp(b - a, a - top)
            for cx in range(0, (width + _ORIGIN) // CELL + 1):
                left = cx * CELL - _ORIGIN
                c, d = max(0, left), min(width, left + PATCH)
                if c >= d or not alpha[a - y0 : b - y0, c:d].any():
                    continue
                patch = self.source.patch(int(self.choice[cy, cx]), int(self.turn[cy, cx]))
                piece = patch[a - top : b - top, c - left : d - left].astype(np.float32)
                weight = wy[:, None] * _ramp(d - c, c - left)[None, :]
                tissue[a - y0 : b - y0, c:d] += piece * weight[..., None]
        period = self.noise.shape[0]
        rows_noise = self.noise[(np.arange(y0, y0 + rows) % period)]
        glass = np.tile(rows_noise, (1, -(-width // period)))[:, :width, None] + self.source.glass  # (rows, width, 3)
        # In place (the strip is ~100 MB of float32): out = glass + (tissue - glass) * alpha.
        tissue -= glass
        tissue *= alpha[..., None]
        tissue += glass + 0.5
        return np.clip(tissue, 0, 255, out=tissue).astype(np.uint8)


# ---------------------------------------------------------------------------------------------
# Writing the SVS


def _box_reduce(image: np.ndarray, factor: int) -> np.ndarray:
    """Area average over factor x factor blocks (a partial last block is dropped)."""
    h, w = image.shape[0] // factor, image.shape[1] // factor
    return np.asarray(Image.fromarray(np.ascontiguousarray(image[: h * factor, : w * factor])).reduce(factor))


def _tiles(image: np.ndarray) -> Iterator[np.ndarray]:
    """Tiles of a strip TILE rows high, left to right, padded to full tiles."""
    for x in range(0, image.shape[1], TILE):
        tile = image[:, x : x + TILE]
        if tile.shape[:2] != (TILE, TILE):
            tile = np.pad(tile, ((0, TILE - tile.shape[0]), (0, TILE - tile.shape[1]), (0, 0)), mode="edge")
        yield tile


def _marker(width: int, height: int, seed: int) -> str:
    return f"HistoGeneBench = gtex-size v{GENERATOR_VERSION} {width}x{height} seed {seed}"


def default_path(width: int = 40000, height: int = 30000, seed: int = 0) -> Path:
    return OUT_DIR / f"gtex_size_{width}x{height}_seed{seed}_v{GENERATOR_VERSION}.svs"


def _is_current(path: Path, width: int, height: int, seed: int) -> bool:
    try:
        with tifffile.TiffFile(path) as tif:
            return _marker(width, height, seed) in (tif.pages[0].description or "")
    except Exception:
        return False


def make_gtex_size_svs(
    path: str | Path | None = None, width: int = 40000, height: int = 30000, seed: int = 0, verbose: bool = False
) -> Path:
    """Write (or reuse) a `width` x `height` pyramidal Aperio SVS of real H&E tissue; returns its path."""
    path = Path(path) if path is not None else default_path(width, height, seed)
    if path.is_file() and _is_current(path, width, height, seed):
        return path
    if width < 4 * TILE or height < 4 * TILE:
        raise ValueError(f"slide {width}x{height} is too small; each side must be at least {4 * TILE} px")
    if not SOURCE_SVS.is_file():
        raise FileNotFoundError(f"{SOURCE_SVS}: the real H&E source slide is missing (../shared/testdata)")
    start = time.perf_counter()
    layout = _Layout(_TissueSource(SOURCE_SVS, np.random.default_rng([seed, 0])), width, height, seed)
    first = DOWNSAMPLES[0]
    level1 = np.empty((height // first, width // first, 3), np.uint8)
    strip_rows = TILE - TILE % first  # a multiple of the first downsample (240 already is)

    def level0_tiles() -> Iterator[np.ndarray]:
        for y0 in range(0, height, strip_rows):
            rows = min(strip_rows, height - y0)
            strip = layout.strip(y0, rows)
            reduced = _box_reduce(strip, first)
            level1[y0 // first : y0 // first + reduced.shape[0]] = reduced[:, : level1.shape[1]]
            yield from _tiles(strip)
            if verbose and (y0 // strip_rows) % 25 == 0:
                print(f"  level 0: {y0 + rows}/{height} rows, {time.perf_counter() - start:.0f} s", file=sys.stderr)

    name = path.stem
    fields = (
        f"AppMag = {APP_MAG}|StripeWidth = 2040|ScanScope ID = SS0000|Filename = {name}|Date = 01/01/16"
        f"|Time = 12:00:00|Time Zone = GMT+00:00|User = histogene-bench|MPP = {MPP:.4f}|Left = 20.0|Top = 20.0"
        f"|OriginalWidth = {width}|OriginalHeight = {height}|Title = GTEx-size slide of CMU-1 H&E"
        f"|{_marker(width, height, seed)}"
    )
    size = f"{width}x{height}"
    header = f"Aperio Image Library v12.0.0 \r\n{size} [0,0 {size}] ({TILE}x{TILE}) JPEG/RGB Q={QUALITY}"
    jpeg = {"compression": "jpeg", "compressionargs": {"level": QUALITY}, "photometric": "rgb", "metadata": None}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with tifffile.TiffWriter(tmp, bigtiff=True) as tif:
            tif.write(level0_tiles(), shape=(height, width, 3), dtype=np.uint8, tile=(TILE, TILE),
                      description=f"{header}|{fields}", software=False, **jpeg)
            thumb_scale = max(width, height) / 1024
            thumb_size = (max(1, round(width / thumb_scale)), max(1, round(height / thumb_scale)))
            thumb = np.asarray(Image.fromarray(level1).resize(thumb_size, Image.BOX))
            thumb_text = f"{size} -> {thumb_size[0]}x{thumb_size[1]} - "
            tif.write(thumb, rowsperstrip=16, description=f"Aperio Image Library v12.0.0 \r\n{thumb_text}|{fields}",
                      software=False, **jpeg)
            for downsample in DOWNSAMPLES:
                level = level1 if downsample == first else _box_reduce(level1, downsample // first)
                text = f"{header} -> {level.shape[1]}x{level.shape[0]} JPEG/RGB Q={QUALITY}|{fields}"
                tif.write(level, tile=(TILE, TILE), description=text, software=False, **jpeg)
            label = np.full((400, 380, 3), 250, np.uint8)
            label[40:200, 30:350:4] = 20  # a barcode-like label; its content does not matter here
            tif.write(label, rowsperstrip=16, compression="lzw", photometric="rgb", subfiletype=1, metadata=None,
                      description=f"Aperio Image Library v12.0.0 \r\nlabel {label.shape[1]}x{label.shape[0]}",
                      software=False)
            macro = np.full((431, 1280, 3), 205, np.uint8)
            small = np.asarray(Image.fromarray(thumb).resize((400, max(1, round(400 * height / width)))))[:400]
            macro[(431 - small.shape[0]) // 2 : (431 - small.shape[0]) // 2 + small.shape[0], 440:840] = small
            tif.write(macro, rowsperstrip=16, subfiletype=9, software=False,
                      description=f"Aperio Image Library v12.0.0 \r\nmacro {macro.shape[1]}x{macro.shape[0]}", **jpeg)
        os.replace(tmp, path)  # a reader never sees a half-written slide
    finally:
        tmp.unlink(missing_ok=True)
    if verbose:
        mb = path.stat().st_size / 2**20
        print(f"wrote {path} ({mb:.0f} MB) in {time.perf_counter() - start:.0f} s", file=sys.stderr)
    return path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--width", type=int, default=40000)
    parser.add_argument("--height", type=int, default=30000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=None, help="file to write (default: benchmarks/out/...)")
    args = parser.parse_args()
    print(make_gtex_size_svs(args.out, args.width, args.height, args.seed, verbose=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
