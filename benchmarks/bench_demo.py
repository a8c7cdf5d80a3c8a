"""Default demo cohort generation time against the issue's 60 s budget on 2 CPU cores.

    .venv/bin/python benchmarks/bench_demo.py [--workers 2]

Generates the default cohort (the one the app makes on first start) into a temporary folder and
prints wall time and slides/s beside the budget, as a ratio; a second, single-slide generation gives
the fixed cost (CSV, GCT, truth) apart from drawing slides.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core.demo import DEFAULT_DONORS, SLIDES_DIR, make_demo_cohort  # noqa: E402

BUDGET_S = 60.0


def time_cohort(workers: int, **sizes: int) -> tuple[float, int]:
    with tempfile.TemporaryDirectory() as root:
        start = time.perf_counter()
        out = make_demo_cohort(Path(root) / "demo", workers=workers, **sizes)
        seconds = time.perf_counter() - start
        return seconds, len(list((out / SLIDES_DIR).glob("*.svs")))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=int, default=2, help="slide-drawing processes (default 2, as the app)")
    args = parser.parse_args()

    seconds, slides = time_cohort(args.workers)
    small_s, small_slides = time_cohort(args.workers, n_donors=2, n_tissues=1)
    print(f"default demo cohort ({DEFAULT_DONORS} donors): {slides} slides in {seconds:5.1f} s "
          f"({slides / seconds:.2f} slides/s)   budget {BUDGET_S:.0f} s   ratio {seconds / BUDGET_S:.2f}")
    print(f"smallest cohort (2 donors, 1 tissue): {small_slides} slides in {small_s:5.1f} s "
          f"(fixed cost: CSV, GCT, truth, pool start)")
    return 0 if seconds <= BUDGET_S else 1


if __name__ == "__main__":
    sys.exit(main())
