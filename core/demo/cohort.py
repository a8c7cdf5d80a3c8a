"""The dataset folder: `make_demo_cohort` writes it (slides in a process pool), `ensure_demo_cohort`
makes it once per workspace under a file lock.
"""

from __future__ import annotations

import fcntl
import json
import multiprocessing
import shutil
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Any

import pandas as pd

from core.base.config import Workspace
from core.base.errors import DataError
from core.base.fileio import atomic_write_bytes, atomic_write_json, flock
from core.base.types import Progress
from core.demo.expression import SimulatedExpression, gct_bytes, simulate_expression
from core.demo.painter import render_slide
from core.demo.plan import histology_csv, plan_cohort
from core.demo.spec import (
    APP_MAG,
    COMPLETE_MARKER,
    DEFAULT_DONORS,
    DEFAULT_GENES,
    DEFAULT_SLIDE_SIZE,
    EXPRESSION_GCT,
    FACTORS,
    GENERATOR_VERSION,
    HISTOLOGY_CSV,
    LOCK_NAME,
    MPP,
    SLIDES_DIR,
    TISSUES,
    TRUTH_JSON,
)
from core.demo.svs import write_aperio_svs


def _make_slide(task: dict[str, Any]) -> str:
    """Worker: render one slide and write it as SVS; returns the sample ID."""
    rgb = render_slide(task["tissue"], task["factors"], task["width"], task["height"], task["seed"], task["artifacts"])
    write_aperio_svs(task["path"], rgb, image_id=task["image_id"])
    return task["sample_id"]


def _pool_context() -> multiprocessing.context.BaseContext:
    # forkserver/spawn: safe when the caller has threads (Streamlit, the job heartbeat).
    methods = multiprocessing.get_all_start_methods()
    return multiprocessing.get_context("forkserver" if "forkserver" in methods else "spawn")


def make_demo_cohort(
    out_dir: str | Path,
    seed: int = 0,
    n_donors: int = DEFAULT_DONORS,
    n_tissues: int = len(TISSUES),
    slide_size: tuple[int, int] = DEFAULT_SLIDE_SIZE,
    n_genes: int = DEFAULT_GENES,
    workers: int = 2,
    progress: Progress | None = None,
) -> Path:
    """Write the demo cohort into `out_dir` (slides/, histology CSV, GCT, truth.json) and return it.

    `slide_size` is (width, height) at level 0. The completion marker is written last and removed
    first, so a folder without it is incomplete. Bad sizes raise DataError naming `out_dir`.
    """
    out = Path(out_dir)
    width, height = (int(v) for v in slide_size)
    problems = [
        (n_donors < 2, f"need at least 2 donors (got {n_donors})"),
        (not 1 <= n_tissues <= len(TISSUES), f"n_tissues must be 1..{len(TISSUES)} (got {n_tissues})"),
        (min(width, height) < 256 or max(width, height) > 20000, f"slide size {width}x{height} outside 256..20000 px"),
        (n_genes < 100, f"need at least 100 genes (got {n_genes})"),
        (workers < 1, f"workers must be >= 1 (got {workers})"),
    ]
    for bad, problem in problems:
        if bad:
            raise DataError(out, problem)
    out.mkdir(parents=True, exist_ok=True)
    (out / COMPLETE_MARKER).unlink(missing_ok=True)
    slides_dir = out / SLIDES_DIR
    slides_dir.mkdir(exist_ok=True)
    report = progress or (lambda done, total, message: None)

    plan = plan_cohort(seed, n_donors, TISSUES[:n_tissues], slide_size=(width, height))
    slides = plan[plan["has_slide"]]
    total = len(slides) + 1

    def write_tables() -> None:
        report(0, total, "writing the histology table and expression matrix")
        expression = simulate_expression(plan, n_genes, seed)
        atomic_write_bytes(out / HISTOLOGY_CSV, histology_csv(plan, seed))
        atomic_write_bytes(out / EXPRESSION_GCT, gct_bytes(expression))
        atomic_write_json(out / TRUTH_JSON, _truth(plan, expression, seed, width, height, n_genes))
        report(1, total, "tables written")

    wanted = {f"{sid}.svs" for sid in slides["sample_id"]}
    for stale in slides_dir.glob("*.svs"):
        if stale.name not in wanted:  # from an earlier cohort with other sizes
            stale.unlink()
    tasks = [
        {
            "sample_id": row.sample_id,
            "tissue": row.tissue,
            "factors": {name: getattr(row, name) for name in FACTORS},
            "width": width,
            "height": height,
            "seed": row.slide_seed,
            "artifacts": row.artifacts,
            "path": str(slides_dir / f"{row.sample_id}.svs"),
            "image_id": 100000 + i,
        }
        for i, row in enumerate(slides.itertuples(index=False))
    ]
    done = 1
    if workers == 1 or len(tasks) < 2:
        write_tables()
        for task in tasks:
            done += 1
            report(done, total, f"slide {_make_slide(task)}")
    else:
        with ProcessPoolExecutor(max_workers=min(workers, len(tasks)), mp_context=_pool_context()) as pool:
            futures = [pool.submit(_make_slide, task) for task in tasks]
            try:
                write_tables()  # here, while the workers start and draw: slides need only the plan
                for future in as_completed(futures):
                    done += 1
                    report(done, total, f"slide {future.result()}")
            except BaseException:
                for future in futures:
                    future.cancel()
                raise
    marker = {
        "generator_version": GENERATOR_VERSION,
        "seed": seed,
        "n_donors": n_donors,
        "n_tissues": n_tissues,
        "slide_size": [width, height],
        "n_genes": n_genes,
        "slides": len(tasks),
    }
    atomic_write_json(out / COMPLETE_MARKER, marker)
    return out


