"""Tile index of a cohort: tissue mask, tile grid, quality control and balanced sampling.

Like the GTEx study, tiles are `tile_size` (448) px at the chosen magnification (20x): a 40x slide
gives 896 px level-0 regions read down to 448. The tissue mask comes from a thumbnail, so background
is never read at full resolution; it fills what stained membranes enclose, so fat lobules and lung
count as tissue. Each candidate tile goes through the QC stages of core.qc, in order; the first
failing stage is the tile's `reason`, and every metric is kept so thresholds can be re-tuned from
the index without re-reading slides.

Folds (two layers of section: a darker band of in-focus tissue) have no stage. On the demo cohort no
tile metric told them from dense tissue (a darkness-relative-to-slide test flagged as many clean
tiles as folded ones), so folded tiles mostly pass; `check_qc` reports how many.
`check_qc(index, artifacts)` scores the QC against known artifact boxes (the demo's truth.json).

Tiles are NOT stored as JPEG files (the study did); the index keeps coordinates and `read_tile(row)`
reads pixels on the fly from the slide. Why: a JPEG copy duplicates the slides (about 5 MB per
slide at 100 tiles, far more at the 5,000-per-tissue targets) and re-compresses already
JPEG-compressed pixels; a coordinate index is a few KB per slide, is cached by slide fingerprint
and parameters, and always matches the slide it points at. The training step builds its own resized
uint8 pack from `read_tile`, so the slides are read once per pack, not per epoch.
"""

from __future__ import annotations

import math
import os
import threading
import zlib
from collections.abc import Callable, Mapping
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy import ndimage

from core.cache import cache_key, file_fingerprint
from core.config import Workspace, workspace
from core.dataset import UNKNOWN_TISSUE
from core.errors import DataError
from core.fileio import atomic_path, atomic_write_json, read_json_object
from core.qc import METRIC_COLUMNS, QC_STAGES, QcParams, read_and_qc
from core.slides import Slide, open_slide

INDEX_COLUMNS = {
    "sample_id": "string",
    "tissue": "string",
    "subject_id": "string",
    "slide_path": "string",
    "level": "int32",
    "x": "int64",
    "y": "int64",
    "read_size": "int32",
    "tile_size": "int32",
    "tissue_fraction": "float32",
    "jpeg_kb": "float32",
    "min_piece_std": "float32",
    "min_channel_std": "float32",
    "blur": "float32",
    "pen_fraction": "float32",  # extension of the contract: share of pen-ink pixels
    "blank_share": "float32",  # extension: largest connected run of bare-glass pieces, share of the tile
    "grey_fraction": "float32",  # extension: share of grey (unstained, darker than glass) pixels
    "passed_qc": "bool",
    "reason": "string",
    "selected": "bool",
}
REQUIRED_SAMPLE_COLUMNS = ("sample_id", "tissue", "subject_id", "slide_path")

# Microns per thumbnail pixel assumed when a caller gives none: a 1024 px thumbnail of a
# ~3,500 px demo slide at 0.5 um/px.
DEFAULT_THUMB_UM_PER_PX = 1.75


@dataclass(frozen=True)
class TilingParams(QcParams):
    tile_size: int = 448
    magnification: float = 20.0
    tiles_per_slide: int = 100
    tissue_target: int = 5000
    seed: int = 0
    # Tissue mask on the thumbnail: HSV saturation above this is stained tissue.
    mask_saturation: float = 0.07
    min_tissue_fraction: float = 0.5


@dataclass
class TileIndexResult:
    index: pd.DataFrame
    path: Path
    summary: dict[str, Any]


ProgressFn = Callable[[int, int, str], None]


# ---------------------------------------------------------------------------------------------
# Pixels: tissue mask and per-tile QC metrics


def _disk(radius: int) -> np.ndarray:
    y, x = np.ogrid[-radius : radius + 1, -radius : radius + 1]
    return x * x + y * y <= radius * radius


