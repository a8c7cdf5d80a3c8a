"""core.tiles.index: tissue mask, QC stages, balanced sampling, the cached index and the tiles CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import tifffile
from PIL import Image
from scipy import ndimage

import core.tiles.index as tiling
import core.tiles.run as tile_run
from core.__main__ import main
from core.base.config import Workspace
from core.tiles.index import (
    INDEX_COLUMNS,
    TilingParams,
    build_tile_index,
    load_tile_index,
    read_tile,
    select_balanced,
    tiling_summary,
    tissue_mask,
)
from core.tiles.qc import QC_STAGES, qc_failures, qc_reason, tile_metrics

SVS_NAME = "CMU-1-Small-Region.svs"
PINK, PURPLE, WHITE = (235, 160, 205), (110, 60, 150), (246, 246, 244)


def tissue_texture(height: int, width: int, seed: int = 0) -> np.ndarray:
    """H&E-like pixels: eosin-pink stroma with hematoxylin-purple nuclei and stain noise."""
    rng = np.random.default_rng(seed)
    image = np.empty((height, width, 3), np.float32)
    image[:] = PINK
    nuclei = ndimage.binary_dilation(rng.random((height, width)) < 1 / 400, iterations=4)
    image[nuclei] = PURPLE
    image += rng.normal(0, 10, image.shape)
    return np.clip(image, 0, 255).astype(np.uint8)


def blurred(image: np.ndarray, sigma: float) -> np.ndarray:
    return ndimage.gaussian_filter(image.astype(np.float32), (sigma, sigma, 0)).round().astype(np.uint8)


def samples_table(*rows: tuple[str, str, str | Path]) -> pd.DataFrame:
    return pd.DataFrame(
        [{"sample_id": s, "tissue": t, "subject_id": s.rsplit("-", 1)[0], "slide_path": str(p)} for s, t, p in rows]
    )


@pytest.fixture
def svs(testdata: Path) -> Path:
    return testdata / SVS_NAME


# ------------------------------------------------------------------ QC stages on synthetic tiles


def test_textured_tissue_tile_passes_every_stage() -> None:
    params = TilingParams()
    for seed in range(3):
        metrics = tile_metrics(tissue_texture(448, 448, seed), params)
        assert qc_reason(metrics, params, "Lung") == ""


def pale(image: np.ndarray, stain: float) -> np.ndarray:
    """The same tissue with `stain` times its optical darkness (faintly stained)."""
    return (255 - (255 - image.astype(np.float32)) * stain).round().astype(np.uint8)


def test_jpeg_size_rejects_faint_tissue_with_a_per_tissue_bar() -> None:
    faint = pale(tissue_texture(448, 448), 0.2)  # sharp and not blank, but little information
    params = TilingParams(jpeg_kb={"Fat": 5.0}, jpeg_kb_default=18.0)
    metrics = tile_metrics(faint, params)
    assert 5.0 < metrics["jpeg_kb"] < 18.0
    assert qc_reason(metrics, params, "Lung") == "jpeg_size"
    # The same tile clears the lower bar of its tissue and, sharp and stained, every other stage.
    assert qc_reason(metrics, params, "Fat") == ""


def test_jpeg_size_bars_are_lower_for_fat_and_lung() -> None:
    params = TilingParams()
    default = params.jpeg_kb_for("Liver")
    assert all(params.jpeg_kb_for(t) < default for t in ("Adipose - Subcutaneous", "Breast - Mammary Tissue", "Lung"))
    assert TilingParams(tile_size=224).jpeg_kb_for("Liver") == pytest.approx(default / 4)


def test_half_empty_rejects_a_tissue_edge_with_a_strip_of_glass() -> None:
    tile = tissue_texture(448, 448)
    tile[:, :112] = WHITE  # a quarter of the tile is bare glass
    metrics = tile_metrics(tile)
    assert metrics["min_piece_std"] < 1.0
    assert metrics["blank_share"] == pytest.approx(0.25)
    assert qc_reason(metrics, TilingParams()) == "half_empty"


def test_half_empty_passes_fat_whose_lumens_are_blank_pieces() -> None:
    """Adipocytes of 224 px (112 um): white lumens inside thin pink membranes."""
    tile = np.empty((448, 448, 3), np.uint8)
    tile[:] = WHITE
    for line in (0, 1, 224, 225, 446, 447):
        tile[line] = tile[:, line] = PINK
    metrics = tile_metrics(tile)
    # Each lumen holds a whole flat 112 px piece: the study's any-flat-piece rule would reject it.
    assert metrics["min_piece_std"] < 1.0
    assert metrics["blank_share"] == pytest.approx(1 / 16)  # but no two blank pieces touch
    assert not qc_failures(metrics, TilingParams())["half_empty"]


def test_dirt_rejects_a_flat_grey_patch_with_sensor_noise() -> None:
    noise = np.random.default_rng(1).normal(128, 8, (448, 448, 1))
    grey = np.clip(np.repeat(noise, 3, axis=2), 0, 255).astype(np.uint8)
    metrics = tile_metrics(grey)
    assert metrics["grey_fraction"] > 0.9
    assert qc_reason(metrics, TilingParams()) == "dirt"


def test_dirt_rejects_a_grey_smudge_over_a_small_part_of_tissue() -> None:
    tile = tissue_texture(448, 448)
    tile[300:360, 300:360] = (140, 138, 135)  # under 2% of the tile
    metrics = tile_metrics(tile)
    assert 0.01 < metrics["grey_fraction"] < 0.03
    assert qc_reason(metrics, TilingParams()) == "dirt"


def test_blur_rejects_an_out_of_focus_tile() -> None:
    sharp, soft = tile_metrics(tissue_texture(448, 448)), tile_metrics(blurred(tissue_texture(448, 448), 1.2))
    assert soft["blur"] < TilingParams().min_blur < sharp["blur"]
    # blur runs before jpeg_size, so a blurred tile is named by its own stage.
    assert qc_reason(soft, TilingParams()) == "blur"


def test_blur_rejects_a_tile_with_one_blurred_quarter() -> None:
    tile = tissue_texture(448, 448)
    tile[224:, 224:] = blurred(tile[224:, 224:], 2.0)
    metrics = tile_metrics(tile)
    assert metrics["blur"] < TilingParams().min_blur
    assert qc_reason(metrics, TilingParams()) == "blur"


def test_blur_does_not_call_pale_or_sparse_tissue_blurred() -> None:
    assert tile_metrics(pale(tissue_texture(448, 448), 0.3))["blur"] > TilingParams().min_blur


@pytest.mark.parametrize("ink", [(40, 140, 90), (30, 40, 160), (15, 15, 20)], ids=["green", "blue", "black"])
def test_pen_rejects_marker_ink(ink: tuple[int, int, int]) -> None:
    tile = tissue_texture(448, 448)
    tile[150:260, :] = ink
    metrics = tile_metrics(tile)
    assert metrics["pen_fraction"] > 0.2
    assert qc_reason(metrics, TilingParams()) == "pen"


def test_real_tissue_passes_and_its_blurred_copy_fails(svs: Path) -> None:
    from core.data.slides import open_slide

    with open_slide(svs) as slide:
        tile = slide.read_region(896, 896, 448, 448)
    params = TilingParams()
    assert qc_reason(tile_metrics(tile), params, "Skin") == ""
    assert qc_reason(tile_metrics(blurred(tile, 2.5)), params, "Skin") in ("jpeg_size", "blur")


def fat_thumbnail(size: int = 200, cell: int = 20) -> np.ndarray:
    """A thumbnail (1.75 um/px) of a round fat lobule: white cells inside 1 px pink membranes."""
    thumb = np.empty((size, size, 3), np.uint8)
    thumb[:] = WHITE
    membranes = np.zeros((size, size), bool)
    membranes[::cell] = membranes[:, ::cell] = True
    yy, xx = np.mgrid[0:size, 0:size]
    lobule = np.hypot(yy - size / 2, xx - size / 2) < size * 0.35
    thumb[membranes & lobule] = PINK
    return thumb


def test_tissue_mask_keeps_fat_lobules_and_leaves_the_glass_around_them() -> None:
    thumb = fat_thumbnail()
    mask = tissue_mask(thumb, um_per_px=1.75)
    yy, xx = np.mgrid[0:200, 0:200]
    radius = np.hypot(yy - 100, xx - 100)
    assert mask[radius < 55].mean() > 0.99  # lumens inside the lobule count as tissue
    assert not mask[radius > 85].any()  # the glass around it does not
    # The old saturation-only mask kept only the membranes: under a fifth of the lobule.
    assert tiling.stained_pixels(thumb)[radius < 55].mean() < 0.2


def test_tissue_mask_scales_with_microns_per_pixel() -> None:
    # The same lobule seen at 4 um/px: membranes 20 px apart are 80 um, still inside one lobule.
    assert tissue_mask(fat_thumbnail(), um_per_px=4.0)[90:110, 90:110].all()


def test_tissue_mask_keeps_stain_and_drops_glass_and_specks() -> None:
    thumb = np.empty((100, 120, 3), np.uint8)
    thumb[:] = WHITE
    thumb[20:80, 10:60] = tissue_texture(60, 50)
    thumb[50, 100] = PURPLE  # one dust speck on the glass
    mask = tissue_mask(thumb)
    assert mask[25:75, 15:55].all()
    assert not mask[:, 70:].any()
    assert not mask[:10].any()


# ------------------------------------------------------------------ balanced sampling


def _passed_index(counts: dict[tuple[str, str], tuple[int, int]]) -> pd.DataFrame:
    """An index with (tissue, sample) -> (passed, failed) tiles."""
    rows = []
    for (tissue, sample_id), (passed, failed) in counts.items():
        rows += [{"tissue": tissue, "sample_id": sample_id, "passed_qc": True}] * passed
        rows += [{"tissue": tissue, "sample_id": sample_id, "passed_qc": False}] * failed
    return pd.DataFrame(rows)


def test_balanced_sampling_per_slide_and_per_tissue() -> None:
    counts = {("Kidney - Medulla", f"K{i}"): (60, 5) for i in range(4)}
    counts |= {("Lung", f"L{i:02d}"): (30, 5) for i in range(20)}
    counts |= {("Rare", "R0"): (20, 0), ("Rare", "R1"): (200, 0)}
    index = _passed_index(counts)
    params = TilingParams(tiles_per_slide=10, tissue_target=100)
    index["selected"] = select_balanced(index, params)
    per_slide = index.groupby("sample_id")["selected"].sum()
    # Few slides: each takes target / slides (the study's 1,250 from each of 4 kidney medulla slides).
    assert all(per_slide[f"K{i}"] == 25 for i in range(4))
    # Many slides: tiles_per_slide each, even though the tissue then exceeds its target.
    assert all(per_slide[f"L{i:02d}"] == 10 for i in range(20))
    # A short slide gives all it has; the other slide tops the tissue up to its target.
    assert (per_slide["R0"], per_slide["R1"]) == (20, 80)
    assert not (index["selected"] & ~index["passed_qc"]).any()


def test_balanced_sampling_is_seeded() -> None:
    index = _passed_index({("Lung", "A"): (50, 0), ("Lung", "B"): (50, 0)})
    params = TilingParams(tiles_per_slide=10, tissue_target=5)
    first, again = select_balanced(index, params), select_balanced(index, params)
    other = select_balanced(index, TilingParams(tiles_per_slide=10, tissue_target=5, seed=1))
    assert first.sum() == 20 and np.array_equal(first, again)
    assert not np.array_equal(first, other)


# ------------------------------------------------------------------ slides end to end


def _write_png_slide(path: Path) -> Path:
    """1344 wide x 1792 high: tissue in the left two columns of 448 px cells, glass on the right.
    Cell (0, 0) carries green pen; cell (448, 448) is out of focus."""
    image = np.empty((1792, 1344, 3), np.uint8)
    image[:] = WHITE
    image[:, :896] = tissue_texture(1792, 896, seed=3)
    ink = np.random.default_rng(4).normal((40, 140, 90), 10, (110, 448, 3))
    image[150:260, 0:448] = np.clip(ink, 0, 255).astype(np.uint8)
    image[448:896, 448:896] = blurred(image[448:896, 448:896], 3.0)
    Image.fromarray(image).save(path)
    return path


def test_png_slide_tiles_with_assumed_magnification_and_qc(ws: Workspace, tmp_path: Path) -> None:
    path = _write_png_slide(tmp_path / "GTEX-AAAA-0001.png")
    result = build_tile_index(samples_table(("GTEX-AAAA-0001", "Lung", path)), TilingParams(), ws, workers=1)
    index = result.index
    assert list(index.columns) == list(INDEX_COLUMNS)
    assert set(zip(index.x, index.y, strict=True)) == {(x, y) for x in (0, 448) for y in (0, 448, 896, 1344)}
    by_cell = index.set_index(["x", "y"])
    assert by_cell.loc[(0, 0), "reason"] == "pen"
    assert by_cell.loc[(448, 448), "reason"] in ("jpeg_size", "blur")
    assert index["passed_qc"].sum() == 6
    slide = result.summary["per_slide"]["GTEX-AAAA-0001"]
    assert slide["magnification_assumed"] and slide["magnification"] == 20.0
    assert slide["kept"] == 6 and slide["rejected"]["pen"] == 1
    tile = read_tile(index.iloc[0])
    assert tile.shape == (448, 448, 3) and tile.dtype == np.uint8
    assert read_tile(index.iloc[0], out_size=224).shape == (224, 224, 3)


def test_all_white_slide_gives_zero_tiles_and_a_clear_summary(ws: Workspace, tmp_path: Path) -> None:
    path = tmp_path / "blank.png"
    Image.fromarray(np.full((1000, 1200, 3), 250, np.uint8)).save(path)
    result = build_tile_index(samples_table(("GTEX-BBBB-0001", "Lung", path)), TilingParams(), ws, workers=1)
    assert result.index.empty and list(result.index.columns) == list(INDEX_COLUMNS)
    assert (result.summary["considered"], result.summary["kept"]) == (0, 0)
    assert "no tissue found" in result.summary["per_slide"]["GTEX-BBBB-0001"]["note"]
    assert result.summary["errors"] == {}
    assert load_tile_index(result.path).empty


def test_40x_slide_reads_896px_regions_down_to_448(ws: Workspace, tmp_path: Path) -> None:
    path = tmp_path / "GTEX-CCCC-0001.svs"
    tifffile.imwrite(
        path,
        tissue_texture(1792, 1792, seed=5),
        tile=(256, 256),
        photometric="rgb",
        description="Aperio Image Library test |AppMag = 40|MPP = 0.25",
    )
    result = build_tile_index(samples_table(("GTEX-CCCC-0001", "Lung", path)), TilingParams(), ws, workers=1)
    index = result.index
    assert len(index) == 4
    assert (index["read_size"] == 896).all() and (index["tile_size"] == 448).all()
    assert set(index["x"]) == {0, 896}
    assert read_tile(index.iloc[0]).shape == (448, 448, 3)


def test_real_svs_gives_kept_tiles(ws: Workspace, svs: Path) -> None:
    result = build_tile_index(samples_table(("GTEX-DDDD-0001", "Skin", svs)), TilingParams(), ws, workers=1)
    summary = result.summary
    assert summary["kept"] >= 4
    assert summary["considered"] > summary["kept"]  # tissue edges are half empty
    assert summary["selected"] == summary["kept"]  # one slide: the tissue target takes all it has
    kept = result.index[result.index.passed_qc]
    assert (kept["tissue_fraction"] >= 0.5).all()
    # Kept tiles lie inside the slide on the 448 px grid (its 0.499 um/px is within 2% of 20x's 0.5).
    assert (kept.read_size == 448).all()
    assert ((kept.x % 448 == 0) & (kept.x + 448 <= 2220) & (kept.y + 448 <= 2967)).all()
    assert set(summary["rejected"]) == set(QC_STAGES)


def test_index_is_reused_without_reading_slides(
    ws: Workspace, svs: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    samples = samples_table(("GTEX-DDDD-0001", "Skin", svs))
    first = build_tile_index(samples, TilingParams(tile_size=224), ws, workers=1)

    def no_reading(*args: object, **kwargs: object) -> None:
        raise AssertionError("slides were read again")

    monkeypatch.setattr(tile_run, "read_and_qc", no_reading)
    monkeypatch.setattr(tile_run, "plan_slide", no_reading)
    calls: list[tuple[int, int, str]] = []
    again = build_tile_index(samples, TilingParams(tile_size=224), ws, workers=1, progress=lambda *a: calls.append(a))
    assert again.summary["cached"] and again.path == first.path
    pd.testing.assert_frame_equal(again.index, first.index)
    assert calls == [(1, 1, "reused saved tile index")]


def test_half_saved_index_is_rebuilt(ws: Workspace, tmp_path: Path) -> None:
    path = _write_png_slide(tmp_path / "GTEX-AAAA-0001.png")
    samples = samples_table(("GTEX-AAAA-0001", "Lung", path))
    first = build_tile_index(samples, TilingParams(), ws, workers=1)
    (first.path.parent / "summary.json").unlink()  # as if killed between the two writes
    again = build_tile_index(samples, TilingParams(), ws, workers=1)
    assert not again.summary["cached"]
    assert (first.path.parent / "summary.json").is_file()


def test_bad_slide_is_recorded_and_others_finish_in_a_process_pool(
    ws: Workspace, svs: Path, tmp_path: Path
) -> None:
    fake = tmp_path / "GTEX-EEEE-0001.svs"
    fake.write_text("not a slide")
    blank = tmp_path / "GTEX-FFFF-0001.png"
    Image.fromarray(np.full((500, 500, 3), 250, np.uint8)).save(blank)
    samples = samples_table(
        ("GTEX-DDDD-0001", "Skin", svs), ("GTEX-EEEE-0001", "Skin", fake), ("GTEX-FFFF-0001", "Lung", blank)
    )
    calls: list[tuple[int, int, str]] = []
    result = build_tile_index(samples, TilingParams(), ws, workers=2, progress=lambda *a: calls.append(a))
    finished = [done for done, _, message in calls if "cells QC'd" not in message]  # not progress within a slide
    assert sorted(finished) == [1, 2, 3] and all(total == 3 for _, total, _ in calls)
    errors = result.summary["errors"]
    assert list(errors) == ["GTEX-EEEE-0001"] and "not a slide" in errors["GTEX-EEEE-0001"]
    assert result.summary["per_slide"]["GTEX-DDDD-0001"]["kept"] > 0
    assert result.summary["slides_tiled"] == 2


def test_samples_table_without_required_columns(ws: Workspace) -> None:
    with pytest.raises(tiling.DataError, match="lacks columns"):
        build_tile_index(pd.DataFrame({"sample_id": ["A"]}), TilingParams(), ws)


def test_tiling_summary_counts_each_stage() -> None:
    index = pd.DataFrame(
        {
            "sample_id": ["A", "A", "A", "B"],
            "tissue": ["Lung", "Lung", "Lung", "Skin"],
            "passed_qc": [True, False, False, False],
            "reason": ["", "blur", "pen", "blur"],
            "selected": [True, False, False, False],
        }
    )
    summary = tiling_summary(index, "x/index.parquet")
    assert (summary["considered"], summary["kept"], summary["selected"]) == (4, 1, 1)
    assert summary["rejected"] == {"jpeg_size": 0, "half_empty": 0, "dirt": 0, "blur": 2, "pen": 1}
    assert summary["per_tissue"]["Lung"] == {"slides": 1, "considered": 3, "kept": 1, "selected": 1}
    assert summary["per_slide"]["B"]["rejected"]["blur"] == 1
    assert summary["index"] == "x/index.parquet"


# ------------------------------------------------------------------ CLI


def test_cli_one_slide_json(ws: Workspace, svs: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--workspace", str(ws.root), "tiles", "--slide", str(svs), "--json", "--workers", "1"]) == 0
    captured = capsys.readouterr()
    summary = json.loads(captured.out)
    assert summary["kept"] > 0 and summary["considered"] >= summary["kept"]
    assert set(summary["rejected"]) == set(QC_STAGES)
    assert list(summary["per_tissue"]) == ["Unknown"]
    assert Path(summary["index"]).is_file()
    assert "1/1" in captured.err  # the progress bar


def test_cli_dataset_folder_with_symlinked_slide(ws: Workspace, svs: Path, tmp_path: Path, capsys) -> None:
    data = tmp_path / "dataset"
    (data / "slides").mkdir(parents=True)
    (data / "slides" / "GTEX-1117F-0126.svs").symlink_to(svs)
    argv = ["--workspace", str(ws.root), "tiles", "--data", str(data), "--json", "--tiles-per-slide", "3"]
    assert main(argv) == 0
    summary = json.loads(capsys.readouterr().out)
    assert list(summary["per_slide"]) == ["GTEX-1117F-0126"]
    assert summary["kept"] > 0
    assert summary["params"]["tiles_per_slide"] == 3


def test_cli_bad_slide_exits_2_naming_the_file(ws: Workspace, tmp_path: Path, capsys) -> None:
    fake = tmp_path / "broken.svs"
    fake.write_text("text")
    assert main(["--workspace", str(ws.root), "tiles", "--slide", str(fake)]) == 2
    assert f"error: {fake}: not a slide" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("summary", "says", "never"),
    [
        ({"mode": "quota", "considered": 900, "candidates": 2400}, "not all 2,400 tissue cells", "every tissue cell"),
        ({"mode": "quota", "considered": 2613, "candidates": 2613}, "every tissue cell", "not all"),
        ({"mode": "all", "considered": 2613, "candidates": 2613}, "every tissue cell", "quota"),
    ],
)
def test_funnel_caption_says_whether_every_cell_was_qcd(tmp_path: Path, summary: dict, says: str, never: str) -> None:
    (tmp_path / "summary.json").write_text(json.dumps(summary))
    caption = tiling.funnel_caption(tmp_path / "index.parquet")
    assert says in caption and never not in caption
    assert f"{summary['considered']:,}" in caption
