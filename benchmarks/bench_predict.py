"""Predicting one slide (issue 11): time per step, cold and warm, with CPU time and the load average.

    .venv/bin/python benchmarks/bench_predict.py [--workspace WS] [--run RUN] [--skip-gtex]

Each prediction runs as a user runs it: `python -m core predict SLIDE --json` in a new process (the
interpreter, imports of torch and the QC's compiled code, the checkpoint loaded). "Cold" first removes this
slide's entries from the prediction cache (its tiles, embeddings and result), so every step runs; the
run's reference embeddings, gene ranking and final gene models are per-run caches and stay warm (the
first prediction after a new run pays for those once). "Warm" is the same file again (cached: true).
Targets (issue 11, on 2 CPU cores): the real CMU-1-Small-Region.svs cold < 15 s and warm < 2 s; a
GTEx-size slide (40,000 x 30,000 px, benchmarks/gtex_slide.py) with every tile cold < 60 s.

Printed per run: wall s and CPU s of the process (CPU = user + system of it and its children: what an
idle machine would need at most), the per-step wall seconds the report gives (read, tiles, embed, tissue,
expression, map, report), the start-up (process wall minus the steps: interpreter and imports), and
`uptime`'s load average before and after (other agents share these 2 cores).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.gtex_slide import make_gtex_size_svs  # noqa: E402
from benchmarks.record import record, start_load  # noqa: E402

CMU = REPO.parent / "shared" / "testdata" / "CMU-1-Small-Region.svs"
TARGETS = {"CMU cold": 15.0, "CMU warm": 2.0, "GTEx cold": 60.0}


def load() -> str:
    return os.getloadavg().__repr__()


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def forget(ws_root: Path, sha: str) -> int:
    """Remove this file's prediction cache entries (slide features and results); returns how many."""
    removed = 0
    for folder in ("slides", "results"):
        for entry in (ws_root / "cache" / "predictions" / folder).glob(f"{sha[:32]}-*"):
            if entry.is_dir():
                shutil.rmtree(entry)
                removed += 1
    return removed


def predict(ws_root: Path, slide: Path, run: str | None) -> dict:
    argv = [sys.executable, "-m", "core", "--workspace", str(ws_root), "predict", str(slide), "--json"]
    if run:
        argv += ["--run", run]
    before_load, cpu0, t0 = os.getloadavg(), children_cpu(), time.perf_counter()
    done = subprocess.run(argv, cwd=REPO, capture_output=True, text=True)
    wall, cpu = time.perf_counter() - t0, children_cpu() - cpu0
    if done.returncode != 0:
        raise SystemExit(f"predict failed ({done.returncode}):\n{done.stderr[-3000:]}")
    report = json.loads(done.stdout)
    return {"wall": wall, "cpu": cpu, "load_before": before_load, "load_after": os.getloadavg(), "report": report}


def show(name: str, result: dict) -> None:
    report = result["report"]
    steps = report["seconds"]
    inside = steps.get("total", 0.0)
    target = TARGETS.get(name)
    verdict = "" if target is None else f" (target < {target:g} s: {'met' if result['wall'] < target else 'NOT met'})"
    print(f"{name}: wall {result['wall']:.2f} s, CPU {result['cpu']:.2f} s{verdict}; cached={report['cached']}; "
          f"tiles {report['tiles']['kept']}/{report['tiles']['considered']} kept; tissue {report['tissue']}")
    print("  steps (wall s): " + ", ".join(f"{k} {v:.2f}" for k, v in steps.items()))
    print(f"  start-up (process wall - steps): {result['wall'] - inside:.2f} s")
    print(f"  load average before {tuple(round(x, 2) for x in result['load_before'])}, "
          f"after {tuple(round(x, 2) for x in result['load_after'])}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workspace", default=os.environ.get("HISTOGENE_WORKSPACE", "workspace"))
    parser.add_argument("--run", help="run id or folder (default: the best finished run)")
    parser.add_argument("--skip-gtex", action="store_true")
    parser.add_argument("--gtex", help="the GTEx-size slide (default: benchmarks/gtex_slide.py's, made when missing)")
    args = parser.parse_args()
    load_start = start_load()
    ws_root = Path(args.workspace).resolve()
    from core.predict import file_sha256

    print(f"workspace {ws_root}; {os.cpu_count()} CPUs; load average {load()}")
    subprocess.run([sys.executable, "-c", "import core.predict, torch"], cwd=REPO, check=True)  # disk cache warm
    forget(ws_root, file_sha256(CMU))
    results = {"CMU cold": predict(ws_root, CMU, args.run), "CMU warm": predict(ws_root, CMU, args.run)}
    if not args.skip_gtex:
        gtex = make_gtex_size_svs(args.gtex)  # reused when already there
        forget(ws_root, file_sha256(gtex))
        results["GTEx cold"] = predict(ws_root, gtex, args.run)
        results["GTEx warm"] = predict(ws_root, gtex, args.run)
    for name, result in results.items():
        show(name, result)
    cold, warm = results["CMU cold"]["wall"], results["CMU warm"]["wall"]
    figures = {name: {"wall_s": r["wall"], "cpu_s": r["cpu"], "steps_s": r["report"]["seconds"],
                      "target_s": TARGETS.get(name)} for name, r in results.items()}
    figure = f"CMU-1 cold {cold:.1f} s, warm {warm:.2f} s" + (
        f"; GTEx-size cold {results['GTEx cold']['wall']:.1f} s" if "GTEx cold" in results else "")
    record("bench_predict", figure, f"the {TARGETS['CMU cold']:g} s target for CMU-1 cold (ratio)",
           cold / TARGETS["CMU cold"], load_start, figures)
    return 0


if __name__ == "__main__":
    sys.exit(main())
