"""Tile index of a cohort: tissue mask, tile grid, quality control and balanced sampling.

Like the GTEx study, tiles are `tile_size` (448) px at the chosen magnification (20x): a 40x slide
gives 896 px level-0 regions read down to 448. The tissue mask comes from a thumbnail, so background
is never read at full resolution; it fills what stained membranes enclose, so fat lobules and lung
count as tissue. Each candidate tile goes through the QC stages of core.tiles.qc, in order; the first
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

import dataclasses
import math
import os
import threading
import time
import warnings
import zlib
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from core.base.cache import cache_key, file_fingerprint
from core.base.config import Workspace, workspace
from core.base.errors import DataError, DataWarning
from core.base.fileio import atomic_path, atomic_write_json, read_json_object
from core.base.settings import load_dataset_settings, update_dataset_settings
from core.base.types import Progress
from core.data.dataset import UNKNOWN_TISSUE
from core.data.slides import Slide, open_slide
from core.tiles.mask import DEFAULT_THUMB_UM_PER_PX, stained_pixels, tissue_mask
from core.tiles.parts import TilePart, load_part, part_key
from core.tiles.qc import METRIC_COLUMNS, QC_STAGES, QcParams
from core.tiles.run import SlideOutcome, SlideTask, next_batch, run_slides

__all__ = ["DEFAULT_THUMB_UM_PER_PX", "stained_pixels", "tissue_mask"]  # re-exported from core.tiles.mask

INDEX_COLUMNS = {
    "sample_id": "string",
    "tissue": "string",
    "subject_id": "string",
    "slide_path": "string",
    "scene": "int32",  # extension of the contract: which scene of a multi-scene file (CZI, SCN)
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
# Stands for "not read yet, more may pass" in the quota allocation.
_UNKNOWN_AVAILABLE = 10**9
CELL_PROGRESS_INTERVAL_S = 1.0  # progress within a slide is reported at most this often


@dataclass(frozen=True)
class TilingParams(QcParams):
    tile_size: int = 448  # px, at 10 / magnification µm per px: 448 px = 224 µm at 20x
    magnification: float = 20.0
    tiles_per_slide: int = 100
    tissue_target: int = 5000
    seed: int = 0
    # Tissue mask on the thumbnail: HSV saturation above this is stained tissue.
    mask_saturation: float = 0.07
    min_tissue_fraction: float = 0.5
    # Full grid: QC every tissue cell (maps, heatmaps). Default: per slide, cells in a seeded random
    # order until its quota from balanced sampling has passed (the study keeps 100 tiles per slide).
    all_tiles: bool = False


def params_to_dict(params: TilingParams) -> dict[str, Any]:
    return asdict(params)


def params_from_dict(values: Mapping[str, Any]) -> TilingParams:
    """TilingParams from saved JSON (unknown keys ignored, lists back to tuples); DataError when invalid."""
    known = {f.name: f for f in dataclasses.fields(TilingParams)}
    kwargs = {name: (tuple(value) if isinstance(value, list) else value)
              for name, value in values.items() if name in known}
    try:
        return TilingParams(**kwargs)
    except TypeError as exc:
        raise DataError(None, f"saved tiling parameters are invalid ({exc})") from exc


def dataset_tiling_params(ws: Workspace, data_dir: str | Path) -> TilingParams:
    """The tiling parameters of the index `data_dir` uses (core.base.settings key `tiling`; else the defaults).

    Training, the overview and the explorer all look the index up with these, so an index built with
    `tiles --tile-size ...` is the one they use.
    """
    saved = load_dataset_settings(ws, data_dir).get("tiling")
    if not isinstance(saved, dict):
        return TilingParams()
    try:
        return params_from_dict(saved)
    except DataError as exc:
        warnings.warn(f"{data_dir}: {exc}; using the default tiling parameters", DataWarning, stacklevel=2)
        return TilingParams()


def record_dataset_tiling_params(ws: Workspace, data_dir: str | Path, params: TilingParams) -> None:
    """Make `params` the tiling the dataset uses from now on."""
    update_dataset_settings(ws, data_dir, tiling=params_to_dict(params))


@dataclass
class TileIndexResult:
    index: pd.DataFrame
    path: Path
    summary: dict[str, Any]




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
    if summary is None or not index_path.is_file() or summary.get("transient"):
        return None  # half saved, or some slides failed for a reason that may pass: tile them again
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


def _parts_dir(ws: Workspace) -> Path:
    return ws.tiles_dir / "parts"


def _needs_work(task: SlideTask, target: int | None) -> bool:
    part = task.part
    return part is None or (part.plan is not None and next_batch(part, target, 1) > 0)


def _quota_caps(tasks: list[SlideTask], params: TilingParams) -> dict[str, int]:
    """Passed tiles each slide must reach: balanced sampling with unread slides counted as unlimited,
    so a tissue whose slides run short asks the others for more until it reaches its target."""
    caps: dict[str, int] = {}
    by_tissue: dict[str, list[SlideTask]] = {}
    for task in tasks:
        by_tissue.setdefault(task.tissue, []).append(task)
    for group in by_tissue.values():
        group.sort(key=lambda task: task.sample_id)
        available = np.array([
            int(task.part.passed.sum()) if task.part is not None and task.part.exhausted else _UNKNOWN_AVAILABLE
            for task in group
        ], dtype=np.int64)
        take = _allocate(available, params.tiles_per_slide, params.tissue_target)
        caps |= {task.sample_id: int(count) for task, count in zip(group, take, strict=True)}
    return caps


def _tile_parts(
    tasks: list[SlideTask], params: TilingParams, ws: Workspace, workers: int, progress: Progress | None
) -> tuple[dict[str, SlideOutcome], dict[str, int]]:
    """Bring every slide's part to what balanced sampling needs (or the full grid); outcomes and caps."""
    outcomes: dict[str, SlideOutcome] = {}
    pending = []
    for task in tasks:
        if task.part is not None and task.part.error is not None:  # a cached DataError about the file
            outcomes[task.sample_id] = SlideOutcome(part=task.part, error=task.part.error)
        else:
            pending.append(task)
    total, finished = len(tasks), 0
    last_cells_report = -math.inf
    under_way: dict[str, float] = {}  # share of each slide in progress
    caps: dict[str, int] = {}
    for round_number in range(1_000):
        caps = {} if params.all_tiles else _quota_caps(pending, params)
        work = [task for task in pending if _needs_work(task, caps.get(task.sample_id))]
        if round_number == 0 and progress is not None and len(work) < total:
            finished = total - len(work)
            progress(finished, total, f"{finished} slide(s) reused from the per-slide cache")
        if not work:
            break
        for task in work:
            task.target = caps.get(task.sample_id)

        def slide_done(task: SlideTask, outcome: SlideOutcome, first: bool = round_number == 0) -> None:
            nonlocal finished
            under_way.pop(task.sample_id, None)
            if progress is None:
                return
            if outcome.error is not None:
                message = f"{task.sample_id}: error"
            else:
                part = outcome.part
                message = f"{task.sample_id}: {int(part.passed.sum())} kept of {part.considered}"
            if first:
                finished += 1
                progress(finished, total, message)
            else:
                progress(total, total, f"topping up the tissue target: {message}")

        def cells_done(task: SlideTask, considered: int, passed: int, first: bool = round_number == 0) -> None:
            """Progress within a slide (a GTEx full grid is thousands of cells), at most once a second."""
            nonlocal last_cells_report
            share = considered / max(task.part.candidates, 1) if task.target is None else passed / max(task.target, 1)
            under_way[task.sample_id] = min(0.99, share)  # a slide counts as done once finished and saved
            now = time.monotonic()
            if progress is None or now - last_cells_report < CELL_PROGRESS_INTERVAL_S:
                return
            last_cells_report = now
            part = task.part
            if task.target is None:
                message = f"{task.sample_id}: {considered:,} of {part.candidates:,} cells QC'd"
            else:
                message = (f"{task.sample_id}: {passed:,} of {task.target:,} tiles passed "
                           f"({considered:,} of {part.candidates:,} cells QC'd)")
            if first:  # slides done plus the shares of those under way: never goes back
                done = round(min(finished + sum(under_way.values()), total), 2)  # noqa: B023 (nonlocal)
                progress(done, total, message)
            else:
                progress(total, total, f"topping up the tissue target: {message}")

        results = run_slides(work, params, _parts_dir(ws), workers, progress=slide_done, cells=cells_done)
        for task in work:
            outcome = results[task.sample_id]
            if outcome.error is not None:
                outcomes[task.sample_id] = outcome
                pending.remove(task)
            else:
                task.part = outcome.part
        if params.all_tiles:
            break
    for task in pending:
        outcomes[task.sample_id] = SlideOutcome(part=task.part)
    return outcomes, caps


