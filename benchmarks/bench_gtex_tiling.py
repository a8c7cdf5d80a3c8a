"""Tiling one GTEx-size slide (40,000 x 30,000 px SVS): quota tiling against the full grid, in one run.

    .venv/bin/python benchmarks/bench_gtex_tiling.py [--workers 2] [--slide PATH] [--skip-full-grid]

The slide is benchmarks/gtex_slide.py's `make_gtex_size_svs` (real H&E, generated on demand, reused).
Quota tiling is the default mode at the study's 100 tiles per slide (a tissue with 50 or more slides,
so the tissue target asks no more of each): cells in a seeded random order, QC'd until 100 passed.

- A lone slide: `build_tile_index` of that one slide (a run this small has no process pool: see
  core.tiles.run.INLINE_CELLS), and `python -m core tiles --slide` end to end in a new process
  (interpreter, imports, the compiled QC loaded from numba's cache, the index written), as a user runs it.
- The cost of one more slide in a cohort: the pool forced on, (4 copies of the slide in one build -
  1 slide) / 3, so the pool's start-up (measured apart on a tiny slide) cancels out.
- The baseline is the full grid (every tissue cell read and QC'd: what the tiler did before, and what
  `--all-tiles` still does), measured in the same run, each build in a fresh workspace.
- The one-time compile of the QC's numba code (a fresh clone's first run; cached in core/__pycache__
  afterwards), measured in a process with an empty NUMBA_CACHE_DIR.

The paper estimate for 1,000 and 25,000 slides uses the one-more-slide figure, from wall time and from
CPU time (what an idle machine needs; this one is shared), and a 16-core node as 8 times the 2-core
throughput. The load average is printed: other agents share these 2 cores.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.gtex_slide import make_gtex_size_svs  # noqa: E402
from benchmarks.record import record, start_load  # noqa: E402
from core.base.config import workspace  # noqa: E402
from core.tiles import run as tile_run  # noqa: E402
from core.tiles.index import TilingParams, build_tile_index  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
TISSUE = "Skin - Sun Exposed (Lower leg)"


def _cpu_seconds() -> float:
    """CPU time of this process and its finished children (the pool's workers, joined at shutdown)."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def time_build(paths: list[Path], params: TilingParams, workers: int, pool: bool = False) -> tuple[float, float, dict]:
    """(wall s, CPU s, the first slide's summary) of one build of `paths` (one tissue) in a fresh workspace;
    `pool` forces the process pool even for a run small enough to go without one."""
    samples = pd.DataFrame({"sample_id": [f"GTEX-BENCH-{i:04d}" for i in range(len(paths))], "tissue": TISSUE,
                            "subject_id": [f"GTEX-B{i}" for i in range(len(paths))],
                            "slide_path": [str(path) for path in paths]})
    inline_cells = tile_run.INLINE_CELLS
    tile_run.INLINE_CELLS = -1 if pool else inline_cells
    try:
        with tempfile.TemporaryDirectory() as root:  # fresh: nothing reused from a cache
            start, cpu = time.perf_counter(), _cpu_seconds()
            result = build_tile_index(samples, params, workspace(root), workers=workers)
            seconds, cpu = time.perf_counter() - start, _cpu_seconds() - cpu
    finally:
        tile_run.INLINE_CELLS = inline_cells
    if result.summary["errors"]:
        raise SystemExit(f"tiling failed: {result.summary['errors']}")
    return seconds, cpu, result.summary["per_slide"]["GTEX-BENCH-0000"]


def time_cli(slide: Path, workers: int) -> tuple[float, float]:
    """(wall s, CPU s) of `python -m core tiles --slide` in a new process and a fresh workspace."""
    with tempfile.TemporaryDirectory() as root:
        command = [sys.executable, "-m", "core", "--workspace", root, "tiles", "--slide", str(slide),
                   "--workers", str(workers)]
        start, cpu = time.perf_counter(), _cpu_seconds()
        done = subprocess.run(command, cwd=REPO, capture_output=True, text=True)
        seconds, cpu = time.perf_counter() - start, _cpu_seconds() - cpu
    if done.returncode != 0 or "100 selected" not in done.stdout:
        raise SystemExit(f"tiles --slide failed ({done.returncode}): {done.stdout}{done.stderr}")
    return seconds, cpu


def time_cold_compile() -> tuple[float, float]:
    """(wall s, CPU s) the first QC call costs beyond a cached one: two processes, the first with an empty
    NUMBA_CACHE_DIR, the second with the cache the first left."""
    script = ("import time; from core.tiles.qc import warm_up; t = time.process_time(); w = time.perf_counter(); "
              "warm_up(); print(time.perf_counter() - w, time.process_time() - t)")
    with tempfile.TemporaryDirectory() as cache:
        env = {**os.environ, "NUMBA_CACHE_DIR": cache}
        runs = [subprocess.run([sys.executable, "-c", script], cwd=REPO, env=env, capture_output=True,
                               text=True, check=True).stdout.split() for _ in range(2)]
    (cold_wall, cold_cpu), (warm_wall, warm_cpu) = ([float(v) for v in run] for run in runs)
    return cold_wall - warm_wall, cold_cpu - warm_cpu


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--slide", type=Path, default=None, help="a GTEx-size slide (default: generate/reuse)")
    parser.add_argument("--skip-full-grid", action="store_true", help="quota only (the full grid takes minutes)")
    args = parser.parse_args()
    load_start = start_load()
    warnings.simplefilter("ignore")  # the generated slide's metadata is complete; nothing to report
    slide = args.slide or make_gtex_size_svs(verbose=True)
    workers = args.workers

    def load() -> str:
        return "load average " + ", ".join(f"{value:.1f}" for value in os.getloadavg())

    quota_params = TilingParams(tiles_per_slide=100, tissue_target=100)
    quota_s, quota_cpu, quota = time_build([slide], quota_params, workers)
    print(f"slide: {slide.name}, {quota['width']} x {quota['height']} px, {quota['candidates']} tissue cells, "
          f"workers {workers}; {load()}")
    print(f"lone slide, quota (100)      : {quota_s:6.2f} s wall, {quota_cpu:6.2f} s CPU  "
          f"({quota['considered']} considered, {quota['kept']} kept, {quota['selected']} selected; "
          f"no pool)  goal < 5 s on 2 cores")
    cli_s, cli_cpu = time_cli(slide, workers)
    print(f"`tiles --slide` end to end   : {cli_s:6.2f} s wall, {cli_cpu:6.2f} s CPU  (new process: imports, "
          f"cached QC code, index written)  goal < 5 s")

    with tempfile.TemporaryDirectory() as folder:  # pool start-up: a tiny slide, same worker count
        tiny = Path(folder) / "tiny.png"
        Image.fromarray(np.full((448, 448, 3), (200, 120, 170), np.uint8)).save(tiny)
        startup, startup_cpu, _ = time_build([tiny], TilingParams(), workers, pool=True)
    print(f"pool start-up (tiny slide)   : {startup:6.2f} s wall, {startup_cpu:6.2f} s CPU  "
          f"(what a run of more than {tile_run.INLINE_CELLS} cells pays once)")
    # The cost of one more slide in a cohort: 4 copies (new files, so nothing is shared through the
    # cache) in one build, against one slide, both through the pool.
    pooled_s, pooled_cpu, _ = time_build([slide], quota_params, workers, pool=True)
    with tempfile.TemporaryDirectory() as folder:
        copies = [slide] + [Path(shutil.copyfile(slide, Path(folder) / f"copy{i}.svs")) for i in range(3)]
        cohort_s, cohort_cpu, _ = time_build(copies, quota_params, workers, pool=True)
    per_slide, per_slide_cpu = (cohort_s - pooled_s) / 3, (cohort_cpu - pooled_cpu) / 3 / workers
    print(f"1 slide through the pool     : {pooled_s:6.2f} s wall, {pooled_cpu:6.2f} s CPU")
    print(f"4 copies in one build (pool) : {cohort_s:6.2f} s wall, {cohort_cpu:6.2f} s CPU  -> one more slide: "
          f"{per_slide:.2f} s wall, {per_slide_cpu:.2f} s CPU per core (on {workers} cores); {load()}")
    figures = {"lone_slide_s": quota_s, "lone_slide_cpu_s": quota_cpu, "cli_slide_s": cli_s, "cli_slide_cpu_s": cli_cpu,
               "one_more_slide_s": per_slide, "one_more_slide_cpu_s_per_core": per_slide_cpu,
               "pool_startup_s": startup, "workers": workers, "goal_s": 5.0}
    baseline, ratio = "full grid not run (--skip-full-grid); ratio to the 5 s goal", quota_s / 5.0
    if not args.skip_full_grid:
        full_s, full_cpu, full = time_build([slide], TilingParams(all_tiles=True), workers)
        print(f"full grid (--all-tiles)      : {full_s:6.2f} s wall, {full_cpu:6.2f} s CPU  "
              f"({full['considered']} considered, "
              f"{full['kept']} kept; {full['considered'] / full_s:.1f} tiles/s)")
        print(f"ratio full grid / quota      : {full_s / quota_s:6.1f}x wall, {full_cpu / quota_cpu:.1f}x CPU  "
              f"(quota reads "
              f"{quota['considered'] / full['considered']:.1%} of the cells)")
        figures.update(full_grid_s=full_s, full_grid_cpu_s=full_cpu)
        baseline, ratio = f"the full grid (--all-tiles): {full_s:.1f} s wall (time ratio; goal < 5 s)", quota_s / full_s
    compile_s, compile_cpu = time_cold_compile()
    print(f"numba compile of the QC       : + {compile_s:.1f} s wall, {compile_cpu:.1f} s CPU once, in a process that "
          f"finds no cache (`make run` and `make bench` run core.tiles.qc.warm_up first; cached in core/__pycache__)")
    for label, seconds in (("wall", per_slide), ("CPU", per_slide_cpu)):
        for cores in (workers, 16):
            hours = [n * seconds * workers / cores / 3600 for n in (1_000, 25_000)]
            print(f"estimate from {label:4s} on {cores:2d} cores: 1,000 slides {hours[0]:6.2f} h, "
                  f"25,000 slides {hours[1]:6.1f} h" + ("  (scaled linearly)" if cores != workers else ""))
    record("bench_gtex_tiling", f"lone GTEx-size slide at the quota: {quota_s:.2f} s wall, {quota_cpu:.2f} s CPU; "
           f"one more slide {per_slide:.2f} s wall", baseline, ratio, load_start, figures)
    return 0


if __name__ == "__main__":
    sys.exit(main())
