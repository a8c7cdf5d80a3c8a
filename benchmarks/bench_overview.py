"""Overview page: its warm server-side run on the demo cohort and on a 1,000-slide cohort, against the
issue's goals (0.3 s and 0.5 s) and against the same page run uncached, measured in one process.

    .venv/bin/python benchmarks/bench_overview.py [--workspace workspace/bench-overview] [--slides 1000]
                                                  [--runs 7] [--only demo|large]

Each cohort is generated and tiled once into the workspace and reused by later runs: the default demo
cohort (88 slides), and a large one made by the demo generator with tiny slides (512 x 512 px, so
1,000 of them take minutes, not hours). A page run is app.py's script executed by Streamlit's script
runner through AppTest, every element serialized as the server does for a rerun; the time reported is
the script execution in the runner thread, wall and CPU time (AppTest's whole `run()`, which also parses
the messages back, is printed beside it); as in a server, the scripts' compiled bytecode is kept across
runs (AppTest alone would recompile them each run). The first run only warms up imports. "uncached" then
clears Streamlit's caches and the fingerprint memo (a fresh server process
with the workspace's diskcache already filled); "warm" is the median of the next `--runs` reruns. During
the warm runs the script also counts slide files whose content was hashed (0: a rerun costs one stat
per slide) and the bytes read by the process (/proc/self/io rchar).
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("STREAMLIT_LOGGER_LEVEL", "error")  # no "missing ScriptRunContext" lines from set-up

import streamlit as st  # noqa: E402
from streamlit.runtime.scriptrunner import script_runner  # noqa: E402
from streamlit.runtime.scriptrunner.script_cache import ScriptCache  # noqa: E402
from streamlit.testing.v1 import AppTest, app_test, local_script_runner  # noqa: E402

import core.base.cache  # noqa: E402
from benchmarks.record import record, start_load  # noqa: E402
from core.base.config import DATA_ENV, WORKSPACE_ENV, Workspace, workspace  # noqa: E402
from core.data.dataset import load_cohort  # noqa: E402
from core.demo import COMPLETE_MARKER, ensure_demo_cohort, make_demo_cohort  # noqa: E402
from core.tiles.index import TilingParams, build_tile_index, find_tile_index  # noqa: E402

APP = str(Path(__file__).resolve().parents[1] / "app.py")
GOALS_S = {"demo": 0.3, "large": 0.5}
LARGE_SLIDE = (512, 512)
SLIDES_PER_DONOR = 8  # the demo planner gives each donor about 80% of its 10 tissues


def prepare_demo(ws: Workspace) -> Path:
    return ensure_demo_cohort(ws)


def prepare_large(ws: Workspace, slides: int) -> Path:
    out = ws.root / f"large-{slides}"
    if not (out / COMPLETE_MARKER).is_file():
        print(f"generating a {slides}-slide cohort ({LARGE_SLIDE[0]} x {LARGE_SLIDE[1]} px slides) in {out} ...",
              file=sys.stderr)
        make_demo_cohort(out, seed=1, n_donors=math.ceil(slides / SLIDES_PER_DONOR), slide_size=LARGE_SLIDE,
                         n_genes=1000, workers=max(1, min(4, os.cpu_count() or 1)))
    return out


def tile(ws: Workspace, data: Path) -> int:
    """Tile the cohort once (cached in the workspace); the number of slides."""
    cohort = load_cohort(data, ws)
    samples = cohort.samples[cohort.samples["has_slide"]]
    if find_tile_index(samples, TilingParams(), ws) is None:
        print(f"tiling {len(samples)} slides of {data} ...", file=sys.stderr)
        build_tile_index(samples, TilingParams(), ws)
    return len(samples)


def _rchar() -> int:
    try:
        for line in Path("/proc/self/io").read_text().splitlines():
            if line.startswith("rchar:"):
                return int(line.split()[1])
    except OSError:
        pass
    return -1


# Seconds of the last script execution inside the runner thread: the server-side run proper, without
# AppTest's own work (recompiling the script, parsing the page's messages back into elements).
# Its CPU time too: on a machine shared with other work, wall time counts the waits for a core.
_SCRIPT_S: list[tuple[float, float]] = []
_run_script = script_runner.ScriptRunner._run_script


def _timed_run_script(self: script_runner.ScriptRunner, *args: object, **kwargs: object) -> object:
    start, cpu = time.perf_counter(), time.thread_time()
    try:
        return _run_script(self, *args, **kwargs)
    finally:
        _SCRIPT_S.append((time.perf_counter() - start, time.thread_time() - cpu))


script_runner.ScriptRunner._run_script = _timed_run_script

# A server keeps one ScriptCache (the scripts' compiled bytecode) for all sessions and reruns; AppTest
# makes a new one per run, so each run would read and recompile app.py and the page (~0.03 s here).
_SCRIPT_CACHE = ScriptCache()
app_test.ScriptCache = local_script_runner.ScriptCache = lambda: _SCRIPT_CACHE


def _run(app: AppTest) -> tuple[float, tuple[float, float]]:
    """(AppTest run seconds, (script run seconds, its CPU seconds))."""
    start = time.perf_counter()
    app.run()
    seconds = time.perf_counter() - start
    if app.exception:
        raise RuntimeError(f"the page raised: {[e.value for e in app.exception]}")
    return seconds, _SCRIPT_S[-1]


def measure(ws: Workspace, data: Path | None, runs: int) -> dict[str, float]:
    os.environ[WORKSPACE_ENV] = str(ws.root)
    if data is None:
        os.environ.pop(DATA_ENV, None)
    else:
        os.environ[DATA_ENV] = str(data)
    hashed = [0]
    content_fingerprint = core.base.cache._content_fingerprint

    def counting(path: Path, stat: os.stat_result) -> str:
        hashed[0] += 1
        return content_fingerprint(path, stat)

    core.base.cache._content_fingerprint = counting
    try:
        app = AppTest.from_file(APP, default_timeout=900)
        _run(app)  # imports and first-time set-up, not counted
        st.cache_data.clear()
        st.cache_resource.clear()
        core.base.cache._MEMO.clear()
        hashed[0] = 0
        uncached = _run(app)
        uncached_hashed = hashed[0]
        hashed[0], before = 0, _rchar()
        warm = [_run(app) for _ in range(runs)]
        read_kb = (_rchar() - before) / 1024 / runs
    finally:
        core.base.cache._content_fingerprint = content_fingerprint
    return {"uncached": uncached[1][0], "uncached_cpu": uncached[1][1], "uncached_hashed": uncached_hashed,
            "warm": statistics.median(s for _, (s, _) in warm), "warm_max": max(s for _, (s, _) in warm),
            "warm_cpu": statistics.median(c for _, (_, c) in warm),
            "warm_apptest": statistics.median(a for a, _ in warm), "warm_hashed": hashed[0] / runs,
            "read_kb": read_kb, "load": os.getloadavg()[0]}


def report(name: str, slides: int, m: dict[str, float]) -> bool:
    goal = GOALS_S[name]
    print(f"overview, {name} cohort ({slides} slides): warm script run {m['warm']:.3f} s wall (median; max "
          f"{m['warm_max']:.3f}; whole AppTest run {m['warm_apptest']:.3f}), {m['warm_cpu']:.3f} s CPU   "
          f"goal {goal:.1f} s   ratio {m['warm'] / goal:.2f} wall, {m['warm_cpu'] / goal:.2f} CPU")
    print(f"  vs the uncached run {m['uncached']:.3f} s wall, {m['uncached_cpu']:.3f} s CPU (slides hashed: "
          f"{m['uncached_hashed']:.0f}): ratio {m['warm'] / m['uncached']:.3f} wall; warm runs hashed "
          f"{m['warm_hashed']:.0f} slides and read {m['read_kb']:.0f} KB each; load average {m['load']:.1f} "
          f"on {os.cpu_count()} cores")
    return m["warm"] <= goal


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workspace", default="workspace/bench-overview")
    parser.add_argument("--slides", type=int, default=1000, help="slides in the large cohort")
    parser.add_argument("--runs", type=int, default=7, help="warm reruns per cohort (median reported)")
    parser.add_argument("--only", choices=("demo", "large"))
    args = parser.parse_args()
    load_start = start_load()
    ws = workspace(args.workspace)
    ok = True
    measured: dict[str, dict] = {}
    if args.only in (None, "demo"):
        demo = prepare_demo(ws)
        slides = tile(ws, demo)
        measured["demo"] = {"slides": slides, **measure(ws, None, args.runs)}
        ok &= report("demo", slides, measured["demo"])
    if args.only in (None, "large"):
        large = prepare_large(ws, args.slides)
        slides = tile(ws, large)
        measured["large"] = {"slides": slides, **measure(ws, large, args.runs)}
        ok &= report("large", slides, measured["large"])
    figure = "; ".join(f"{m['warm']:.3f} s warm rerun, {name} cohort ({m['slides']} slides)"
                       for name, m in measured.items())
    head = next(iter(measured))
    record("bench_overview", figure, "; ".join(f"goal {GOALS_S[name]:.1f} s ({name})" for name in measured)
           + f" (ratio: {head})", measured[head]["warm"] / GOALS_S[head], load_start, measured)
    return 0 if ok else 1  # judged on wall time


if __name__ == "__main__":
    sys.exit(main())