def _part_frame(part: TilePart, row: Any, params: TilingParams, cap: int | None) -> pd.DataFrame:
    """A slide's rows for the index, in QC order; in quota mode cut after the cap-th passing tile, so
    the index does not depend on batch sizes, workers or what earlier runs read. A slide that ran
    short (read to its end without more passing than its cap) keeps every cell it read."""
    keep = part.considered
    if cap is not None and not params.all_tiles:
        passing = np.flatnonzero(part.passed)
        if passing.size > cap or (passing.size == cap and not part.exhausted):
            keep = int(passing[cap - 1]) + 1 if cap > 0 else 0
    if keep == 0:
        return _empty_index()
    plan = part.plan
    columns: dict[str, Any] = {
        "sample_id": row.sample_id,
        "tissue": row.tissue,
        "subject_id": row.subject_id,
        "slide_path": row.slide_path,
        "scene": plan.scene[:keep],
        "level": plan.level[:keep],
        "x": plan.x[:keep],
        "y": plan.y[:keep],
        "read_size": plan.read_size[:keep],
        "tile_size": params.tile_size,
        "tissue_fraction": plan.tissue_fraction[:keep],
        **{name: part.qc[name][:keep] for name in METRIC_COLUMNS},
        "passed_qc": part.passed[:keep],
        "reason": part.qc["reason"][:keep],
        "selected": False,
    }
    return pd.DataFrame(columns, index=pd.RangeIndex(keep))


