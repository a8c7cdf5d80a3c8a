"""The tile index grows slide by slide: per-slide parts, resume after a cancel, failures that are
not about the file are never cached (issue 7)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

import core.tiles.run as tile_run
from core.base.config import Workspace
from core.data.slides import Slide
from core.tiles.index import TilingParams, build_tile_index
from tests.test_tiling import samples_table, tissue_texture

# Small tiles keep these tests fast; everything else is the default tiling.
PARAMS = TilingParams(tile_size=112, tiles_per_slide=4, tissue_target=8)


def tissue_png(path: Path, seed: int, size: tuple[int, int] = (448, 448)) -> Path:
    Image.fromarray(tissue_texture(size[1], size[0], seed=seed)).save(path)
    return path


@pytest.fixture
def slides(tmp_path: Path) -> dict[str, Path]:
    names = ["GTEX-A-1", "GTEX-B-1", "GTEX-C-1"]
    return {name: tissue_png(tmp_path / f"{name}.png", seed) for seed, name in enumerate(names)}


@pytest.fixture
def reads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Names of the slide files whose pixels are read (tiles and thumbnails), in this process."""
    seen: list[str] = []
    original = Slide.read_region

    def recording(self: Slide, *args: object, **kwargs: object) -> np.ndarray:
        seen.append(Path(self.path).stem)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(Slide, "read_region", recording)
    return seen


# One tissue each, so one slide's quota does not depend on the others.
TISSUES = {"GTEX-A-1": "Lung", "GTEX-B-1": "Liver", "GTEX-C-1": "Thyroid"}


def table(slides: dict[str, Path], *names: str) -> pd.DataFrame:
    return samples_table(*[(name, TISSUES[name], slides[name]) for name in names])


def test_adding_a_slide_tiles_only_that_slide(ws: Workspace, slides: dict[str, Path], reads: list[str]) -> None:
    first = build_tile_index(table(slides, "GTEX-A-1"), PARAMS, ws, workers=1)
    assert set(reads) == {"GTEX-A-1"}
    reads.clear()
    both = build_tile_index(table(slides, "GTEX-A-1", "GTEX-B-1"), PARAMS, ws, workers=1)
    assert set(reads) == {"GTEX-B-1"}  # A comes from its cached part
    assert not both.summary["cached"]
    a_rows = both.index[both.index.sample_id == "GTEX-A-1"].reset_index(drop=True)
    pd.testing.assert_frame_equal(a_rows, first.index)


def test_editing_a_subject_id_retiles_nothing(ws: Workspace, slides: dict[str, Path], reads: list[str]) -> None:
    samples = table(slides, "GTEX-A-1", "GTEX-B-1")
    first = build_tile_index(samples, PARAMS, ws, workers=1)
    reads.clear()
    samples.loc[samples.sample_id == "GTEX-B-1", "subject_id"] = "GTEX-Z"
    again = build_tile_index(samples, PARAMS, ws, workers=1)
    assert reads == []
    assert set(again.index.loc[again.index.sample_id == "GTEX-B-1", "subject_id"]) == {"GTEX-Z"}
    assert again.path != first.path  # a new cohort index, assembled from the same parts
    pd.testing.assert_frame_equal(again.index.drop(columns="subject_id"), first.index.drop(columns="subject_id"))


class Cancelled(Exception):
    pass


def test_cancelled_tiling_resumes_where_it_stopped(ws: Workspace, slides: dict[str, Path], reads: list[str]) -> None:
    samples = table(slides, "GTEX-A-1", "GTEX-B-1", "GTEX-C-1")

    def cancel_after_first(done: int, total: int, message: str) -> None:
        if done >= 1:
            raise Cancelled

    with pytest.raises(Cancelled):
        build_tile_index(samples, PARAMS, ws, workers=1, progress=cancel_after_first)
    assert set(reads) == {"GTEX-A-1"}
    reads.clear()
    calls: list[tuple[int, int, str]] = []
    result = build_tile_index(samples, PARAMS, ws, workers=1, progress=lambda *a: calls.append(a))
    assert set(reads) == {"GTEX-B-1", "GTEX-C-1"}
    assert calls[0] == (1, 3, "1 slide(s) reused from the per-slide cache")
    assert result.summary["slides_tiled"] == 3 and result.summary["errors"] == {}


def test_a_slide_cut_off_mid_grid_resumes_from_its_saved_batches(
    ws: Workspace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, reads: list[str]
) -> None:
    big = tissue_png(tmp_path / "GTEX-D-1.png", 7, size=(1792, 1120))  # 16 x 10 cells of 112 px
    monkeypatch.setattr(tile_run, "FULL_GRID_BATCH", 48)
    params = TilingParams(tile_size=112, all_tiles=True)
    original = tile_run.read_and_qc
    calls = 0

    def dies_on_third_batch(*args: object, **kwargs: object) -> dict[str, np.ndarray]:
        nonlocal calls
        calls += 1
        if calls == 3:
            raise MemoryError("out of memory")
        return original(*args, **kwargs)

    monkeypatch.setattr(tile_run, "read_and_qc", dies_on_third_batch)
    samples = samples_table(("GTEX-D-1", "Lung", big))
    failed = build_tile_index(samples, params, ws, workers=1)
    assert failed.summary["transient"] == ["GTEX-D-1"] and failed.index.empty
    cells_read: list[int] = []

    def counting(slide: object, xs: np.ndarray, *args: object) -> dict[str, np.ndarray]:
        cells_read.append(len(xs))
        return original(slide, xs, *args)

    monkeypatch.setattr(tile_run, "read_and_qc", counting)
    reads.clear()
    result = build_tile_index(samples, params, ws, workers=1)
    assert len(result.index) == 160 and result.summary["errors"] == {}
    assert sum(cells_read) == 160 - 2 * 48  # the two saved batches are not read again
    assert len(reads) < 160 - 2 * 48  # nor is the thumbnail: the plan was saved too


