"""QC decisions of core.tiles.qc (sampled pass) against the full-resolution metrics, on the demo cohort.

    .venv/bin/python benchmarks/bench_qc_agreement.py [--demo PATH] [--workers 2]

The default demo cohort (88 slides, generated into benchmarks/out/demo when `--demo` is not given):
every tissue cell of each slide's 448 px grid is read once and measured twice, by `core.tiles.qc`
(`read_and_qc`, what tiling uses) and by the full-resolution numpy metrics from before
(tests/qc_reference.py). Prints how often the decisions agree, the time each QC takes, and per
artifact kind of truth.json the share rejected and by which stage (core.tiles.index.check_qc).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks"), str(ROOT / "tests")]

from bench_qc import tissue_cells  # noqa: E402
from qc_reference import reference_metrics  # noqa: E402

from benchmarks.record import record, start_load  # noqa: E402
from core.data.dataset import load_cohort  # noqa: E402
from core.data.slides import open_slide  # noqa: E402
from core.demo import TRUTH_JSON, make_demo_cohort  # noqa: E402
from core.tiles.index import check_qc  # noqa: E402
from core.tiles.qc import METRIC_COLUMNS, QcParams, qc_reason, tile_metrics  # noqa: E402

TILE = 448


def measure_slide(sample: dict) -> pd.DataFrame:
    params, rows = QcParams(), []
    xs, ys, fractions = tissue_cells(Path(sample["slide_path"]), TILE)
    fast_s = full_s = 0.0
    with open_slide(sample["slide_path"]) as slide:
        for x, y, fraction in zip(xs, ys, fractions, strict=True):
            tile = slide.read_region(int(x), int(y), TILE, TILE)
            start = time.perf_counter()
            fast = tile_metrics(tile, params, sample["tissue"])
            middle = time.perf_counter()
            full = reference_metrics(tile, params)
            fast_s, full_s = fast_s + middle - start, full_s + time.perf_counter() - middle
            rows.append({
                "sample_id": sample["sample_id"], "tissue": sample["tissue"], "x": int(x), "y": int(y),
                "read_size": TILE, "tissue_fraction": fraction,
                **{f"fast_{k}": fast[k] for k in METRIC_COLUMNS}, **{f"full_{k}": full[k] for k in METRIC_COLUMNS},
                "fast_reason": qc_reason(fast, params, sample["tissue"]),
                "full_reason": qc_reason(full, params, sample["tissue"]),
            })
    return pd.DataFrame(rows).assign(fast_s=fast_s / max(len(rows), 1), full_s=full_s / max(len(rows), 1))


def as_index(frame: pd.DataFrame, which: str) -> pd.DataFrame:
    index = frame[["sample_id", "tissue", "x", "y", "read_size", "tissue_fraction"]].copy()
    index["reason"] = frame[f"{which}_reason"]
    index["passed_qc"] = index["reason"] == ""
    return index


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--demo", type=Path, help="a demo cohort folder (default: generate benchmarks/out/demo)")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    load_start = start_load()
    root = args.demo or make_demo_cohort(ROOT / "benchmarks" / "out" / "demo")
    cohort = load_cohort(root)
    samples = cohort.samples[cohort.samples["has_slide"]][["sample_id", "tissue", "slide_path"]]
    with ProcessPoolExecutor(max_workers=args.workers) as pool:
        frame = pd.concat(pool.map(measure_slide, samples.to_dict("records")), ignore_index=True)
    truth = json.loads((root / TRUTH_JSON).read_text())
    artifacts = {s["sample_id"]: s["artifacts"] for s in truth["samples"]}
    fast, full = as_index(frame, "fast"), as_index(frame, "full")
    agree = (fast["passed_qc"] == full["passed_qc"]).mean()
    same_reason = (fast["reason"] == full["reason"]).mean()
    print(f"demo cohort {root}: {len(samples)} slides, {len(frame)} tissue tiles of {TILE} px")
    print(f"pass/fail agreement with full-resolution QC: {agree:.2%}; same reason: {same_reason:.2%}")
    print(f"kept: ours {fast['passed_qc'].sum()}, full resolution {full['passed_qc'].sum()}")
    fast_ms, full_ms = frame.groupby("sample_id")[["fast_s", "full_s"]].first().mean() * 1e3
    print(f"QC time per tile: ours {fast_ms:.1f} ms, full resolution {full_ms:.1f} ms ({full_ms / fast_ms:.1f}x)")
    moved = pd.crosstab(full["reason"].replace("", "pass"), fast["reason"].replace("", "pass"),
                        rownames=["full"], colnames=["ours"])
    print(moved.to_string())
    for name, index in (("ours", fast), ("full resolution", full)):
        check = check_qc(index, artifacts)
        print(f"\n{name}: clean pass rate {check.clean_pass_rate:.1%} ({check.clean_tiles} clean tiles)")
        print(check.per_artifact.to_string())
    worst = np.abs(frame["fast_jpeg_kb"] / frame["full_jpeg_kb"] - 1).max()
    print(f"\nlargest relative JPEG-size error: {worst:.1%}")
    record("bench_qc_agreement", f"{agree:.2%} of QC decisions agree, {fast_ms:.1f} ms per tile ({len(frame)} tiles "
           f"of {len(samples)} demo slides)", f"full-resolution QC: {full_ms:.1f} ms per tile (time ratio; goal "
           "agreement >= 98%)", fast_ms / full_ms, load_start,
           {"agreement": float(agree), "same_reason": float(same_reason), "ms_per_tile": float(fast_ms),
            "full_ms_per_tile": float(full_ms), "tiles": len(frame), "slides": len(samples)})
    return 0


if __name__ == "__main__":
    sys.exit(main())