def _select_first_passing(index: pd.DataFrame, params: TilingParams) -> np.ndarray:
    """Quota mode: per slide the first tiles to pass, in the seeded order (a seeded random sample),
    as many as balanced sampling gives the slide."""
    chosen = np.zeros(len(index), dtype=bool)
    passed = index[index["passed_qc"].to_numpy(dtype=bool)]
    for _, tissue_rows in passed.groupby("tissue", sort=True):
        by_slide = list(tissue_rows.groupby("sample_id", sort=True))
        take = _allocate(np.array([len(rows) for _, rows in by_slide]), params.tiles_per_slide, params.tissue_target)
        for (_, rows), count in zip(by_slide, take, strict=True):
            chosen[index.index.get_indexer(rows.index[: int(count)])] = True
    return chosen


def _assemble(table: pd.DataFrame, outcomes: dict[str, SlideOutcome], caps: dict[str, int],
              params: TilingParams) -> pd.DataFrame:
    rows = {row.sample_id: row for row in table.itertuples(index=False)}
    frames = [
        _part_frame(outcome.part, rows[sample_id], params, caps.get(sample_id))
        for sample_id, outcome in sorted(outcomes.items())
        if outcome.error is None and outcome.part is not None and outcome.part.plan is not None
    ]
    frames = [frame for frame in frames if len(frame)]
    if not frames:
        return _empty_index()
    index = pd.concat(frames, ignore_index=True)[list(INDEX_COLUMNS)].astype(INDEX_COLUMNS)

    def grid_order(frame: pd.DataFrame) -> pd.DataFrame:
        # Rows of a slide in grid order (scene, y, x), as the full-grid index always was.
        return frame.sort_values(["sample_id", "scene", "y", "x"], kind="stable").reset_index(drop=True)

    if params.all_tiles:
        index = grid_order(index)
        index["selected"] = select_balanced(index, params)
        return index
    index["selected"] = _select_first_passing(index, params)  # needs the QC order
    return grid_order(index)