def stained_pixels(thumbnail: np.ndarray, saturation: float = 0.07) -> np.ndarray:
    """Boolean mask of stained pixels: HSV saturation above `saturation`, value below glass-white."""
    if thumbnail.ndim != 3 or thumbnail.shape[2] < 3:
        raise DataError(None, f"thumbnail must be an RGB image (H, W, 3), got shape {thumbnail.shape}")
    planes = np.ascontiguousarray(np.moveaxis(thumbnail[..., :3], 2, 0))  # planar: 10x faster max/min
    top = np.maximum(np.maximum(planes[0], planes[1]), planes[2]).astype(np.int16)
    spread = top - np.minimum(np.minimum(planes[0], planes[1]), planes[2])
    return (spread > saturation * top) & (top < 0.95 * 255)  # no hue needed


def tissue_mask(
    thumbnail: np.ndarray,
    saturation: float = 0.07,
    um_per_px: float = DEFAULT_THUMB_UM_PER_PX,
    grid_um: float = 8.0,
    close_um: float = 16.0,
    min_area_um2: float = 5_000.0,
) -> np.ndarray:
    """Boolean mask of tissue on a thumbnail of `um_per_px` microns per pixel (same shape).

    Fat and lung are mostly empty space inside thin stained membranes: an opening (the old
    speck filter) erases the membranes and with them whole fat lobules. Instead the stained
    pixels are pooled on a coarse `grid_um` grid (a membrane marks its block), a closing of
    `close_um` reconnects broken membranes, and filling holes turns every enclosed lumen,
    adipocyte or alveolus into tissue. Glass around the tissue is not enclosed and stays out;
    pieces under `min_area_um2` (dust, specks, stray cells) are dropped.
    """
    stained = stained_pixels(thumbnail, saturation)
    height, width = stained.shape
    block = max(1, round(grid_um / um_per_px))
    rows, cols = -(-height // block), -(-width // block)
    padded = np.zeros((rows * block, cols * block), np.uint16)
    padded[:height, :width] = stained
    # A block is stained when a few of its pixels are (one is noise at block = 1, a membrane is more).
    least = 1 if block < 3 else 2
    coarse = padded.reshape(rows, block, cols, block).sum(axis=(1, 3)) >= least
    block_um = block * um_per_px
    radius = max(1, round(close_um / block_um))
    # Padding first, so closing does not glue tissue to the image border.
    coarse = ndimage.binary_closing(np.pad(coarse, radius), structure=_disk(radius))[radius:-radius, radius:-radius]
    coarse = ndimage.binary_fill_holes(coarse)
    labels, count = ndimage.label(coarse)
    if count:
        areas = np.bincount(labels.ravel())[1:] * block_um**2
        coarse = np.concatenate([[False], areas >= min_area_um2])[labels]
    return np.repeat(np.repeat(coarse, block, axis=0), block, axis=1)[:height, :width]


# ---------------------------------------------------------------------------------------------
# One slide: grid, candidates, QC


def _level_for(slide: Slide, downsample: float) -> int:
    """The pyramid level slideio reads for this downsample: the coarsest one not below it."""
    best = 0
    for index, (_, _, level_downsample) in enumerate(slide.info.levels):
        if level_downsample <= downsample * 1.01:
            best = index
    return best


def _candidate_cells(slide: Slide, read_size: int, params: TilingParams) -> list[tuple[int, int, float]]:
    """(x, y, tissue_fraction) of full grid cells whose thumbnail footprint is mostly tissue."""
    info = slide.info
    columns, rows = info.width // read_size, info.height // read_size
    if columns == 0 or rows == 0:
        return []
    # Enough thumbnail pixels that each tile spans at least ~8 of them, within memory reason.
    max_side = min(4096, max(1024, math.ceil(max(info.width, info.height) * 8 / read_size)))
    thumb, scale = slide.thumbnail(max_side)
    mask = tissue_mask(thumb, params.mask_saturation, um_per_px=scale * info.mpp).astype(np.float64)
    integral = np.pad(mask.cumsum(0).cumsum(1), ((1, 0), (1, 0)))
    cells = []
    for row in range(rows):
        for col in range(columns):
            x, y = col * read_size, row * read_size
            x0, y0 = int(x / scale), int(y / scale)
            x1 = max(x0 + 1, min(mask.shape[1], int(round((x + read_size) / scale))))
            y1 = max(y0 + 1, min(mask.shape[0], int(round((y + read_size) / scale))))
            area = (x1 - x0) * (y1 - y0)
            inside = integral[y1, x1] - integral[y0, x1] - integral[y1, x0] + integral[y0, x0]
            fraction = float(inside / area)
            if fraction >= params.min_tissue_fraction:
                cells.append((x, y, fraction))
    return cells


def tile_slide(sample: Mapping[str, Any], params: TilingParams) -> dict[str, Any]:
    """Rows of one slide's candidate tiles with QC metrics, plus slide facts for the summary."""
    path = str(sample["slide_path"])
    tissue = str(sample.get("tissue") or UNKNOWN_TISSUE)
    with open_slide(path) as slide:
        info = slide.info
        read_size = max(1, round(params.tile_size * info.magnification / params.magnification))
        notes = list(info.warnings)
        if read_size < params.tile_size:
            notes.append(
                f"slide is {info.magnification:g}x, below the {params.magnification:g}x asked: tiles are upsampled"
            )
        level = _level_for(slide, read_size / params.tile_size)
        cells = _candidate_cells(slide, read_size, params)
        xs = np.array([c[0] for c in cells], dtype=np.int64)
        ys = np.array([c[1] for c in cells], dtype=np.int64)
        qc = read_and_qc(slide, xs, ys, read_size, params.tile_size, params, tissue)
        rows = [
            {
                "sample_id": str(sample["sample_id"]),
                "tissue": tissue,
                "subject_id": str(sample.get("subject_id") or ""),
                "slide_path": path,
                "level": level,
                "x": int(x),
                "y": int(y),
                "read_size": read_size,
                "tile_size": params.tile_size,
                "tissue_fraction": fraction,
                **{name: float(qc[name][i]) for name in METRIC_COLUMNS},
                "passed_qc": bool(qc["passed_qc"][i]),
                "reason": str(qc["reason"][i]),
                "selected": False,
            }
            for i, (x, y, fraction) in enumerate(cells)
        ]
    slide_facts = {
        "magnification": info.magnification,
        "magnification_assumed": info.magnification_assumed,
        "mpp": info.mpp,
        "mpp_assumed": info.mpp_assumed,
        "width": info.width,
        "height": info.height,
        "read_size": read_size,
        "warnings": notes,
    }
    if not rows:
        slide_facts["note"] = "no tissue found: no grid cell reached the tissue fraction threshold"
    return {"rows": rows, "slide": slide_facts}


def _tile_slide_safely(sample: dict[str, Any], params: TilingParams) -> dict[str, Any]:
    """Worker entry: one bad slide becomes an error entry instead of stopping the pool."""
    try:
        return tile_slide(sample, params)
    except DataError as exc:
        return {"error": str(exc)}
    except Exception as exc:  # a codec crash on one slide must not lose the others
        return {"error": f"{sample.get('slide_path')}: unexpected {type(exc).__name__}: {exc}"}


# ---------------------------------------------------------------------------------------------
# Balanced sampling


def _allocate(available: np.ndarray, per_slide: int, target: int) -> np.ndarray:
    """Tiles to take per slide: at least `per_slide` (or enough to reach `target` together), capped
    by what each slide has; a shortfall is topped up from slides with tiles to spare."""
    if available.size == 0:
        return available.copy()
    quota = max(per_slide, math.ceil(target / available.size))
    take = np.minimum(available, quota)
    if take.sum() < target and take.sum() < available.sum():
        # Water-filling: the lowest common cap that reaches the target, then trim the overshoot.
        low, high = quota, int(available.max())
        while low < high:
            mid = (low + high) // 2
            if np.minimum(available, mid).sum() >= target:
                high = mid
            else:
                low = mid + 1
        take = np.minimum(available, low)
        overshoot = int(take.sum()) - target  # fewer than the slides sitting at the cap
        for i in np.flatnonzero(take == low)[::-1][: max(overshoot, 0)]:
            take[i] -= 1
    return take


def select_balanced(index: pd.DataFrame, params: TilingParams) -> np.ndarray:
    """Boolean mask of the tiles chosen (seeded) among QC-passed ones, balanced across tissues."""
    chosen = np.zeros(len(index), dtype=bool)
    if index.empty:
        return chosen
    passed = index[index["passed_qc"].to_numpy(dtype=bool)]
    for _, tissue_rows in passed.groupby("tissue", sort=True):
        by_slide = list(tissue_rows.groupby("sample_id", sort=True))
        available = np.array([len(rows) for _, rows in by_slide])
        take = _allocate(available, params.tiles_per_slide, params.tissue_target)
        for (sample_id, rows), count in zip(by_slide, take, strict=True):
            # Seeded per slide, so a slide's picks do not depend on which other slides are present.
            rng = np.random.default_rng([params.seed, zlib.crc32(str(sample_id).encode())])
            picks = rng.choice(len(rows), size=int(count), replace=False)
            chosen[index.index.get_indexer(rows.index[picks])] = True
    return chosen


# ---------------------------------------------------------------------------------------------
# Cohort: index, cache, summary


def _empty_index() -> pd.DataFrame:
    return pd.DataFrame({name: pd.Series(dtype=dtype) for name, dtype in INDEX_COLUMNS.items()})


def _as_index(rows: list[dict[str, Any]]) -> pd.DataFrame:
    if not rows:
        return _empty_index()
    frame = pd.DataFrame(rows, columns=list(INDEX_COLUMNS))
    return frame.astype(INDEX_COLUMNS).reset_index(drop=True)


def tiling_summary(index: pd.DataFrame, path: str | Path | None = None) -> dict[str, Any]:
    """Counts of an index: considered, kept (passed QC), selected, rejected per stage, per slide/tissue."""
    reasons = index["reason"].astype(str)
    rejected = {stage: int((reasons == stage).sum()) for stage in QC_STAGES}
    per_slide: dict[str, Any] = {}
    for sample_id, rows in index.groupby("sample_id", sort=True):
        slide_reasons = rows["reason"].astype(str)
        per_slide[str(sample_id)] = {
            "tissue": str(rows["tissue"].iloc[0]),
            "considered": len(rows),
            "kept": int(rows["passed_qc"].sum()),
            "selected": int(rows["selected"].sum()),
            "rejected": {stage: int((slide_reasons == stage).sum()) for stage in QC_STAGES},
        }
    per_tissue: dict[str, Any] = {}
    for tissue, rows in index.groupby("tissue", sort=True):
        per_tissue[str(tissue)] = {
            "slides": int(rows["sample_id"].nunique()),
            "considered": len(rows),
            "kept": int(rows["passed_qc"].sum()),
            "selected": int(rows["selected"].sum()),
        }
    return {
        "considered": len(index),
        "kept": int(index["passed_qc"].sum()),
        "selected": int(index["selected"].sum()),
        "rejected": rejected,
        "per_slide": per_slide,
        "per_tissue": per_tissue,
        "index": str(path) if path is not None else None,
    }


def _validated_samples(samples: pd.DataFrame) -> pd.DataFrame:
    missing = [name for name in REQUIRED_SAMPLE_COLUMNS if name not in samples.columns]
    if missing:
        raise DataError(None, f"samples table lacks columns {missing} (needs {list(REQUIRED_SAMPLE_COLUMNS)})")
    table = samples[list(REQUIRED_SAMPLE_COLUMNS)].copy()
    table["sample_id"] = table["sample_id"].astype(str)
    duplicated = table["sample_id"][table["sample_id"].duplicated()].unique().tolist()
    if duplicated:
        raise DataError(None, f"samples table lists sample_id more than once: {duplicated[:5]}")
    table["tissue"] = table["tissue"].fillna(UNKNOWN_TISSUE).astype(str)
    table["subject_id"] = table["subject_id"].fillna("").astype(str)
    # Absolute paths, so read_tile works from any working directory (symlinks kept as named).
    table["slide_path"] = [
        os.path.abspath(path) if isinstance(path, (str, os.PathLike)) and str(path) else None
        for path in table["slide_path"]
    ]
    return table.sort_values("sample_id").reset_index(drop=True)


def _fingerprint(path: Any) -> str:
    try:
        return file_fingerprint(path)
    except (OSError, TypeError):
        return f"unreadable:{path}"  # the worker reports the real problem for this slide


def index_key(samples: pd.DataFrame, params: TilingParams) -> str:
    """Cache key of a tile index: slide fingerprints, paths, sample fields and every parameter."""
    table = _validated_samples(samples)
    slides = [
        [row.sample_id, row.tissue, row.subject_id, str(row.slide_path), _fingerprint(row.slide_path)]
        for row in table.itertuples(index=False)
    ]
    return cache_key("tile_index", asdict(params), slides)


def load_tile_index(path: str | Path) -> pd.DataFrame:
    """A saved tile index (the parquet file, or the folder holding it)."""
    path = Path(path)
    if path.is_dir():
        path = path / "index.parquet"
    if not path.is_file():
        raise DataError(path, "tile index not found")
    try:
        return pd.read_parquet(path)
    except Exception as exc:
        raise DataError(path, f"unreadable tile index ({exc})") from exc


def _load_saved(folder: Path) -> TileIndexResult | None:
    summary_path, index_path = folder / "summary.json", folder / "index.parquet"
    summary = read_json_object(summary_path)
    if summary is None or not index_path.is_file():
        return None
    try:
        index = pd.read_parquet(index_path)
    except Exception:  # a damaged save is rebuilt, never fatal
        return None
    summary["cached"] = True
    return TileIndexResult(index=index, path=index_path, summary=summary)


def _save(folder: Path, index: pd.DataFrame, summary: dict[str, Any]) -> Path:
    """Index then summary, each via temp file + rename; the summary is written last and marks a
    complete save, so a killed run never leaves a half index that looks finished."""
    folder.mkdir(parents=True, exist_ok=True)
    index_path = folder / "index.parquet"
    with atomic_path(index_path) as tmp:
        index.to_parquet(tmp, index=False)
    atomic_write_json(folder / "summary.json", summary)
    return index_path


def _run_slides(
    tasks: list[dict[str, Any]], params: TilingParams, progress: ProgressFn | None, workers: int
) -> dict[str, dict[str, Any]]:
    """Tile every slide, in a process pool when workers > 1, reporting progress as slides finish."""
    results: dict[str, dict[str, Any]] = {}
    total = len(tasks)

    def finished(sample_id: str, outcome: dict[str, Any]) -> None:
        results[sample_id] = outcome
        if progress is not None:
            if "error" in outcome:
                message = f"{sample_id}: error"
            else:
                kept = sum(row["passed_qc"] for row in outcome["rows"])
                message = f"{sample_id}: {kept} kept of {len(outcome['rows'])}"
            progress(len(results), total, message)

    if workers <= 1 or total <= 1:
        for task in tasks:
            finished(task["sample_id"], _tile_slide_safely(task, params))
        return results
    # spawn, not fork: the UI and job runners have threads, and slideio handles must not be shared.
    pool = ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn"))
    try:
        futures = {pool.submit(_tile_slide_safely, task, params): task for task in tasks}
        for future in as_completed(futures):
            task = futures[future]
            try:
                outcome = future.result()
            except Exception as exc:  # the worker process died (e.g. out of memory)
                outcome = {"error": f"{task['slide_path']}: worker failed ({type(exc).__name__}: {exc})"}
            finished(task["sample_id"], outcome)
    finally:
        # A progress callback that raises (cancellation) drops the queued slides at once.
        pool.shutdown(wait=True, cancel_futures=True)
    return results


def build_tile_index(
    samples: pd.DataFrame,
    params: TilingParams | None = None,
    ws: Workspace | None = None,
    progress: ProgressFn | None = None,
    workers: int | None = None,
) -> TileIndexResult:
    """Tile, QC and sample every slide in `samples`; saved under ws.tiles_dir/<key>/ and reused."""
    params = params or TilingParams()
    ws = ws or workspace()
    table = _validated_samples(samples)
    key = index_key(table, params)
    folder = ws.tiles_dir / key.split(":", 1)[1]
    saved = _load_saved(folder)
    if saved is not None:
        if progress is not None:
            progress(len(table), len(table), "reused saved tile index")
        return saved

    errors: dict[str, str] = {}
    tasks = []
    for row in table.itertuples(index=False):
        if row.slide_path is None:
            errors[row.sample_id] = f"{row.sample_id}: no slide file"
        else:
            tasks.append(row._asdict())
    if workers is None:
        workers = min(os.cpu_count() or 1, len(tasks))
    outcomes = _run_slides(tasks, params, progress, max(1, int(workers)))

    rows: list[dict[str, Any]] = []
    slides: dict[str, dict[str, Any]] = {}
    for sample_id in sorted(outcomes):
        outcome = outcomes[sample_id]
        if "error" in outcome:
            errors[sample_id] = outcome["error"]
        else:
            rows.extend(outcome["rows"])
            slides[sample_id] = outcome["slide"]
    index = _as_index(rows)
    index["selected"] = select_balanced(index, params)

    index_path = folder / "index.parquet"
    summary = tiling_summary(index, index_path)
    tissue_of = dict(zip(table["sample_id"], table["tissue"], strict=True))
    zero = {"considered": 0, "kept": 0, "selected": 0, "rejected": dict.fromkeys(QC_STAGES, 0)}
    for sample_id, facts in slides.items():
        entry = summary["per_slide"].setdefault(sample_id, {"tissue": tissue_of[sample_id], **zero})
        entry.update(facts)
    summary.update(
        slides=len(table),
        slides_tiled=len(slides),
        errors=errors,
        params=asdict(params),
        key=key,
        cached=False,
    )
    _save(folder, index, summary)
    return TileIndexResult(index=index, path=index_path, summary=summary)


# ---------------------------------------------------------------------------------------------
# Reading tiles back

_OPEN_SLIDES: dict[str, Slide] = {}
_OPEN_PID = os.getpid()
_OPEN_LOCK = threading.Lock()
_MAX_OPEN = 8


def _cached_slide(path: str) -> Slide:
    """An open handle per slide and process (a forked child reopens its own)."""
    global _OPEN_PID
    if os.getpid() != _OPEN_PID:
        _OPEN_SLIDES.clear()
        _OPEN_PID = os.getpid()
    slide = _OPEN_SLIDES.get(path)
    if slide is None:
        if len(_OPEN_SLIDES) >= _MAX_OPEN:
            _OPEN_SLIDES.pop(next(iter(_OPEN_SLIDES))).close()
        slide = _OPEN_SLIDES[path] = open_slide(path)
    return slide


def read_tile(row: Mapping[str, Any] | pd.Series, out_size: int | None = None) -> np.ndarray:
    """uint8 RGB pixels of one index row, `tile_size` square unless `out_size` is given."""
    size = int(out_size or row["tile_size"])
    read_size = int(row["read_size"])
    with _OPEN_LOCK:  # slideio handles are not documented as thread-safe
        slide = _cached_slide(str(row["slide_path"]))
        return slide.read_region(int(row["x"]), int(row["y"]), read_size, read_size, out_size=(size, size))


def find_tile_index(samples: pd.DataFrame, params: TilingParams | None = None,
                    ws: Workspace | None = None) -> Path | None:
    """The saved index for these slides and params, or None; never reads or tiles a slide (for page loads)."""
    params = params or TilingParams()
    ws = ws or workspace()
    if samples.empty:
        return None
    folder = ws.tiles_dir / index_key(samples, params).split(":", 1)[1]
    complete = (folder / "summary.json").is_file() and (folder / "index.parquet").is_file()
    return folder / "index.parquet" if complete else None


# ---------------------------------------------------------------------------------------------
# Checking QC against known artifacts (the demo cohort's truth.json)


def artifact_overlaps(index: pd.DataFrame, artifacts: Mapping[str, list[Mapping[str, Any]]]) -> pd.DataFrame:
    """Per index row, the share of the tile's level-0 square inside each kind's boxes (max per kind).

    `artifacts` maps sample_id to dicts with `kind` and a level-0 box `x, y, w, h`, as in the demo's
    truth.json. Columns are the artifact kinds found; rows align with `index`.
    """
    kinds = sorted({str(art["kind"]) for arts in artifacts.values() for art in arts})
    overlaps = pd.DataFrame(0.0, index=index.index, columns=kinds)
    for sample_id, rows in index.groupby("sample_id", sort=False):
        x0, y0 = rows["x"].to_numpy(np.float64), rows["y"].to_numpy(np.float64)
        size = rows["read_size"].to_numpy(np.float64)
        for art in artifacts.get(str(sample_id), []):
            wide = np.clip(np.minimum(x0 + size, art["x"] + art["w"]) - np.maximum(x0, art["x"]), 0, None)
            high = np.clip(np.minimum(y0 + size, art["y"] + art["h"]) - np.maximum(y0, art["y"]), 0, None)
            share = wide * high / (size * size)
            column = overlaps.loc[rows.index, str(art["kind"])].to_numpy()
            overlaps.loc[rows.index, str(art["kind"])] = np.maximum(column, share)
    return overlaps


@dataclass
class QcCheck:
    per_tissue: pd.DataFrame  # tissue -> slides, considered, kept, kept_per_slide
    per_artifact: pd.DataFrame  # kind -> tiles, rejected, recall, then one column per QC stage
    clean_tiles: int  # no artifact box touches them and the tissue mask covers them whole
    clean_pass_rate: float


def check_qc(
    index: pd.DataFrame, artifacts: Mapping[str, list[Mapping[str, Any]]], min_overlap: float = 0.25
) -> QcCheck:
    """How the QC of a tile index fares against known artifact boxes.

    Recall of a kind counts the tiles whose square overlaps one of its boxes by at least
    `min_overlap` of their area, and which stage rejected them. Boxes are loose (a pen stroke or
    fold is a curve across its box), so some such tiles hold no artifact pixel at all.
    """
    passed = index["passed_qc"].to_numpy(dtype=bool)
    per_tissue = index.groupby("tissue", sort=True).agg(
        slides=("sample_id", "nunique"), considered=("passed_qc", "size"), kept=("passed_qc", "sum")
    )
    per_tissue["kept_per_slide"] = (per_tissue["kept"] / per_tissue["slides"]).round(1)
    overlaps = artifact_overlaps(index, artifacts)
    rows = {}
    for kind in overlaps.columns:
        hit = (overlaps[kind] >= min_overlap).to_numpy()
        reasons = index.loc[hit, "reason"].astype(str)
        rows[kind] = {
            "tiles": int(hit.sum()),
            "rejected": int((~passed[hit]).sum()),
            "recall": float((~passed[hit]).mean()) if hit.any() else float("nan"),
            **{stage: int((reasons == stage).sum()) for stage in QC_STAGES},
        }
    per_artifact = pd.DataFrame.from_dict(rows, orient="index", columns=["tiles", "rejected", "recall", *QC_STAGES])
    clean = ~(overlaps > 0).any(axis=1).to_numpy() & (index["tissue_fraction"].to_numpy() >= 0.999)
    rate = float(passed[clean].mean()) if clean.any() else float("nan")
    return QcCheck(per_tissue=per_tissue, per_artifact=per_artifact, clean_tiles=int(clean.sum()), clean_pass_rate=rate)
