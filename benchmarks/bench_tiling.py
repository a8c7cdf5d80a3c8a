"""Tiling throughput of build_tile_index on the real SVS against bare slideio reads of the same tiles.

    .venv/bin/python benchmarks/bench_tiling.py [--repeats 3] [--workers 1]

The baseline reads exactly the tiles the index considered, with `Scene.read_block(rect, size)`
in a loop and nothing else; the ratio shows what the mask, QC metrics, sampling and saving cost
on top of pixel reads. Both are measured in this one run; the best of `--repeats` is kept.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import slideio

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core.config import workspace  # noqa: E402
from core.tiling import TilingParams, build_tile_index  # noqa: E402

SVS = Path(__file__).resolve().parents[2] / "shared" / "testdata" / "CMU-1-Small-Region.svs"


def time_index(params: TilingParams, workers: int) -> tuple[float, pd.DataFrame]:
    samples = pd.DataFrame(
        {"sample_id": ["CMU-1"], "tissue": ["Skin"], "subject_id": ["CMU"], "slide_path": [str(SVS)]}
    )
    with tempfile.TemporaryDirectory() as root:  # a fresh workspace: nothing reused from a cache
        ws = workspace(root)
        start = time.perf_counter()
        result = build_tile_index(samples, params, ws, workers=workers)
        return time.perf_counter() - start, result.index


def time_bare_reads(index: pd.DataFrame) -> float:
    start = time.perf_counter()
    scene = slideio.open_slide(str(SVS), "SVS").get_scene(0)
    for row in index.itertuples(index=False):
        scene.read_block((int(row.x), int(row.y), int(row.read_size), int(row.read_size)), (int(row.tile_size),) * 2)
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--tile-size", type=int, default=224, help="smaller than 448 so the small SVS gives more tiles")
    args = parser.parse_args()
    if not SVS.is_file():
        print(f"skipped: {SVS} not found", file=sys.stderr)
        return 1
    params = TilingParams(tile_size=args.tile_size)
    index_s, index = min((time_index(params, args.workers) for _ in range(args.repeats)), key=lambda r: r[0])
    if index.empty:
        print("no tiles considered; nothing to compare", file=sys.stderr)
        return 1
    bare_s = min(time_bare_reads(index) for _ in range(args.repeats))
    considered, kept = len(index), int(index["passed_qc"].sum())
    print(f"slide: {SVS.name}, tile_size {args.tile_size}, workers {args.workers}, best of {args.repeats}")
    print(f"build_tile_index: {index_s:.3f} s  {considered / index_s:8.1f} tiles/s considered  "
          f"{kept / index_s:8.1f} tiles/s kept  ({considered} considered, {kept} kept)")
    print(f"bare read_block : {bare_s:.3f} s  {considered / bare_s:8.1f} tiles/s (same {considered} tiles)")
    print(f"ratio (bare reads / build_tile_index throughput): {index_s / bare_s:.2f}x slower than bare reads")
    return 0


if __name__ == "__main__":
    sys.exit(main())
