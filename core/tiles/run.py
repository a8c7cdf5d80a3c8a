"""Runs the tiling of many slides on a process pool: plans, then QC batches split into chunks.

The unit of work is a chunk of cells, not a slide, so one big slide keeps every core busy and many
small slides interleave. Each slide advances batch by batch: in quota mode a batch is sized from the
tiles still wanted and the slide's pass rate so far, in full-grid mode it is a slice of the grid;
after each batch the slide's part is saved, so a cancelled run resumes from there.

Failures: a DataError (the file is unreadable or corrupt) becomes the slide's cached error. Any
other exception (MemoryError, an OSError of the machine, a killed worker) is transient: the slide is
reported, not cached, and retried on the next run. When a worker dies the pool is rebuilt and the
slides it was working on are retried once in this run, so one dead worker does not fail them all.
"""

from __future__ import annotations

import math
import os
import warnings
from collections import deque
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import numpy as np

from core.base.errors import DataError, DataWarning
from core.data.slides import Slide, open_slide
from core.tiles.parts import QC_COLUMNS, TilePart, empty_qc, save_part
from core.tiles.plan import plan_slide
from core.tiles.qc import read_and_qc

# Cells per chunk sent to a worker: small enough to spread one slide over the pool and to cancel
# quickly, large enough that the per-task overhead (pickling, a handle lookup) stays negligible.
MIN_CHUNK, MAX_CHUNK = 8, 48
# Cells per worker in a full-grid batch: a GTEx slide (~3,500 tissue cells) is one batch on 2 cores,
# so its cells are read in grid order (neighbours share the scanner's JPEG tiles); a bigger slide is
# saved after each batch.
FULL_GRID_BATCH = 2048
ASSUMED_PASS_RATE = 0.9  # before a slide has shown its own
# A run expected to QC at most this many cells runs in this process, without a pool: starting a
# worker (spawn, import numpy/scipy/pandas/numba, load the compiled QC) costs ~1.5-2.5 s of CPU,
# the QC of ~150 cells; below ~250 cells two workers finish later than one process does (a lone
# GTEx slide at its quota of 100 tiles: ~110 cells, 1.5 s in process against ~5 s with a pool).
INLINE_CELLS = 256
PLAN_CELLS = 16  # a slide's plan (open, thumbnail, tissue mask) counted as this many cells
_MAX_REBUILDS = 8  # pools rebuilt in one run before the remaining slides are left for the next
MP_CONTEXT = "spawn"  # not fork: the UI and job runners have threads; tests may switch it

# (slide, cells QC'd so far, of which passed): called as each chunk of a slide's cells comes back.
CellProgressFn = Callable[["SlideTask", int, int], None]


@dataclass
class SlideTask:
    sample_id: str
    path: str
    tissue: str
    key: str | None  # part cache key; None: never cached
    target: int | None  # passed tiles wanted; None: every candidate (full grid)
    part: TilePart | None = None  # resumed from disk, or planned in this run


@dataclass
class SlideOutcome:
    part: TilePart | None = None
    error: str | None = None
    transient: bool = False


@dataclass
class _State:
    task: SlideTask
    attempts: int = 0
    batch: list[Future] = field(default_factory=list)
    results: dict[int, dict[str, np.ndarray]] = field(default_factory=dict)
    grid_order: np.ndarray | None = None  # the batch's cells sorted by (scene, y, x)


# ------------------------------------------------------------------ worker side

_HANDLES: dict[tuple[str, int], Slide] = {}
_HANDLES_PID = os.getpid()


def _handle(path: str, scene: int) -> Slide:
    """An open slide per (path, scene) and worker process: chunks of one slide reuse it."""
    global _HANDLES_PID
    if os.getpid() != _HANDLES_PID:
        _HANDLES.clear()
        _HANDLES_PID = os.getpid()
    key = (path, scene)
    if key not in _HANDLES:
        while len(_HANDLES) >= 4:
            _HANDLES.pop(next(iter(_HANDLES))).close()
        with warnings.catch_warnings():  # already reported once, by the plan
            warnings.simplefilter("ignore", DataWarning)
            _HANDLES[key] = open_slide(path, scene)
    return _HANDLES[key]


def plan_job(path: str, params: Any) -> TilePart:
    """Worker entry: plan one slide; a DataError about the file becomes an error part (cached)."""
    try:
        return TilePart(plan=plan_slide(path, params))
    except DataError as exc:
        return TilePart(plan=None, error=str(exc))