def test_transient_failure_is_not_cached_and_retried(
    ws: Workspace, slides: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    samples = table(slides, "GTEX-A-1", "GTEX-B-1")
    original = Slide.read_region

    def memory_error_on_b(self: Slide, *args: object, **kwargs: object) -> np.ndarray:
        if Path(self.path).stem == "GTEX-B-1":
            raise MemoryError("cannot allocate")
        return original(self, *args, **kwargs)

    monkeypatch.setattr(Slide, "read_region", memory_error_on_b)
    failed = build_tile_index(samples, PARAMS, ws, workers=1)
    assert "MemoryError" in failed.summary["errors"]["GTEX-B-1"]
    assert failed.summary["transient"] == ["GTEX-B-1"]
    assert set(failed.index.sample_id) == {"GTEX-A-1"}

    monkeypatch.setattr(Slide, "read_region", original)  # the machine has memory again
    retried = build_tile_index(samples, PARAMS, ws, workers=1)
    assert not retried.summary["cached"]
    assert retried.summary["errors"] == {} and set(retried.index.sample_id) == {"GTEX-A-1", "GTEX-B-1"}


def test_unreadable_file_is_cached_as_that_slides_error(
    ws: Workspace, slides: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = tmp_path / "GTEX-E-1.svs"
    fake.write_text("not a slide")
    build_tile_index(samples_table(("GTEX-E-1", "Lung", fake)), PARAMS, ws, workers=1)
    planned: list[str] = []
    original = tile_run.plan_slide
    monkeypatch.setattr(tile_run, "plan_slide", lambda path, params: planned.append(path) or original(path, params))
    result = build_tile_index(samples_table(("GTEX-E-1", "Lung", fake), ("GTEX-A-1", "Lung", slides["GTEX-A-1"])),
                              PARAMS, ws, workers=1)
    assert "not a slide" in result.summary["errors"]["GTEX-E-1"] and result.summary["transient"] == []
    assert [Path(p).stem for p in planned] == ["GTEX-A-1"]  # the broken file was not opened again


def test_dead_worker_fails_only_its_own_slide(
    ws: Workspace, slides: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A worker killed while reading slide B (as by the OOM killer): A and C still finish in this run."""
    monkeypatch.setattr(tile_run, "MP_CONTEXT", "fork")  # so the workers inherit the patch below
    monkeypatch.setattr(tile_run, "INLINE_CELLS", 0)  # a pool even for this small run
    original = tile_run.read_and_qc

    def killed_on_b(slide: Slide, *args: object) -> dict[str, np.ndarray]:
        if Path(slide.path).stem == "GTEX-B-1":
            os._exit(137)
        return original(slide, *args)

    monkeypatch.setattr(tile_run, "read_and_qc", killed_on_b)
    result = build_tile_index(table(slides, "GTEX-A-1", "GTEX-B-1", "GTEX-C-1"), PARAMS, ws, workers=2)
    assert result.summary["transient"] == ["GTEX-B-1"]
    assert "died" in result.summary["errors"]["GTEX-B-1"]
    assert set(result.index.sample_id) == {"GTEX-A-1", "GTEX-C-1"}


def test_damaged_part_is_tiled_again(ws: Workspace, slides: dict[str, Path], reads: list[str]) -> None:
    build_tile_index(table(slides, "GTEX-A-1"), PARAMS, ws, workers=1)
    for part in (ws.tiles_dir / "parts").glob("*.npz"):
        part.write_bytes(b"garbage")
    reads.clear()
    result = build_tile_index(table(slides, "GTEX-A-1", "GTEX-B-1"), PARAMS, ws, workers=1)
    assert set(reads) == {"GTEX-A-1", "GTEX-B-1"} and result.summary["errors"] == {}


def test_parts_hold_columns_not_rows(ws: Workspace, slides: dict[str, Path]) -> None:
    from core.tiles.parts import load_part, part_key

    build_tile_index(table(slides, "GTEX-A-1"), PARAMS, ws, workers=1)
    part = load_part(ws.tiles_dir / "parts", part_key(str(slides["GTEX-A-1"]), PARAMS, "Lung"))
    assert part is not None and part.candidates == 16 and 8 <= part.considered < 16  # quota: 8 passed
    assert part.qc["jpeg_kb"].dtype == np.float32 and part.plan.x.dtype == np.int64
