"""Tiling one GTEx-size slide (40,000 x 30,000 px SVS): quota tiling against the full grid, in one run.

    .venv/bin/python benchmarks/bench_gtex_tiling.py [--workers 2] [--slide PATH] [--skip-full-grid]

The slide is benchmarks/gtex_slide.py's `make_gtex_size_svs` (real H&E, generated on demand, reused).
Quota tiling is the default mode at the study's 100 tiles per slide (a tissue with 50 or more slides,
so the tissue target asks no more of each): cells in a seeded random order, QC'd until 100 passed.
The baseline is the full grid (every tissue cell read and QC'd: what the tiler did before, and what
`--all-tiles` still does), measured in the same run, each in a fresh workspace. The pool start-up
(spawning the workers, importing the library) is shown on a tiny slide; a cohort pays it once, so the
cost of one more slide is measured as (4 copies of the slide in one build - 1 slide) / 3. The paper
estimate for 1,000 and 25,000 slides uses that, from wall time and from CPU time (what an idle
machine needs; this one is shared), and a 16-core node as 8 times the 2-core throughput.
"""

from __future__ import annotations

import argparse
import resource
import shutil
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
from core.config import workspace  # noqa: E402
from core.tiling import TilingParams, build_tile_index  # noqa: E402

TISSUE = "Skin - Sun Exposed (Lower leg)"


def _cpu_seconds() -> float:
    """CPU time of this process and its finished children (the pool's workers, joined at shutdown)."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def time_build(paths: list[Path], params: TilingParams, workers: int) -> tuple[float, float, dict]:
    """(wall s, CPU s, the first slide's summary) of one build of `paths` (one tissue) in a fresh workspace."""
    samples = pd.DataFrame({"sample_id": [f"GTEX-BENCH-{i:04d}" for i in range(len(paths))], "tissue": TISSUE,
                            "subject_id": [f"GTEX-B{i}" for i in range(len(paths))],
                            "slide_path": [str(path) for path in paths]})
    with tempfile.TemporaryDirectory() as root:  # fresh: nothing reused from a cache
        start, cpu = time.perf_counter(), _cpu_seconds()
        result = build_tile_index(samples, params, workspace(root), workers=workers)
        seconds, cpu = time.perf_counter() - start, _cpu_seconds() - cpu
    if result.summary["errors"]:
        raise SystemExit(f"tiling failed: {result.summary['errors']}")
    return seconds, cpu, result.summary["per_slide"]["GTEX-BENCH-0000"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--slide", type=Path, default=None, help="a GTEx-size slide (default: generate/reuse)")
    parser.add_argument("--skip-full-grid", action="store_true", help="quota only (the full grid takes minutes)")
    args = parser.parse_args()
    warnings.simplefilter("ignore")  # the generated slide's metadata is complete; nothing to report
    slide = args.slide or make_gtex_size_svs(verbose=True)
    workers = args.workers

    with tempfile.TemporaryDirectory() as folder:  # pool start-up: a tiny slide, same worker count
        tiny = Path(folder) / "tiny.png"
        Image.fromarray(np.full((448, 448, 3), (200, 120, 170), np.uint8)).save(tiny)
        startup, startup_cpu, _ = time_build([tiny], TilingParams(), workers)

    quota_params = TilingParams(tiles_per_slide=100, tissue_target=100)
    quota_s, quota_cpu, quota = time_build([slide], quota_params, workers)
    print(f"slide: {slide.name}, {quota['width']} x {quota['height']} px, {quota['candidates']} tissue cells, "
          f"workers {workers}")
    print(f"pool start-up (tiny slide)   : {startup:6.2f} s wall, {startup_cpu:6.2f} s CPU")
    print(f"quota tiling (100 per slide) : {quota_s:6.2f} s wall, {quota_cpu:6.2f} s CPU  "
          f"({quota['considered']} considered, "
          f"{quota['kept']} kept, {quota['selected']} selected)  goal < 5 s on 2 cores")
    # The cost of one more slide in a cohort: 4 copies (new files, so nothing is shared through the
    # cache) in one build, against the one-slide build above.
    with tempfile.TemporaryDirectory() as folder:
        copies = [slide] + [Path(shutil.copyfile(slide, Path(folder) / f"copy{i}.svs")) for i in range(3)]
        cohort_s, cohort_cpu, _ = time_build(copies, quota_params, workers)
    per_slide, per_slide_cpu = (cohort_s - quota_s) / 3, (cohort_cpu - quota_cpu) / 3 / workers
    print(f"4 copies in one build        : {cohort_s:6.2f} s wall, {cohort_cpu:6.2f} s CPU  -> one more slide: "
          f"{per_slide:.2f} s wall, {per_slide_cpu:.2f} s CPU per core (on {workers} cores)")
    if not args.skip_full_grid:
        full_s, full_cpu, full = time_build([slide], TilingParams(all_tiles=True), workers)
        print(f"full grid (--all-tiles)      : {full_s:6.2f} s wall, {full_cpu:6.2f} s CPU  "
              f"({full['considered']} considered, "
              f"{full['kept']} kept; {full['considered'] / full_s:.1f} tiles/s)")
        print(f"ratio full grid / quota      : {full_s / quota_s:6.1f}x wall, {full_cpu / quota_cpu:.1f}x CPU  "
              f"(quota reads "
              f"{quota['considered'] / full['considered']:.1%} of the cells)")
    for label, seconds in (("wall", per_slide), ("CPU", per_slide_cpu)):
        for cores in (workers, 16):
            hours = [n * seconds * workers / cores / 3600 for n in (1_000, 25_000)]
            print(f"estimate from {label:4s} on {cores:2d} cores: 1,000 slides {hours[0]:6.2f} h, "
                  f"25,000 slides {hours[1]:6.1f} h" + ("  (scaled linearly)" if cores != workers else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
