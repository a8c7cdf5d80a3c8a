"""Which index a dataset uses (recorded tiling parameters), tile size in microns, and scenes (issue 7)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import tifffile
from PIL import Image

from core.__main__ import main
from core.base.config import Workspace
from core.data.slides import open_slide
from core.tiles.index import (
    TilingParams,
    build_tile_index,
    dataset_tiling_params,
    params_from_dict,
    params_to_dict,
    read_tile,
)
from tests.test_tiling import samples_table, tissue_texture


@pytest.fixture
def dataset(tmp_path: Path) -> Path:
    data = tmp_path / "dataset"
    (data / "slides").mkdir(parents=True)
    Image.fromarray(tissue_texture(896, 896, seed=2)).save(data / "slides" / "GTEX-1117F-0126.png")
    return data


def _tiles(ws: Workspace, data: Path, capsys: pytest.CaptureFixture[str], *flags: str) -> dict:
    assert main(["--workspace", str(ws.root), "tiles", "--data", str(data), "--json", "--workers", "1", *flags]) == 0
    return json.loads(capsys.readouterr().out)


def test_tiles_with_a_tile_size_records_it_and_training_uses_that_index(
    ws: Workspace, dataset: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert dataset_tiling_params(ws, dataset) == TilingParams()  # nothing recorded yet
    summary = _tiles(ws, dataset, capsys, "--tile-size", "224", "--tiles-per-slide", "5")
    params = dataset_tiling_params(ws, dataset)
    assert (params.tile_size, params.tiles_per_slide) == (224, 5)
    assert summary["params"]["tile_size"] == 224

    # A later run without flags keeps the recorded tiling (and reuses its index).
    again = _tiles(ws, dataset, capsys)
    assert again["index"] == summary["index"] and again["cached"]

    # Training looks the index up with the dataset's parameters: the 224 px one, not a default one.
    from core.cli.train import _tile_index

    class Reporter:
        class job:  # noqa: N801 (stands in for the JobReporter attribute)
            @staticmethod
            def check_cancel() -> None:
                pass

        @staticmethod
        def progress(done: int, total: int, message: str) -> None:
            pass

    index, path = _tile_index(dataset, ws, Reporter())
    assert str(path) == summary["index"] and (index["tile_size"] == 224).all()


def test_overview_uses_the_recorded_index(
    ws: Workspace, dataset: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from streamlit.testing.v1 import AppTest

    summary = _tiles(ws, dataset, capsys, "--tile-size", "224")
    monkeypatch.setenv("HISTOGENE_DATA", str(dataset))
    at = AppTest.from_file(str(Path(__file__).resolve().parents[1] / "app.py"), default_timeout=120)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    labels = {m.label: m.value for m in at.metric}
    assert labels["Tiles after QC"] == str(summary["kept"])
    assert any("tiles considered" in c.value for c in at.caption)  # the funnel says what it describes


def test_params_round_trip_through_json() -> None:
    params = TilingParams(tile_size=224, dirt_values=(0.2, 0.7), jpeg_kb={"Lung": 3.0}, all_tiles=True)
    assert params_from_dict(json.loads(json.dumps(params_to_dict(params)))) == params
    assert params_from_dict({"tile_size": 300, "unknown": 1}).tile_size == 300


def test_cli_rejects_a_non_positive_tile_size(ws: Workspace, dataset: Path, capsys) -> None:
    assert main(["--workspace", str(ws.root), "tiles", "--data", str(dataset), "--tile-size", "0"]) == 2
    assert "--tile-size must be positive" in capsys.readouterr().err


# ------------------------------------------------------------------ microns, not nominal magnification


def _svs(path: Path, description: str, size: int = 1024) -> Path:
    tifffile.imwrite(path, tissue_texture(size, size, seed=5), tile=(256, 256), photometric="rgb",
                     description=description)
    return path


@pytest.mark.parametrize(
    ("description", "read_size", "sizing"),
    [
        ("Aperio Image Library |AppMag = 20|MPP = 0.44", 509, "microns"),  # 224 um / 0.44
        ("Aperio Image Library |AppMag = 20|MPP = 0.5", 448, "microns (within 2% of the magnification)"),
        ("Aperio Image Library |AppMag = 20|MPP = 0.4942", 448, "microns (within 2% of the magnification)"),
        ("Aperio Image Library |AppMag = 20|MPP = 0.48", 467, "microns"),  # 4% off: sized in microns
    ],
    ids=["0.44um-20x", "0.5um-20x", "0.4942um-20x", "0.48um-20x"],
)
def test_tiles_are_224_microns_when_the_mpp_is_known(
    ws: Workspace, tmp_path: Path, description: str, read_size: int, sizing: str
) -> None:
    path = _svs(tmp_path / "GTEX-MMMM-0001.svs", description, size=1800)
    result = build_tile_index(samples_table(("GTEX-MMMM-0001", "Lung", path)), TilingParams(all_tiles=True), ws,
                              workers=1)
    assert set(result.index["read_size"]) == {read_size}
    assert set(result.index["x"]) == set(range(0, 1800 - read_size + 1, read_size))
    assert result.summary["per_slide"]["GTEX-MMMM-0001"]["tile_sizing"] == sizing
    assert read_tile(result.index.iloc[0]).shape == (448, 448, 3)


def test_magnification_rule_when_only_the_magnification_is_known() -> None:
    from core.data.slides import SlideInfo
    from core.tiles.plan import read_size_for

    def info(magnification: float, mpp: float, mpp_assumed: bool) -> SlideInfo:
        return SlideInfo("s.svs", "SVS", 4000, 4000, [(4000, 4000, 1.0)], magnification, mpp, False, mpp_assumed)

    assert read_size_for(info(40.0, 0.25, True), 448, 20.0) == (896, "magnification")
    assert read_size_for(info(20.0, 0.5, True), 448, 20.0) == (448, "magnification")
    assert read_size_for(info(40.0, 0.2, False), 448, 20.0) == (1120, "microns")  # the MPP wins when stated


# ------------------------------------------------------------------ scenes


def _two_scene_ome_tiff(path: Path) -> Path:
    """Scene 0: tissue; scene 1: a different section of tissue; both at the same resolution."""
    with tifffile.TiffWriter(path, ome=True) as tif:
        tif.write(tissue_texture(672, 896, seed=1), photometric="rgb", metadata={"axes": "YXS"})
        second = tissue_texture(448, 1344, seed=9)
        second[:, :, 2] = 120  # tell the sections apart by colour
        tif.write(second, photometric="rgb", metadata={"axes": "YXS"})
    return path


def test_every_scene_with_tissue_is_tiled(ws: Workspace, tmp_path: Path) -> None:
    path = _two_scene_ome_tiff(tmp_path / "GTEX-SSSS-0001.ome.tif")
    result = build_tile_index(samples_table(("GTEX-SSSS-0001", "Lung", path)),
                              TilingParams(tile_size=224, all_tiles=True), ws, workers=1)
    index = result.index
    cells = {(int(s), int(x), int(y)) for s, x, y in zip(index.scene, index.x, index.y, strict=True)}
    scene0 = {(0, x, y) for x in range(0, 896, 224) for y in range(0, 672, 224)}
    scene1 = {(1, x, y) for x in range(0, 1344, 224) for y in range(0, 448, 224)}
    assert cells == scene0 | scene1
    facts = result.summary["per_slide"]["GTEX-SSSS-0001"]
    assert facts["scenes"] == 2 and facts["scenes_tiled"] == [0, 1]
    row = index[index.scene == 1].iloc[0]
    with open_slide(path, 1) as slide:
        expected = slide.read_region(int(row.x), int(row.y), 224, 224)
    assert np.array_equal(read_tile(row), expected)  # read back from scene 1, not scene 0
    assert (read_tile(row)[:, :, 2] == 120).all()