def build_tile_index(
    samples: pd.DataFrame,
    params: TilingParams | None = None,
    ws: Workspace | None = None,
    progress: Progress | None = None,
    workers: int | None = None,
) -> TileIndexResult:
    """Tile, QC and sample every slide in `samples`; saved under ws.tiles_dir/<key>/ and reused.

    Each slide's work is cached on its own (core.tiles.parts), so a new slide costs one slide and a
    cancelled run resumes; the cohort index is assembled from the parts with the samples' current
    subject and tissue. `workers` processes share the cells of all slides (default: every core).
    """
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
            continue
        part_id = part_key(row.slide_path, params, row.tissue)
        part = load_part(_parts_dir(ws), part_id) if part_id is not None else None
        tasks.append(SlideTask(row.sample_id, row.slide_path, row.tissue, part_id, None, part))
    workers = max(1, int(workers if workers is not None else (os.cpu_count() or 1)))
    outcomes, caps = _tile_parts(tasks, params, ws, workers, progress)

    index = _assemble(table, outcomes, caps, params)
    index_path = folder / "index.parquet"
    summary = tiling_summary(index, index_path)
    tissue_of = dict(zip(table["sample_id"], table["tissue"], strict=True))
    zero = {"considered": 0, "kept": 0, "selected": 0, "rejected": dict.fromkeys(QC_STAGES, 0)}
    transient = []
    for sample_id, outcome in outcomes.items():
        if outcome.error is not None:
            errors[sample_id] = outcome.error
            if outcome.transient:
                transient.append(sample_id)
            continue
        entry = summary["per_slide"].setdefault(sample_id, {"tissue": tissue_of[sample_id], **zero})
        entry.update(outcome.part.plan.facts, candidates=outcome.part.candidates)
        if not outcome.part.candidates:
            entry["note"] = "no tissue found: no grid cell reached the tissue fraction threshold"
    summary.update(
        mode="all_tiles" if params.all_tiles else "quota",
        candidates=sum(entry.get("candidates", 0) for entry in summary["per_slide"].values()),
        slides=len(table),
        slides_tiled=len(table) - len(errors),
        errors=dict(sorted(errors.items())),
        transient=sorted(transient),  # not cached: a rerun retries them
        params=params_to_dict(params),
        key=key,
        cached=False,
    )
    _save(folder, index, summary)
    return TileIndexResult(index=index, path=index_path, summary=summary)


# ---------------------------------------------------------------------------------------------
# Reading tiles back

_OPEN_SLIDES: dict[tuple[str, int], Slide] = {}
_OPEN_PID = os.getpid()
_OPEN_LOCK = threading.Lock()
_MAX_OPEN = 8


def _cached_slide(path: str, scene: int = 0) -> Slide:
    """An open handle per slide scene and process (a forked child reopens its own)."""
    global _OPEN_PID
    if os.getpid() != _OPEN_PID:
        _OPEN_SLIDES.clear()
        _OPEN_PID = os.getpid()
    slide = _OPEN_SLIDES.get((path, scene))
    if slide is None:
        if len(_OPEN_SLIDES) >= _MAX_OPEN:
            _OPEN_SLIDES.pop(next(iter(_OPEN_SLIDES))).close()
        slide = _OPEN_SLIDES[(path, scene)] = open_slide(path, scene)
    return slide


def read_tile(row: Mapping[str, Any] | pd.Series, out_size: int | None = None) -> np.ndarray:
    """uint8 RGB pixels of one index row, `tile_size` square unless `out_size` is given."""
    size = int(out_size or row["tile_size"])
    read_size = int(row["read_size"])
    with _OPEN_LOCK:  # slideio handles are not documented as thread-safe
        scene = int(row["scene"]) if "scene" in row else 0  # indexes from before scenes have none
        slide = _cached_slide(str(row["slide_path"]), scene)
        return slide.read_region(int(row["x"]), int(row["y"]), read_size, read_size, out_size=(size, size))


def find_tile_index(samples: pd.DataFrame, params: TilingParams | None = None,
                    ws: Workspace | None = None) -> Path | None:
    """The saved index for these slides and params, or None; never reads or tiles a slide (for page loads)."""
    params = params or TilingParams()
    ws = ws or workspace()
    if samples.empty:
        return None
    return saved_index(index_key(samples, params), ws)


def saved_index(key: str, ws: Workspace) -> Path | None:
    """The saved index of an `index_key`, or None when it is not (completely) saved."""
    folder = ws.tiles_dir / key.split(":", 1)[1]
    complete = (folder / "summary.json").is_file() and (folder / "index.parquet").is_file()
    return folder / "index.parquet" if complete else None


def funnel_caption(index_path: str | Path) -> str:
    """What the QC funnel of a saved index describes: the considered sample (quota) or the full grid."""
    saved = read_json_object(Path(index_path).parent / "summary.json") or {}
    considered, candidates = int(saved.get("considered", 0)), int(saved.get("candidates", 0))
    if saved.get("mode") == "quota" and considered >= candidates:
        return (f"The funnel describes the {considered:,} tiles considered: every tissue cell, since no slide had "
                "enough passing tiles to stop at its quota before its cells ran out.")
    if saved.get("mode") == "quota":
        return (f"The funnel describes the {considered:,} tiles considered, not all {candidates:,} tissue cells: "
                "per slide, cells are QC'd in a seeded random order until its quota of passing tiles is reached. "
                "`python -m core tiles --all-tiles` QCs every cell.")
    return f"The funnel describes every tissue cell of the slides ({considered:,}, full grid)."


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
