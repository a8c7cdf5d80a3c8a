"""Explorer re-render time in a real browser at tile-study scale (200,000 tiles by default): once the maps are
cached, how long switching the colour or the level takes, from the click until the new map is drawn.

Set-up (untimed): a small demo cohort is tiled, its tile index is grown to --tiles rows (the real tiles
repeated at shifted positions, so every tile belongs to a real slide, donor and tissue), and synthetic
embeddings (tissue clusters, --dim wide) are stored in the embedding cache as the random-weights source the
page offers by default; `python -m core map` then computes the tiles and slides PCA maps (any method draws
the same number of points). The page is opened in headless Chromium (Playwright) and each switch is timed
until Streamlit has finished the run and Plotly has drawn: goal < 2 s per switch.

    .venv/bin/python benchmarks/bench_explorer_render.py [--tiles 200000 --draw 50000]
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.record import record, start_load  # noqa: E402
from core.base.config import workspace  # noqa: E402
from core.demo import demo_is_ready, ensure_demo_cohort  # noqa: E402

SMALL = {"n_donors": 6, "n_tissues": 4, "slide_size": (1536, 1536), "n_genes": 300, "workers": 1}
CHROMIUM = "/usr/bin/chromium"
PAGE_INPUT_SIZE = 64  # the page's default input size for random weights
GOAL_S = 2.0  # per switch, click to drawn


def core(ws_root: Path, *argv: str) -> None:
    subprocess.run([sys.executable, "-m", "core", "--workspace", str(ws_root), *argv], cwd=REPO, check=True,
                   stdout=subprocess.DEVNULL, timeout=3600)


def grow_index_and_embed(ws, n_tiles: int, dim: int) -> int:
    """Replace the saved tile index by n_tiles rows and store matching synthetic embeddings in the cache."""
    import pandas as pd

    from core.data.dataset import load_cohort
    from core.embed.compute import TILE_COLUMNS, cached_tile_embeddings, embeddings_key, selected_tiles
    from core.embed.features import FeatureSource
    from core.maps.jobs import tile_index_path

    # The index of this cohort's slides (an older cohort's index may still be in the workspace).
    path = tile_index_path(ws, ws.demo_dir, load_cohort(ws.demo_dir, ws))
    index = pd.read_parquet(path)
    base = index[index["passed_qc"].astype(bool) & index["selected"].astype(bool)].reset_index(drop=True)
    copies = -(-n_tiles // len(base))
    grown = pd.concat([base.assign(x=base["x"] + 100_000 * k) for k in range(copies)], ignore_index=True)
    grown = grown.iloc[:n_tiles].reset_index(drop=True)
    grown.to_parquet(path, index=False)
    tiles = selected_tiles(grown)
    source = FeatureSource.random("efficientnet_b0", 0, PAGE_INPUT_SIZE)  # what the page offers first
    folder = ws.cache_dir / "embeddings" / embeddings_key(source, tiles)
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    codes = tiles["tissue"].astype("category").cat.codes.to_numpy()
    centres = rng.normal(scale=3.0, size=(codes.max() + 1, dim)).astype(np.float32)
    values = centres[codes] + rng.normal(size=(len(tiles), dim)).astype(np.float32)
    np.save(folder / "values.npy", values)
    meta = tiles[[c for c in TILE_COLUMNS if c in tiles.columns]].copy()
    meta.to_parquet(folder / "tiles.parquet", index=False)
    if cached_tile_embeddings(ws, ws.demo_dir, source) is None:  # else `map` would embed 200,000 real tiles
        raise SystemExit("the synthetic embeddings are not where the page looks for them")
    return len(tiles)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tiles", type=int, default=200_000)
    parser.add_argument("--dim", type=int, default=64, help="embedding width (only the PCA's input)")
    parser.add_argument("--draw", type=int, default=50_000, help="'Points drawn' (0 = all)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--workspace", type=Path, help="keep the set-up here (reused when it is there already)")
    args = parser.parse_args()
    load_start = start_load()
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory(prefix="bench-render-") as folder:
        ws = workspace(args.workspace or Path(folder) / "workspace")
        started = time.perf_counter()
        ready = ws.root / f"bench-render-{args.tiles}-{args.dim}.done"
        # A demo generator of another version makes the app regenerate the whole default cohort in the
        # workspace on opening the page: the set-up is then redone with this generator.
        if not ready.exists() or not demo_is_ready(ws):
            ensure_demo_cohort(ws, **SMALL)
            core(ws.root, "tiles", "--data", str(ws.demo_dir))
            grow_index_and_embed(ws, args.tiles, args.dim)
            for level in ("tiles", "slides"):
                core(ws.root, "map", "--data", str(ws.demo_dir), "--level", level, "--method", "pca", "--weights",
                     "random", "--arch", "efficientnet_b0", "--seed", "0", "--image-size", str(PAGE_INPUT_SIZE))
            ready.touch()
        print(f"set-up (untimed): {args.tiles:,} tiles, maps cached, {time.perf_counter() - started:.0f} s",
              flush=True)
        port = free_port()
        env = {**os.environ, "HISTOGENE_WORKSPACE": str(ws.root), "HISTOGENE_WARMUP": "0"}
        env.pop("HISTOGENE_DATA", None)
        server = subprocess.Popen([sys.executable, "-m", "streamlit", "run", "app.py", "--server.port", str(port),
                                   "--server.address", "127.0.0.1", "--server.headless", "true"], cwd=REPO, env=env,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        SERVER.append(server.pid)
        try:
            for _ in range(240):
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                    break
                except OSError:
                    time.sleep(0.5)
            with sync_playwright() as pw:
                browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True,
                                             args=["--no-sandbox", "--disable-gpu"])
                page = browser.new_context(viewport={"width": 1400, "height": 1000}).new_page()
                switches = run(page, port, args)
                browser.close()
        finally:
            server.terminate()
            server.wait(timeout=30)
    every = [s for seconds in switches.values() for s in seconds]
    median = float(np.median(every))
    record("bench_explorer_render", f"median switch {median:.2f} s, slowest {max(every):.2f} s ({args.tiles:,} tiles, "
           f"{args.draw or args.tiles:,} drawn)", f"the {GOAL_S:g} s goal per switch (median ratio)", median / GOAL_S,
           load_start, {"switches_s": switches, "tiles": args.tiles, "drawn": args.draw})
    return 0


def done(page) -> None:
    page.wait_for_selector("[data-testid='stApp'][data-test-script-state='notRunning']", timeout=600_000)


_ARM = """() => { window.__benchDrawn = false; const t = window.__benchTimes = {armed: performance.now()};
  const app = document.querySelector("[data-testid='stApp']");
  if (window.__benchObserver) window.__benchObserver.disconnect();
  window.__benchObserver = new MutationObserver(() => {
    const state = app.getAttribute('data-test-script-state');
    if (state === 'running' && t.running === undefined) t.running = performance.now();
    if (state === 'notRunning' && t.running !== undefined && t.ran === undefined) t.ran = performance.now(); });
  window.__benchObserver.observe(app, {attributes: true, attributeFilter: ['data-test-script-state']});
  const g = document.querySelector('.js-plotly-plot');
  if (g) { g.dataset.benchOld = '1';
    if (g.on) g.on('plotly_afterplot', () => { window.__benchDrawn = true; t.drawn = performance.now(); }); } }"""
_DRAWN = """() => { const g = document.querySelector('.js-plotly-plot');
  return window.__benchDrawn || (g && g.dataset.benchOld !== '1' && g.querySelector('.gl-container canvas')); }"""
_TIMES = "() => window.__benchTimes"
# Per switch: script run ended and figure drawn (s after the click), CPU seconds of the server and the browser.
SPLITS: list[tuple[float, float, float, float]] = []
SERVER: list[int] = []  # the streamlit server's pid


def _children() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        tree.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    return tree


def _cpu_seconds(root: int, skip: tuple[int, ...] = ()) -> float:
    """CPU time (user + system) of a process and its live descendants, from /proc (load-independent)."""
    tree, total, todo = _children(), 0.0, [root]
    while todo:
        pid = todo.pop()
        if pid in skip:
            continue
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        except OSError:
            pass
        todo.extend(tree.get(pid, []))
    return total


def _cpu() -> tuple[float, float]:
    """(server, browser) CPU seconds so far; the browser is every other process this benchmark started."""
    return _cpu_seconds(SERVER[0]), _cpu_seconds(os.getpid(), skip=(SERVER[0],)) - _own_cpu()


def _own_cpu() -> float:
    times = os.times()
    return times.user + times.system


def timed_switch(page, action) -> float:
    """Seconds from the click until Streamlit's run is over and Plotly has drawn the new figure (its
    plotly_afterplot event, or a new plot element with its WebGL canvas). The split between the server's
    script run and the browser's drawing goes to SPLITS."""
    page.evaluate(_ARM)
    server_cpu, browser_cpu = _cpu()
    started = time.perf_counter()
    action()
    page.wait_for_function(_DRAWN, timeout=600_000, polling=20)
    done(page)
    total = time.perf_counter() - started
    server_after, browser_after = _cpu()
    times = page.evaluate(_TIMES)
    ran = (times.get("ran", times["armed"]) - times["armed"]) / 1000
    SPLITS.append((ran, total, server_after - server_cpu, browser_after - browser_cpu))
    return total


