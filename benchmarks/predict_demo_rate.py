"""How often the default run predicts demo slides of a cohort it never saw (another seed) as their tissue.

    .venv/bin/python benchmarks/predict_demo_rate.py [--workspace WS] [--run RUN] [--seed 1] [--donors 2]

Generates a demo cohort with `--seed` (the default run was trained on seed 0's cohort) into a temporary
folder, predicts every slide with core.predict.predict_slide against the run's own reference dataset
(in one process: the model loads once), and prints the share predicted as their tissue, per tissue, the
top-3 rate, the majority-class baseline (the run's commonest training tissue, which a constant guess
would score) and the chance rate (1 / tissues). Predictions go to the workspace's prediction cache.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workspace", default=os.environ.get("HISTOGENE_WORKSPACE", "workspace"))
    parser.add_argument("--run", help="run id or folder (default: the best finished run)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--donors", type=int, default=2)
    parser.add_argument("--cohort", help="an unseen cohort already generated (e.g. by another generator version)")
    args = parser.parse_args()

    import pandas as pd

    from core.base.config import workspace
    from core.data.dataset import load_cohort
    from core.demo.cohort import make_demo_cohort
    from core.predict import predict_slide, request_for, run_model
    from core.train.runs import run_split

    ws = workspace(args.workspace)
    request = request_for(ws, args.run)
    print(f"run {request.run_dir}; load average {os.getloadavg()}")
    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        if args.cohort:
            data = Path(args.cohort)
        else:
            data = make_demo_cohort(Path(tmp) / "demo", seed=args.seed, n_donors=args.donors, workers=1)
        cohort = load_cohort(data)
        print(f"cohort {data} (seed {args.seed}): {len(cohort.samples)} slides, {time.perf_counter() - started:.0f} s")
        rows = []
        for sample in cohort.samples.itertuples(index=False):
            t0 = time.perf_counter()
            prediction = predict_slide(ws, None, sample.slide_path, request)
            top = [entry["tissue"] for entry in prediction.top3]
            rows.append({"sample_id": sample.sample_id, "tissue": sample.tissue, "predicted": prediction.tissue,
                         "top3": sample.tissue in top, "kept": prediction.tile_summary["kept"],
                         "seconds": time.perf_counter() - t0, "warnings": len(prediction.warnings)})
            print(f"  {sample.sample_id} {sample.tissue:<40} -> {prediction.tissue:<40} "
                  f"({rows[-1]['seconds']:.1f} s, {rows[-1]['kept']} tiles)", flush=True)
    table = pd.DataFrame(rows)
    correct = (table["tissue"] == table["predicted"])
    model = run_model(request)
    reference = load_cohort(model.data_dir).samples.set_index("sample_id")["tissue"].astype(str)
    split = run_split(request.run_dir)
    train = split.loc[split["split"] == "train", "sample_id"].astype(str)
    majority = Counter(reference.reindex(train).dropna()).most_common(1)[0][0]
    baseline = (table["tissue"] == majority).mean()
    print(f"majority-class baseline (always '{majority}', the commonest training tissue): {baseline:.1%}")
    print(f"predicted as their tissue: {int(correct.sum())} of {len(table)} ({correct.mean():.1%}); "
          f"in the top 3: {table['top3'].mean():.1%}; chance {1 / table['tissue'].nunique():.1%}")
    print(table.assign(correct=correct).groupby("tissue")["correct"].agg(["sum", "count"]).to_string())
    return 0


if __name__ == "__main__":
    sys.exit(main())
