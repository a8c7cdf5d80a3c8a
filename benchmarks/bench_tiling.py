"""Tiling throughput of build_tile_index on the real SVS against bare slideio reads of the same tiles.

    .venv/bin/python benchmarks/bench_tiling.py [--repeats 3] [--workers 1]

The baseline reads exactly the tiles the index considered, with `Scene.read_block(rect, size)`
in a loop and nothing else; the ratio shows what the mask, QC metrics, sampling and saving cost
on top of pixel reads. Both are measured in this one run; the best of `--repeats` is kept.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import slideio

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.record import record, start_load  # noqa: E402
from core.base.config import workspace  # noqa: E402
from core.tiles.index import TilingParams, build_tile_index  # noqa: E402

SVS = Path(__file__).resolve().parents[2] / "shared" / "testdata" / "CMU-1-Small-Region.svs"


def time_index(params: TilingParams, workers: int) -> tuple[float, float, pd.DataFrame]:
    """(wall s, CPU s of this process, the index); workers = 1 runs in this process."""
    samples = pd.DataFrame(
        {"sample_id": ["CMU-1"], "tissue": ["Skin"], "subject_id": ["CMU"], "slide_path": [str(SVS)]}
    )
    with tempfile.TemporaryDirectory() as root:  # a fresh workspace: nothing reused from a cache
        ws = workspace(root)
        start, cpu = time.perf_counter(), time.process_time()
        result = build_tile_index(samples, params, ws, workers=workers)
        return time.perf_counter() - start, time.process_time() - cpu, result.index


def time_bare_reads(index: pd.DataFrame) -> tuple[float, float]:
    start, cpu = time.perf_counter(), time.process_time()
    scene = slideio.open_slide(str(SVS), "SVS").get_scene(0)
    for row in index.itertuples(index=False):
        scene.read_block((int(row.x), int(row.y), int(row.read_size), int(row.read_size)), (int(row.tile_size),) * 2)
    return time.perf_counter() - start, time.process_time() - cpu


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--tile-size", type=int, default=224, help="smaller than 448 so the small SVS gives more tiles")
    args = parser.parse_args()
    load_start = start_load()
    if not SVS.is_file():
        print(f"skipped: {SVS} not found", file=sys.stderr)
        return 1
    params = TilingParams(tile_size=args.tile_size)
    runs = [time_index(params, args.workers) for _ in range(args.repeats)]
    index_s, index_cpu = min(r[0] for r in runs), min(r[1] for r in runs)
    index = runs[0][2]
    if index.empty:
        print("no tiles considered; nothing to compare", file=sys.stderr)
        return 1
    bare = [time_bare_reads(index) for _ in range(args.repeats)]
    bare_s, bare_cpu = min(b[0] for b in bare), min(b[1] for b in bare)
    considered, kept = len(index), int(index["passed_qc"].sum())
    print(f"slide: {SVS.name}, tile_size {args.tile_size}, workers {args.workers}, best of {args.repeats}; "
          f"load average {os.getloadavg()[0]:.1f}")
    print(f"build_tile_index: {index_s:.3f} s wall, {index_cpu:.3f} s CPU  {considered / index_s:8.1f} tiles/s "
          f"considered ({considered / index_cpu:.1f} per CPU s), {kept / index_s:8.1f} tiles/s kept  "
          f"({considered} considered, {kept} kept)")
    print(f"bare read_block : {bare_s:.3f} s wall, {bare_cpu:.3f} s CPU  {considered / bare_s:8.1f} tiles/s "
          f"({considered / bare_cpu:.1f} per CPU s; same {considered} tiles)")
    print(f"ratio (build_tile_index / bare reads throughput): {bare_s / index_s:.2f} wall, "
          f"{bare_cpu / index_cpu:.2f} CPU")
    record("bench_tiling", f"{considered / index_s:.1f} tiles/s wall ({considered} tiles of CMU-1, whole build)",
           f"bare slideio read_block of the same tiles: {considered / bare_s:.1f} tiles/s", bare_s / index_s,
           load_start, {"tiles_per_s": considered / index_s, "tiles_per_cpu_s": considered / index_cpu,
                        "bare_tiles_per_s": considered / bare_s, "bare_tiles_per_cpu_s": considered / bare_cpu,
                        "ratio_cpu": bare_cpu / index_cpu, "considered": considered, "kept": kept})
    return 0


if __name__ == "__main__":
    sys.exit(main())