def qc_job(path: str, cells: dict[str, np.ndarray], params: Any, tissue: str) -> dict[str, np.ndarray] | str:
    """Worker entry: read and QC a chunk of cells (any scenes and box sizes); a DataError is returned as text."""
    out = empty_qc(cells["x"].size)
    try:
        for scene, read_size in {(int(s), int(r)) for s, r in zip(cells["scene"], cells["read_size"], strict=True)}:
            rows = np.flatnonzero((cells["scene"] == scene) & (cells["read_size"] == read_size))
            qc = read_and_qc(_handle(path, scene), cells["x"][rows], cells["y"][rows], read_size,
                             params.tile_size, params, tissue)
            for name in QC_COLUMNS:
                out[name][rows] = qc[name]
    except DataError as exc:
        return str(exc)
    return out


# ------------------------------------------------------------------ parent side


class _Inline:
    """An executor that runs each task at once in this process (workers = 1): same loop, no pool."""

    def submit(self, fn: Callable[..., Any], *args: Any) -> Future:
        future: Future = Future()
        try:
            future.set_result(fn(*args))
        except Exception as exc:
            future.set_exception(exc)
        return future

    def shutdown(self, wait: bool = True, cancel_futures: bool = False) -> None:
        pass


def _pool(workers: int) -> ProcessPoolExecutor | _Inline:
    if workers <= 1:
        return _Inline()
    return ProcessPoolExecutor(max_workers=workers, mp_context=get_context(MP_CONTEXT))


def next_batch(part: TilePart, target: int | None, workers: int) -> int:
    """How many of the next cells to QC: 0 when the slide has what it needs or has no more."""
    remaining = part.candidates - part.considered
    if remaining <= 0:
        return 0
    if target is None:
        return min(remaining, FULL_GRID_BATCH * max(1, workers))
    passed = int(part.passed.sum())
    wanted = target - passed
    if wanted <= 0:
        return 0
    rate = passed / part.considered if part.considered >= 16 else ASSUMED_PASS_RATE
    guess = math.ceil(wanted / max(rate, 0.05) * 1.05) + 2  # a little over: one batch usually suffices
    return min(remaining, max(guess, MIN_CHUNK * workers))


def estimated_cells(tasks: list[SlideTask]) -> float:
    """Cells the run is expected to QC (plans counted as PLAN_CELLS each); inf when a full-grid slide
    is not planned yet (its size is unknown until its thumbnail is read)."""
    total = 0.0
    for task in tasks:
        part = task.part
        planned = part is not None and part.plan is not None
        if not planned:
            total += PLAN_CELLS
        if task.target is None:
            if not planned:
                return math.inf
            total += part.candidates - part.considered
        else:
            passed = int(part.passed.sum()) if planned else 0
            total += max(0, task.target - passed) / ASSUMED_PASS_RATE
    return total


def _chunks(count: int, workers: int) -> list[tuple[int, int]]:
    size = min(MAX_CHUNK, max(MIN_CHUNK, math.ceil(count / max(1, workers))))
    return [(start, min(count, start + size)) for start in range(0, count, size)]


