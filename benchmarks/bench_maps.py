"""Map wall time: PCA + UMAP and PCA + t-SNE (core.maps.reduce.cached_map) at 10k, 50k and 200k points, cold
(compute + store) and warm (cache hit), beside baselines measured in the same run:

- t-SNE: scikit-learn's TSNE on the same 40 PCA components (the alternative to openTSNE);
- UMAP: umap-learn straight on the raw features, no PCA first (what a plain script would do).

Inputs are synthetic EfficientNet-B0-sized embeddings (1280-d, 10 planted tissue clusters). numba's
one-off compile is taken by an untimed warm-up map first and printed on its own. Baselines run only up
to --baseline-max points (scikit-learn's t-SNE at 50k takes far longer than the rest together).

    .venv/bin/python benchmarks/bench_maps.py [--sizes 10000 50000 200000 --dim 1280 --methods umap tsne]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.record import record, start_load  # noqa: E402
from core.base.config import workspace  # noqa: E402
from core.maps.reduce import MapParams, cached_map, pca, warm_up  # noqa: E402


def embeddings(n: int, dim: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.normal(scale=3.0, size=(10, dim)).astype(np.float32)
    values = rng.normal(size=(n, dim)).astype(np.float32)
    values += centres[rng.integers(0, 10, size=n)]
    return values


def timed(fn) -> tuple[float, object]:
    """(wall seconds, result); the CPU seconds of the call are left in CPU[0] (all threads of this process:
    on a shared machine wall time also counts waits for a core)."""
    started, cpu = time.perf_counter(), time.process_time()
    out = fn()
    CPU[0] = time.process_time() - cpu
    return time.perf_counter() - started, out


CPU = [0.0]


def baseline(method: str, values: np.ndarray, params: MapParams) -> float:
    if method == "tsne":
        from sklearn.manifold import TSNE

        components = pca(values, params.pca_components, params.seed).components
        return timed(lambda: TSNE(perplexity=params.perplexity, random_state=params.seed).fit_transform(
            components))[0]
    import umap

    return timed(lambda: umap.UMAP(n_neighbors=params.n_neighbors, min_dist=params.min_dist,
                                   random_state=params.seed).fit_transform(values))[0]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 50_000, 200_000])
    parser.add_argument("--dim", type=int, default=1280)
    parser.add_argument("--methods", nargs="+", default=["umap", "tsne"], choices=["umap", "tsne"])
    parser.add_argument("--baseline-max", type=int, default=10_000, help="run baselines up to this many points")
    args = parser.parse_args()
    load_start = start_load()
    rows: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="bench-maps-") as folder:
        ws = workspace(Path(folder) / "workspace")
        compile_s = timed(lambda: warm_up(ws))[0]
        print(f"numba warm-up (once per process, untimed below): {compile_s:.1f} s", flush=True)
        print(f"load average at start: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores", flush=True)
        print("| points | method | cold (PCA + map + store), wall / CPU | warm (cache hit) | baseline, wall / CPU "
              "| cold / baseline (wall, CPU) |")
        print("| --- | --- | --- | --- | --- | --- |", flush=True)
        for n in args.sizes:
            values = embeddings(n, args.dim)
            for method in args.methods:
                params = MapParams(method=method)
                cold, result = timed(lambda p=params, v=values: cached_map(ws, v, p))
                cold_cpu = CPU[0]
                warm, again = timed(lambda p=params, v=values: cached_map(ws, v, p))
                assert again.cached and np.array_equal(again.coords, result.coords)
                name = "sklearn TSNE on 40 PCs" if method == "tsne" else "umap-learn on raw features"
                row = {"points": n, "method": method, "cold_s": cold, "cold_cpu_s": cold_cpu, "warm_s": warm}
                if n <= args.baseline_max:
                    base = baseline(method, values, params)
                    base_text = f"{name}: {base:.1f} s / {CPU[0]:.1f} s"
                    ratio = f"{cold / base:.2f}, {cold_cpu / CPU[0]:.2f}"
                    row.update(baseline=name, baseline_s=base, baseline_cpu_s=CPU[0])
                else:
                    base_text, ratio = "not run at this size", "—"
                rows.append(row)
                print(f"| {n:,} | PCA + {method} | {cold:.1f} s / {cold_cpu:.1f} s | {warm:.2f} s | {base_text} "
                      f"| {ratio} |", flush=True)
        print(f"load average at end: {os.getloadavg()[0]:.1f}", flush=True)
    head = next((r for r in rows if "baseline_s" in r), rows[0])
    record("bench_maps", f"PCA + {head['method']} at {head['points']:,} points: cold {head['cold_s']:.1f} s, "
           f"warm {head['warm_s']:.2f} s",
           f"{head['baseline']}: {head['baseline_s']:.1f} s (cold wall ratio)" if "baseline_s" in head else "not run",
           head["cold_s"] / head["baseline_s"] if "baseline_s" in head else None, load_start, {"maps": rows})
    return 0


if __name__ == "__main__":
    sys.exit(main())
