"""Acceptance of the gene ranking on the demo cohort: with the default training run, the planted image-linked
genes rank high (recall_top_2k >= 0.8: their share among the top 2k by R² beyond tissue, k = their number)
and the noise genes do not (median R² <= 0.05); the same pipeline on random-weights features of the same
architecture beside it. Judged with the demo's truth.json, which the ranking never reads.

Run after benchmarks/bench_default_training.py (which leaves the demo cohort and a trained run in the
workspace); uses the latest finished run unless --run is given. Embeddings are cached in the workspace.

    .venv/bin/python benchmarks/bench_rank_demo.py --workspace workspace/bench [--run RUN] [--epoch E]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.record import record, start_load  # noqa: E402
from core.base.config import workspace  # noqa: E402
from core.embed.features import FeatureSource  # noqa: E402
from core.ranking.api import rank_genes  # noqa: E402
from core.ranking.cv import RankParams  # noqa: E402
from core.ranking.truth import truth_report  # noqa: E402
from core.train import runs  # noqa: E402

RECALL_GOAL, NOISE_GOAL = 0.8, 0.05


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workspace", default="workspace/bench")
    parser.add_argument("--data", help="dataset folder (default: the workspace's demo cohort)")
    parser.add_argument("--run", help="training run (default: the latest finished one)")
    parser.add_argument("--epoch", type=int, help="checkpoint epoch (default: the one the run selected on validation, "
                        "as the app uses)")
    args = parser.parse_args()
    ws = workspace(args.workspace)
    load_start = start_load()
    data = Path(args.data) if args.data else ws.demo_dir
    if args.run:
        run_dir = runs.run_path(ws, args.run)
    else:
        table = runs.list_runs(ws)
        done = table[table["status"] == "done"] if "status" in table else table
        if done.empty:
            print(f"no finished training run in {ws.root}: run benchmarks/bench_default_training.py first")
            return 1
        run_dir = runs.run_path(ws, str(done.sort_values("run_id").iloc[-1]["run_id"]))
    trained = FeatureSource.checkpoint(run_dir, args.epoch if args.epoch is not None else runs.selected_epoch(run_dir))
    random = FeatureSource.for_run(run_dir, "random")
    params = RankParams()
    print(f"demo cohort {data}; run {run_dir.name}; params {params}; load average "
          f"{' '.join(f'{v:.1f}' for v in os.getloadavg())}")
    rows = []
    for source in (trained, random):
        wall, cpu = time.perf_counter(), time.process_time()
        ranking = rank_genes(ws, data, source, params)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        truth = truth_report(data, ranking.table)
        if truth is None:
            print(f"{data} has no truth.json: not the demo cohort")
            return 1
        summary = ranking.summary
        rows.append((source, truth, summary))
        print(f"\n{source.label}: {summary['genes']} genes x {summary['samples']} samples, {summary['donors']} donors "
              f"({'cached' if summary['cached'] else 'computed'}; {wall:.1f} s wall, {cpu:.1f} s CPU incl. embedding)")
        print(f"  recall_top_2k {truth['recall_top_2k']} of {truth['planted']} planted genes (goal >= {RECALL_GOAL}); "
              f"noise median R² {truth['noise_median_r2']} over {truth['noise_genes']} (goal <= {NOISE_GOAL}); "
              f"planted median R² {truth['planted_median_r2']}")
        print(f"  median R² {summary['median_r2']}, beyond tissue {summary['median_r2_beyond_tissue']}, tissue only "
              f"{summary['median_r2_tissue']}, permutation null {summary.get('median_r2_null')}; recovered "
              f"(SEQUOIA rule vs random weights) {summary.get('recovered')}, by random weights "
              f"{summary.get('recovered_by_random')}; r > 0: {summary['positive_r']}")
    truth = rows[0][1]
    met = truth["recall_top_2k"] >= RECALL_GOAL and truth["noise_median_r2"] <= NOISE_GOAL
    print(f"\ntrained: recall_top_2k {truth['recall_top_2k']} vs random weights {rows[1][1]['recall_top_2k']}; "
          f"noise median R² {truth['noise_median_r2']} vs {rows[1][1]['noise_median_r2']}; goals "
          f"{'met' if met else 'NOT met'}")
    rand = rows[1][1]
    # The run is named by its epoch and test accuracy only: run ids stay out of tracked files.
    beyond = (f"; significant beyond tissue {rows[0][2].get('recovered_beyond_tissue')} genes "
              f"({truth.get('beyond_tissue_planted')} planted, {truth.get('beyond_tissue_noise')} noise)")
    record("bench_rank_demo", f"recall_top_2k {truth['recall_top_2k']} (goal >= {RECALL_GOAL}), noise median R² "
           f"{truth['noise_median_r2']} (goal <= {NOISE_GOAL}); trained features, epoch {trained.epoch}" + beyond,
           f"random weights of the same architecture: recall_top_2k {rand['recall_top_2k']} (recall ratio)",
           truth["recall_top_2k"] / rand["recall_top_2k"] if rand["recall_top_2k"] else None, load_start,
           {"trained": truth, "random": rand, "recovered": rows[0][2].get("recovered"),
            "recovered_by_random": rows[0][2].get("recovered_by_random"), "samples": rows[0][2]["samples"],
            "genes": rows[0][2]["genes"]})
    return 0


if __name__ == "__main__":
    sys.exit(main())