def run(page, port: int, args) -> dict[str, list[float]]:
    page.goto(f"http://127.0.0.1:{port}/explorer")
    done(page)

    def radio(label: str, option: str):
        return lambda: page.locator("[data-testid='stRadio']").filter(has_text=label).get_by_text(
            option, exact=True).click()

    def colour(name: str):
        def pick() -> None:
            page.locator("[data-testid='stSelectbox']").filter(has_text="Colour by").first.click()
            page.get_by_role("option", name=name, exact=True).click()
        return pick

    first = timed_switch(page, radio("Level", "tiles"))
    if args.draw != 50_000:
        page.get_by_text("Map parameters").first.click()
        # The label's help icon shares the accessible name, so address the input inside the widget.
        box = page.locator("[data-testid='stNumberInput']").filter(has_text="Points drawn").locator("input")
        box.fill(str(args.draw))
        box.press("Enter")
        done(page)
        page.get_by_text("Map parameters").first.click()  # closed again: its widgets cover the colour menu
        done(page)
    print(f"first tiles map (cold page caches): {first:.2f} s", flush=True)
    print(f"| switch ({args.tiles:,} tiles, {args.draw or args.tiles:,} drawn) | seconds, each repeat |")
    print("| --- | --- |", flush=True)
    rows = {"colour: tissue -> donor": [], "colour: donor -> tissue": [], "level: tiles -> slides": [],
            "level: slides -> tiles": []}
    for _ in range(args.repeats):
        rows["colour: tissue -> donor"].append(timed_switch(page, colour("Donor")))
        rows["colour: donor -> tissue"].append(timed_switch(page, colour("Tissue")))
        rows["level: tiles -> slides"].append(timed_switch(page, radio("Level", "slides")))
        rows["level: slides -> tiles"].append(timed_switch(page, radio("Level", "tiles")))
    for name, seconds in rows.items():
        print(f"| {name} | {', '.join(f'{s:.2f}' for s in seconds)} |", flush=True)
    ran, total, server, browser = (np.array(column) for column in np.array(SPLITS[1:]).T)
    print(f"of which the script run (click until Streamlit's run ended): median {np.median(ran):.2f} s, "
          f"the rest is the browser drawing ({np.median(total - ran):.2f} s)", flush=True)
    for (name, _), i in zip(rows.items(), range(4), strict=False):
        print(f"CPU per switch, {name}: server {', '.join(f'{x:.2f}' for x in server[i::4])} s, browser "
              f"{', '.join(f'{x:.2f}' for x in browser[i::4])} s", flush=True)
    print(f"CPU per switch (load-independent): server median {np.median(server):.2f} s (max {server.max():.2f}), "
          f"browser median {np.median(browser):.2f} s (max {browser.max():.2f})", flush=True)
    print(f"load average: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores", flush=True)
    return rows


if __name__ == "__main__":
    sys.exit(main())
