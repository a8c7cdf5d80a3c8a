"""Default training configuration on the demo cohort: held-out-donor accuracy and wall time vs targets.

    .venv/bin/python benchmarks/bench_default_training.py --workspace /tmp/wsbench [--data DIR] [--threads N]

Generates the demo cohort into the workspace when it (or --data) is missing, builds or reuses the
default tile index, then trains `TrainConfig()` exactly as the CLI and the UI would. Prints, in one
run: test accuracy (held-out donors) at the epoch selected on the validation donors and at the final
epoch, each against the 80% target; the validation accuracy that chose it; the majority-class
baselines on the same test tiles (the commonest training tissue called every time, and the commonest
test tissue's share); donors and tiles per split; wall time of tile pack + training against the
10-minute budget (and the 5-minute aim) with the CPU time beside it and the load average before and
after (the machine may be shared), tiles/s, per-tissue accuracy (weakest first) and the confusion
inside the three hard pairs of look-alike tissues (at the selected epoch). The test donors are never
used to choose anything.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.record import record  # noqa: E402
from core.base.config import workspace  # noqa: E402
from core.data.dataset import load_cohort  # noqa: E402
from core.demo import HARD_PAIRS, ensure_demo_cohort  # noqa: E402
from core.tiles.index import TilingParams, build_tile_index  # noqa: E402
from core.train.config import TrainConfig  # noqa: E402
from core.train.loop import train_run, training_tiles  # noqa: E402
from core.train.runs import new_run_dir, read_metrics, run_path, select_epoch  # noqa: E402

TARGET_ACC = 0.80
BUDGET_S = 600.0  # the limit for tile pack + training on 2 cores
AIM_S = 300.0  # half of it, so a slower CI machine still fits


def _stage(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _per_tissue(confusion: np.ndarray, classes: list[str]) -> dict[str, tuple[float, int]]:
    """tissue -> (accuracy on its test tiles, number of test tiles)."""
    totals = confusion.sum(axis=1)
    return {c: (confusion[i, i] / totals[i] if totals[i] else float("nan"), int(totals[i]))
            for i, c in enumerate(classes)}


def _pair_confusion(confusion: np.ndarray, classes: list[str], a: str, b: str) -> tuple[int, int, int, int]:
    """(a tiles called b, a test tiles, b tiles called a, b test tiles); zeros for a tissue not in the run."""
    if a not in classes or b not in classes:
        return 0, 0, 0, 0
    i, j = classes.index(a), classes.index(b)
    return int(confusion[i, j]), int(confusion[i].sum()), int(confusion[j, i]), int(confusion[j].sum())


def _children_cpu() -> float:
    """CPU seconds of finished child processes (loader workers) that were waited for."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _load(values: tuple[float, float, float]) -> str:
    return " / ".join(f"{v:.1f}" for v in values)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workspace", required=True, help="workspace for the demo cohort, tile index, pack and run")
    parser.add_argument("--data", help="dataset folder (default: the workspace's demo cohort, generated if missing)")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = all cores, the default)")
    parser.add_argument("--seed", type=int, default=TrainConfig().seed)
    parser.add_argument("--json", action="store_true", help="also print the figures as one JSON line")
    parser.add_argument("--report", metavar="RUN",
                        help="train nothing: report this finished run of the workspace (wall time from its summary; "
                             "CPU time and load are not known then)")
    args = parser.parse_args()

    ws = workspace(args.workspace)
    start = time.perf_counter()
    if args.data:
        data = Path(args.data).resolve()
    else:
        _stage(f"demo cohort in {ws.demo_dir} (generated if missing)")
        data = ensure_demo_cohort(ws)
    demo_s = time.perf_counter() - start

    start = time.perf_counter()
    cohort = load_cohort(data, ws)
    samples = cohort.samples[cohort.samples["has_slide"].astype(bool)]
    _stage(f"tile index for {len(samples)} slides (reused when cached)")
    index = build_tile_index(samples, TilingParams(), ws).index
    tiling_s = time.perf_counter() - start

    if args.report:
        run_dir = run_path(ws, args.report)
        config = TrainConfig.from_dict(json.loads((run_dir / "config.json").read_text()))
        result = json.loads((run_dir / "summary.json").read_text())
        train_s, train_cpu_s = float(result.get("train_seconds") or "nan"), float("nan")
        load_before = load_after = (float("nan"),) * 3
    else:
        config = replace(TrainConfig(), threads=args.threads, seed=args.seed)
        run_dir = new_run_dir(ws)
        _stage(f"training {config.arch} for {config.epochs} epochs at {config.image_size} px into {run_dir}")
        load_before = os.getloadavg()
        cpu_start = time.process_time() + _children_cpu()
        start = time.perf_counter()
        result = train_run(run_dir, config, index, ws, meta={"data_dir": str(data), "benchmark": True})
        train_s = time.perf_counter() - start
        train_cpu_s = time.process_time() + _children_cpu() - cpu_start
        load_after = os.getloadavg()

    _, epochs = read_metrics(run_dir)
    saved = json.loads((run_dir / "config.json").read_text())
    classes = saved["classes"]
    split = json.loads((run_dir / "split.json").read_text())
    selection = select_epoch(epochs)
    chosen = epochs.set_index("epoch").loc[selection["selected_epoch"]]
    confusion = np.array(chosen["confusion"])
    accuracy = float(selection["test_acc_selected"])
    final_accuracy = float(selection["test_acc_final"])
    test_counts = confusion.sum(axis=1)
    test_commonest = float(test_counts.max() / test_counts.sum())  # knows the test tissues: an upper bound
    tiles = training_tiles(index)
    train_tissues = tiles.loc[tiles["tile_id"].isin(set(split["train_tiles"])), "tissue"].astype(str)
    train_majority = str(train_tissues.value_counts().idxmax())
    majority = float(test_counts[classes.index(train_majority)] / test_counts.sum()) if train_majority in classes \
        else 0.0  # the commonest training tissue called for every test tile
    tiles_per_s = float(np.mean(epochs["tiles_per_s"]))
    fit_s = float(epochs["seconds"].sum())

    print(f"run {run_dir.name}: {result['status']}, {len(epochs)} epochs, "
          f"{config.arch} lr {config.lr:g} batch {config.batch_size} at {config.image_size} px")
    print(f"donors: {len(split['train_donors'])} train, {len(split['validation_donors'])} validation, "
          f"{len(split['test_donors'])} test; tiles {saved['train_tiles']} / {saved['validation_tiles']} / "
          f"{saved['test_tiles']}")
    print(f"selected epoch {selection['selected_epoch']} by {selection['selected_by']} "
          f"({selection['val_acc_selected'] or float('nan'):.1%} on validation donors)")
    print(f"test accuracy at selected epoch  {accuracy:6.1%}   target {TARGET_ACC:.0%}   "
          f"ratio {accuracy / TARGET_ACC:.2f}")
    print(f"test accuracy at final epoch     {final_accuracy:6.1%}   target {TARGET_ACC:.0%}   "
          f"ratio {final_accuracy / TARGET_ACC:.2f}")
    print(f"baseline: majority class         {majority:6.1%}   (always {train_majority}, the commonest training "
          f"tissue; ratio of ours {accuracy / max(majority, 1e-9):.1f})")
    print(f"          commonest test tissue  {test_commonest:6.1%}   (an upper bound for any constant guess)")
    print(f"wall time, pack + training       {train_s:6.0f} s   budget {BUDGET_S:.0f} s   "
          f"ratio {train_s / BUDGET_S:.2f}   (aim {AIM_S:.0f} s: ratio {train_s / AIM_S:.2f})")
    if args.report:
        print("CPU time and load average       not known (a report of a finished run)")
    else:
        print(f"CPU time, pack + training        {train_cpu_s:6.0f} s   ({train_cpu_s / max(train_s, 1e-9):.2f} "
              f"cores busy on average; {os.cpu_count()} cores)")
        print(f"load average (1/5/15 min)        before {_load(load_before)}, after {_load(load_after)}")
    print(f"  of which epochs (train + eval) {fit_s:6.0f} s; tiling {tiling_s:.0f} s, demo {demo_s:.0f} s "
          "(not in the budget when reused)")
    print(f"training throughput              {tiles_per_s:6.0f} tiles/s (mean over epochs)")
    print(f"per-tissue accuracy (test tiles, epoch {selection['selected_epoch']}):")
    for tissue, (acc, n) in sorted(_per_tissue(confusion, classes).items(), key=lambda item: item[1][0]):
        print(f"  {tissue:40s} {acc:6.1%}  of {n} tiles")
    print("hard pairs (test tiles of one called the other):")
    pairs = {}
    for a, b in HARD_PAIRS:
        ab, na, ba, nb = _pair_confusion(confusion, classes, a, b)
        pairs[f"{a} | {b}"] = [ab, na, ba, nb]
        share = (ab + ba) / max(1, na + nb)
        print(f"  {a} -> {b}: {ab}/{na};  {b} -> {a}: {ba}/{nb};  pair confusion {share:.1%}")
    if args.json:
        print(json.dumps({
            "test_acc_selected": accuracy, "test_acc_final": final_accuracy, "selection": selection,
            "majority_baseline": majority, "majority_class": train_majority,
            "commonest_test_share": test_commonest, "cpu_s": train_cpu_s, "load_before": load_before,
            "load_after": load_after, "donors": {k: len(split[f"{k}_donors"]) for k in ("train", "validation", "test")},
            "tiles": {k: saved[f"{k}_tiles"] for k in ("train", "validation", "test")},
            "target": TARGET_ACC, "ratio": accuracy / TARGET_ACC, "wall_s": train_s,
            "budget_s": BUDGET_S, "tiles_per_s": tiles_per_s, "tiling_s": tiling_s, "classes": classes,
            "confusion": confusion.tolist(), "hard_pairs": pairs, "run_dir": str(run_dir),
        }))
    if not args.report:  # a report of an older run has no load or date of its own to record
        record("bench_default_training", f"test accuracy {accuracy:.1%} at epoch {selection['selected_epoch']} "
               f"(selected on validation), {train_s:.0f} s pack + training",
               f"target {TARGET_ACC:.0%} (accuracy ratio); majority class {majority:.1%}; budget {BUDGET_S:.0f} s",
               accuracy / TARGET_ACC, load_before,
               {"test_acc_selected": accuracy, "test_acc_final": final_accuracy,
                "selected_epoch": selection["selected_epoch"], "val_acc_selected": selection["val_acc_selected"],
                "majority_baseline": majority, "wall_s": train_s, "cpu_s": train_cpu_s, "budget_s": BUDGET_S,
                "tiles_per_s": tiles_per_s})
    return 0 if accuracy >= TARGET_ACC and train_s <= BUDGET_S else 1


if __name__ == "__main__":
    sys.exit(main())