def run_slides(
    tasks: list[SlideTask],
    params: Any,
    parts_dir: Path,
    workers: int,
    progress: Callable[[SlideTask, SlideOutcome], None] | None = None,
    cells: CellProgressFn | None = None,
) -> dict[str, SlideOutcome]:
    """Bring every task's part to its target; returns an outcome per sample_id.

    `progress(task, outcome)` is called as each slide finishes, `cells(task, considered, passed)` as
    each chunk of its cells comes back (progress within a big slide); if either raises (cancellation),
    queued work is dropped and the parts saved so far stay on disk.
    """
    if workers > 1 and estimated_cells(tasks) <= INLINE_CELLS:
        workers = 1  # a small run: the pool's start-up would cost more than it saves
    outcomes: dict[str, SlideOutcome] = {}
    queue: deque[_State] = deque(_State(task) for task in tasks)
    active: dict[Future, tuple[_State, int]] = {}  # future -> (slide, chunk number; -1 for the plan)
    executor = _pool(workers)
    rebuilt = 0

    def finish(state: _State, outcome: SlideOutcome) -> None:
        outcomes[state.task.sample_id] = outcome
        if outcome.part is not None and state.task.key is not None and not outcome.transient:
            save_part(parts_dir, state.task.key, outcome.part)
        if progress is not None:
            progress(state.task, outcome)

    def advance(state: _State) -> None:
        """Submit the slide's next batch, or finish it."""
        part = state.task.part
        assert part is not None
        count = next_batch(part, state.task.target, workers)
        if count == 0:
            finish(state, SlideOutcome(part=part))
            return
        start = part.considered
        cells = {name: values[start : start + count] for name, values in part.plan.arrays().items()}
        # Read in grid order, so neighbouring cells of a chunk are read as one block (Slide.read_tiles).
        state.grid_order = np.lexsort((cells["x"], cells["y"], cells["scene"]))
        cells = {name: values[state.grid_order] for name, values in cells.items()}
        state.results = {}
        state.batch = []
        for number, (low, high) in enumerate(_chunks(count, workers)):
            chunk = {name: values[low:high] for name, values in cells.items()}
            future = executor.submit(qc_job, state.task.path, chunk, params, state.task.tissue)
            state.batch.append(future)
            active[future] = (state, number)

    def start(state: _State) -> None:
        if state.task.part is not None and state.task.part.plan is not None:
            advance(state)
        else:
            future = executor.submit(plan_job, state.task.path, params)
            state.batch = [future]
            active[future] = (state, -1)

    def drop(state: _State) -> None:
        for future in state.batch:
            active.pop(future, None)
            future.cancel()
        state.batch = []

    def transient(state: _State, exc: BaseException) -> None:
        drop(state)
        message = f"{state.task.path}: {type(exc).__name__}: {exc} (not cached; retried on the next run)"
        finish(state, SlideOutcome(part=state.task.part, error=message, transient=True))

    def settle(future: Future) -> None:
        state, number = active.pop(future)
        exc = future.exception()
        if exc is not None:
            transient(state, exc)
            return
        result = future.result()
        if number < 0:  # the plan
            part = result
            if part.error is not None:
                state.batch = []
                finish(state, SlideOutcome(part=part, error=part.error))
                return
            state.task.part = part
            advance(state)
            return
        if isinstance(result, str):  # a DataError while reading cells: the file is damaged
            drop(state)
            finish(state, SlideOutcome(part=TilePart(plan=None, error=result), error=result))
            return
        state.results[number] = result
        if cells is not None and len(state.results) < len(state.batch):
            part = state.task.part
            arrived = list(state.results.values())
            cells(state.task, part.considered + sum(r["reason"].size for r in arrived),
                  int(part.passed.sum()) + sum(int((r["reason"] == "").sum()) for r in arrived))
        if len(state.results) == len(state.batch):
            part = state.task.part
            merged = {}
            for name in state.results[0]:
                values = np.concatenate([state.results[i][name] for i in range(len(state.batch))])
                merged[name] = np.empty_like(values)
                merged[name][state.grid_order] = values  # back to the plan's seeded order
            part.extend(merged)
            state.batch = []
            if next_batch(part, state.task.target, workers):  # more batches to come (else it finishes)
                if state.task.key is not None:
                    save_part(parts_dir, state.task.key, part)  # progress within a slide survives a crash
                if cells is not None:
                    cells(state.task, part.considered, int(part.passed.sum()))  # after the save: may cancel
            advance(state)

    # Enough slides in flight to keep every worker busy while each waits for its next batch.
    max_active = 2 * workers if workers > 1 else 1
    try:
        while queue or active:
            while queue and len({id(s) for s, _ in active.values()}) < max_active:
                start(queue.popleft())
            if not active:
                continue
            done, _ = wait(list(active), return_when=FIRST_COMPLETED)
            broken = [f for f in done if isinstance(f.exception(), BrokenProcessPool)]
            if broken:
                # A worker died (killed, out of memory): rebuild the pool; its slides get one more try.
                states = {id(s): s for s, _ in active.values()}
                for state in states.values():
                    drop(state)
                executor.shutdown(wait=False, cancel_futures=True)
                executor = _pool(workers)
                rebuilt += 1
                # From now on one slide at a time (its cells still spread over the pool), so a slide
                # that kills its worker again takes down no other slide with it.
                max_active = 1
                for state in states.values():
                    state.attempts += 1
                    if state.attempts > 1 or rebuilt > _MAX_REBUILDS:
                        transient(state, BrokenProcessPool("a tiling worker process died"))
                    else:
                        queue.append(state)
                continue
            for future in done:
                if future in active:
                    settle(future)
    finally:
        # A progress callback that raises (cancellation) drops the queued chunks at once.
        executor.shutdown(wait=True, cancel_futures=True)
    return outcomes
