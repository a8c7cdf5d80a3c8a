"""Default demo cohort generation time against the issue's 60 s budget on 2 CPU cores.

    .venv/bin/python benchmarks/bench_demo.py [--workers 2] [--against GIT_REF [--rounds 3]]

Generates the default cohort (the one the app makes on first start) into a temporary folder and
prints wall time and slides/s beside the budget, as a ratio; a second, single-slide generation gives
the fixed cost (CSV, GCT, truth) apart from drawing slides.

`--against REF` also times the generator of a git revision (its `core/`, exported to a temporary
folder), alternating with this checkout's for `--rounds` rounds so both see the same machine load,
prints every run, the medians and their ratio, and says whether the two cohorts are byte-identical
(if they are not, the drawing changed and GENERATOR_VERSION must change with it).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.record import record, start_load  # noqa: E402
from core.demo import DEFAULT_DONORS, SLIDES_DIR, make_demo_cohort  # noqa: E402

BUDGET_S = 60.0
# Run in a fresh interpreter with `core` from the given folder: both generators are timed the same way.
_TIMED = (
    "import sys, time; sys.path.insert(0, sys.argv[1]); from core.demo import make_demo_cohort; "
    "start = time.perf_counter(); make_demo_cohort(sys.argv[2], workers=int(sys.argv[3])); "
    "print(time.perf_counter() - start)"
)


def time_cohort(workers: int, **sizes: int) -> tuple[float, int]:
    with tempfile.TemporaryDirectory() as root:
        start = time.perf_counter()
        out = make_demo_cohort(Path(root) / "demo", workers=workers, **sizes)
        seconds = time.perf_counter() - start
        return seconds, len(list((out / SLIDES_DIR).glob("*.svs")))


def export_core(ref: str, dest: Path) -> Path:
    """`core/` of git revision `ref` under `dest` (raises CalledProcessError for an unknown ref)."""
    dest.mkdir(parents=True, exist_ok=True)
    archive = dest / "core.tar"
    with archive.open("wb") as handle:
        subprocess.run(["git", "-C", str(REPO), "archive", ref, "core"], stdout=handle, check=True)
    with tarfile.open(archive) as tar:
        tar.extractall(dest, filter="data")
    return dest


def timed_generation(code_root: Path, out: Path, workers: int) -> float:
    # PYTHONPATH too, and a neutral working directory: the slide workers must import the same `core`.
    env = {**os.environ, "PYTHONPATH": str(code_root)}
    done = subprocess.run([sys.executable, "-c", _TIMED, str(code_root), str(out), str(workers)],
                          check=True, capture_output=True, text=True, env=env, cwd=out.parent)
    return float(done.stdout.strip().splitlines()[-1])


def file_hashes(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha1(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def compare(ref: str, rounds: int, workers: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        base_code = export_core(ref, Path(tmp) / "ref")
        times: dict[str, list[float]] = {"this checkout": [], ref: []}
        identical = None
        for round_no in range(1, rounds + 1):
            outs = {}
            for label, code in (("this checkout", REPO), (ref, base_code)):
                outs[label] = Path(tmp) / f"{len(times[label])}-{label.replace('/', '_')}"
                times[label].append(timed_generation(code, outs[label], workers))
                print(f"round {round_no}: {label:>14}  {times[label][-1]:6.1f} s", flush=True)
            if identical is None:
                identical = file_hashes(outs["this checkout"]) == file_hashes(outs[ref])
            for out in outs.values():
                shutil.rmtree(out)
        ours, theirs = statistics.median(times["this checkout"]), statistics.median(times[ref])
        print(f"median: this checkout {ours:.1f} s, {ref} {theirs:.1f} s   ratio {ours / theirs:.2f}   "
              f"budget {BUDGET_S:.0f} s: ratio {ours / BUDGET_S:.2f} (slowest run {max(times['this checkout']):.1f} s)")
        print(f"cohorts byte-identical: {'yes' if identical else 'NO: the drawing changed, bump GENERATOR_VERSION'}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=int, default=2, help="slide-drawing processes (default 2, as the app)")
    parser.add_argument("--against", metavar="GIT_REF", help="also time this revision's generator, alternating")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds with --against (default 3)")
    args = parser.parse_args()
    if args.against:
        compare(args.against, args.rounds, args.workers)
        return 0

    load_start = start_load()
    seconds, slides = time_cohort(args.workers)
    small_s, small_slides = time_cohort(args.workers, n_donors=2, n_tissues=1)
    print(f"default demo cohort ({DEFAULT_DONORS} donors): {slides} slides in {seconds:5.1f} s "
          f"({slides / seconds:.2f} slides/s)   budget {BUDGET_S:.0f} s   ratio {seconds / BUDGET_S:.2f}")
    print(f"smallest cohort (2 donors, 1 tissue): {small_slides} slides in {small_s:5.1f} s "
          f"(fixed cost: CSV, GCT, truth, pool start)")
    record("bench_demo", f"{seconds:.1f} s for the default cohort ({slides} slides, {args.workers} workers)",
           f"the {BUDGET_S:.0f} s budget", seconds / BUDGET_S, load_start,
           {"seconds": seconds, "slides": slides, "slides_per_s": slides / seconds, "fixed_cost_s": small_s})
    return 0 if seconds <= BUDGET_S else 1


if __name__ == "__main__":
    sys.exit(main())