def _truth(
    plan: pd.DataFrame, expression: SimulatedExpression, seed: int, width: int, height: int, n_genes: int
) -> dict[str, Any]:
    """What was planted, for checking models against: factors, image-linked genes, artifacts."""
    genes = expression.genes
    image = genes[genes["kind"] == "image"]
    return {
        "generator_version": GENERATOR_VERSION,
        "seed": seed,
        "slide_size": [width, height],
        "mpp": MPP,
        "magnification": APP_MAG,
        "factors": list(FACTORS),
        "factor_meaning": {
            "nuclear_density": "cells per area: every cell count scales with 0.6 + 0.8 * value, and 14 * value plump "
            "nuclei per 100 x 100 um of solid tissue are added in every tissue",
            "adipocyte_fraction": "fat: more adipocytes (adipose, breast, skin, muscle septa), fat islands on "
            "0.2 * value of the section (esophagus, lung, thyroid), liver steatosis (0.45 * value of hepatocytes)",
            "immune_infiltrate": "lymphoid aggregates (8 * value per mm2 of tissue) and scattered lymphocytes",
            "fibrosis": "denser, thicker collagen, and paucicellular scar bands on 0.25 * value of the section",
        },
        "factor_distribution": "uniform on [0, 1], independent of each other and of tissue",
        "image_genes": [
            {"gene_id": r.gene_id, "symbol": r.symbol, "factor": r.factor, "effect": float(r.effect)}
            for r in image.itertuples(index=False)
        ],
        "expression_model": "log2(1+TPM) = base + tissue program + effect * factor + N(0, 0.35)",
        "gene_kinds": {kind: int(n) for kind, n in genes["kind"].value_counts().sort_index().items()},
        "genes": [{"gene_id": r.gene_id, "symbol": r.symbol, "kind": r.kind} for r in genes.itertuples(index=False)],
        "samples": [
            {
                "sample_id": r.sample_id,
                "rna_sample_id": r.rna_sample_id,
                "tissue": r.tissue,
                "subject_id": r.subject_id,
                "has_slide": bool(r.has_slide),
                "has_expression": bool(r.has_expression),
                "factors": {name: float(getattr(r, name)) for name in FACTORS},
                "artifacts": r.artifacts,
            }
            for r in plan.itertuples(index=False)
        ],
    }


def demo_is_ready(ws: Workspace) -> bool:
    """True when the workspace's demo cohort is complete and made by this generator version."""
    marker = ws.demo_dir / COMPLETE_MARKER
    try:
        return json.loads(marker.read_text()).get("generator_version") == GENERATOR_VERSION
    except (OSError, ValueError):
        return False


def ensure_demo_cohort(
    ws: Workspace, progress: Progress | None = None, *, force: bool = False, **options: Any
) -> Path:
    """The demo cohort in `ws.demo_dir`, generated once (again if incomplete, outdated or `force`).

    A file lock in the workspace makes concurrent callers wait for one generation instead of
    writing the same folder twice. `options` go to `make_demo_cohort` (sizes, seed, workers).
    """
    ws.root.mkdir(parents=True, exist_ok=True)
    with open(ws.root / LOCK_NAME, "a+") as lock:
        flock(lock, fcntl.LOCK_EX, ws.root)  # a clear DataError where the filesystem cannot lock
        try:
            if demo_is_ready(ws) and not force:
                return ws.demo_dir
            if ws.demo_dir.exists():
                shutil.rmtree(ws.demo_dir)
            return make_demo_cohort(ws.demo_dir, progress=progress, **options)
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
