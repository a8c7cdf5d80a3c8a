"""Tiling QC against the demo cohort's planted artifacts (truth.json): fat gets tiles, artifacts are
rejected by the stage named for them, clean tissue passes. A tiny cohort is generated (~4 s)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from qc_reference import reference_metrics
from scipy import ndimage

from core.base.config import workspace
from core.base.errors import DataError
from core.data.dataset import load_cohort
from core.data.slides import open_slide
from core.demo import TRUTH_JSON, make_demo_cohort
from core.tiles.index import (
    TilingParams,
    artifact_overlaps,
    build_tile_index,
    check_qc,
    stained_pixels,
    tissue_mask,
)
from core.tiles.qc import METRIC_COLUMNS, qc_reason, read_and_qc

# Seed 28 with 2 donors and 2 tissues (adipose, breast) plants one dust, one pen and one blur box.
SEED, DONORS, TISSUES, SIZE = 28, 2, 2, (2688, 2240)
# Each kind and the stage that should name it (folds have no stage: see core.tiles.index's docstring).
STAGE_OF = {"pen": "pen", "blur": "blur", "dust": "dirt"}


@dataclass
class TiledDemo:
    root: Path
    index: pd.DataFrame
    artifacts: dict[str, list[dict[str, Any]]]


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> TiledDemo:
    base = tmp_path_factory.mktemp("qc_demo")
    root = make_demo_cohort(base / "demo", seed=SEED, n_donors=DONORS, n_tissues=TISSUES, slide_size=SIZE,
                            n_genes=100, workers=1)
    ws = workspace(base / "workspace")
    cohort = load_cohort(root, ws)
    result = build_tile_index(cohort.samples[cohort.samples["has_slide"]], TilingParams(), ws, workers=1)
    truth = json.loads((root / TRUTH_JSON).read_text())
    artifacts = {sample["sample_id"]: sample["artifacts"] for sample in truth["samples"]}
    planted = {art["kind"] for arts in artifacts.values() for art in arts}
    assert set(STAGE_OF) <= planted, f"seed {SEED} no longer plants {set(STAGE_OF) - planted}: pick another seed"
    return TiledDemo(root=root, index=result.index, artifacts=artifacts)


def test_adipose_slides_get_tissue_tiles_that_pass(demo: TiledDemo) -> None:
    adipose = demo.index[demo.index["tissue"] == "Adipose - Subcutaneous"]
    assert adipose["sample_id"].nunique() == 2
    per_slide = adipose.groupby("sample_id")["passed_qc"].sum()
    assert (per_slide >= 5).all(), per_slide.to_dict()
    # Kept fat tiles are mostly lumen: what the old any-flat-piece half_empty rule rejected.
    kept = adipose[adipose["passed_qc"]]
    assert (kept["min_piece_std"] < TilingParams().min_piece_std).any()


def test_fat_lobules_count_as_tissue_in_the_mask(demo: TiledDemo) -> None:
    adipose = demo.index.loc[demo.index["tissue"] == "Adipose - Subcutaneous", "slide_path"].iloc[0]
    with open_slide(adipose) as slide:
        thumb, scale = slide.thumbnail(1024)
        um_per_px = scale * slide.info.mpp
    mask = tissue_mask(thumb, um_per_px=um_per_px)
    stained = stained_pixels(thumb)
    # Membranes alone are a small share of a fat slide; the mask fills the lobules they enclose.
    assert mask.mean() > 2 * stained.mean()
    # Glass stays out: pixels over 100 um from any stain are bare slide, not a fat lumen.
    far_glass = ndimage.distance_transform_edt(~stained) * um_per_px > 100
    assert far_glass.sum() > 1000
    assert mask[far_glass].mean() < 0.02


@pytest.mark.parametrize("kind", sorted(STAGE_OF))
def test_tiles_inside_an_artifact_box_are_rejected_by_its_stage(demo: TiledDemo, kind: str) -> None:
    overlaps = artifact_overlaps(demo.index, demo.artifacts)
    hit = demo.index[overlaps[kind] >= 0.3]  # boxes are loose: well inside, so the artifact shows
    assert len(hit) >= 2, f"too few tiles inside the {kind} box to check"
    assert not hit["passed_qc"].any(), hit[["x", "y", "reason"]].to_dict("records")
    assert (hit["reason"] == STAGE_OF[kind]).mean() >= 0.75, hit["reason"].tolist()


def test_check_qc_reports_recall_per_kind_and_clean_pass_rate(demo: TiledDemo) -> None:
    check = check_qc(demo.index, demo.artifacts)
    assert set(STAGE_OF) <= set(check.per_artifact.index)
    for kind, stage in STAGE_OF.items():
        row = check.per_artifact.loc[kind]
        assert row["recall"] >= 0.9, (kind, row.to_dict())
        assert row[stage] >= row["rejected"] - row[stage]  # mostly caught by its own stage
    assert check.clean_tiles >= 10
    assert check.clean_pass_rate >= 0.85
    assert check.per_tissue.loc["Adipose - Subcutaneous", "kept"] > 0


def test_artifact_overlaps_measure_the_tile_share_inside_each_box() -> None:
    index = pd.DataFrame({"sample_id": ["A", "A", "B"], "x": [0, 448, 0], "y": [0, 0, 0], "read_size": [448] * 3})
    boxes = {"A": [{"kind": "pen", "x": 224, "y": 0, "w": 448, "h": 224}], "B": []}
    overlaps = artifact_overlaps(index, boxes)
    assert list(overlaps.columns) == ["pen"]
    assert np.allclose(overlaps["pen"], [0.25, 0.25, 0.0])


def test_tissue_mask_rejects_a_non_image() -> None:
    with pytest.raises(DataError, match="thumbnail"):
        tissue_mask(np.zeros((10, 10), np.uint8))


def _reference_decisions(index: pd.DataFrame) -> pd.DataFrame:
    """`index`'s tiles as the full-resolution metrics (tests/qc_reference.py, the code before the
    sampled pass) decide them: every tile read again and measured on all its pixels."""
    params, rows = TilingParams(), []
    for row in index.itertuples(index=False):
        with open_slide(row.slide_path) as slide:
            tile = slide.read_region(row.x, row.y, row.read_size, row.read_size, out_size=(row.tile_size,) * 2)
        metrics = reference_metrics(tile, params)
        rows.append({**metrics, "reason": qc_reason(metrics, params, row.tissue)})
    full = index.copy()
    for name in [*METRIC_COLUMNS, "reason"]:
        full[name] = [r[name] for r in rows]
    full["passed_qc"] = full["reason"] == ""
    return full


@pytest.fixture(scope="module")
def full_resolution(demo: TiledDemo) -> pd.DataFrame:
    return _reference_decisions(demo.index)


def test_qc_decisions_agree_with_the_full_resolution_decisions(demo: TiledDemo, full_resolution: pd.DataFrame) -> None:
    # The index's tiles plus the cells half a tile off them (4x the tiles, the same tissue), QC'd
    # through the tiler's seam and by the full-resolution reference.
    params, parts = TilingParams(), []
    for (path, tissue), rows in demo.index.groupby(["slide_path", "tissue"]):
        size = int(rows["read_size"].iloc[0])
        with open_slide(path) as slide:
            width, height = slide.info.width, slide.info.height
            cells = {(x + dx, y + dy) for x, y in zip(rows["x"], rows["y"], strict=True)
                     for dx in (0, size // 2) for dy in (0, size // 2)
                     if x + dx + size <= width and y + dy + size <= height}
            xs, ys = (np.array(sorted(cells))[:, k] for k in (0, 1))
            qc = read_and_qc(slide, xs, ys, size, params.tile_size, params, tissue)
        parts.append(pd.DataFrame({"slide_path": path, "tissue": tissue, "x": xs, "y": ys, "read_size": size,
                                   "tile_size": params.tile_size, **qc}))
    ours = pd.concat(parts, ignore_index=True)
    full = _reference_decisions(ours)
    assert len(ours) >= 200
    assert not full["passed_qc"].all() and full["passed_qc"].any()  # decisions to agree on
    assert (ours["passed_qc"] == full["passed_qc"]).mean() >= 0.98
    assert (ours["reason"] == full["reason"]).mean() >= 0.98


def test_each_artifact_kind_is_caught_as_at_full_resolution(demo: TiledDemo, full_resolution: pd.DataFrame) -> None:
    ours, full = check_qc(demo.index, demo.artifacts), check_qc(full_resolution, demo.artifacts)
    for kind in STAGE_OF:
        assert full.per_artifact.loc[kind, "tiles"] >= 2
        assert ours.per_artifact.loc[kind, "recall"] >= full.per_artifact.loc[kind, "recall"] - 0.02, kind
    assert ours.clean_pass_rate >= full.clean_pass_rate - 0.02
