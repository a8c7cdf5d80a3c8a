"""core.data.slides on the real Aperio SVS, renamed copies, plain images and broken files."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import tifffile
from PIL import Image

from core.base.errors import DataError, DataWarning
from core.data.slides import DEFAULT_MAGNIFICATION, DEFAULT_MPP, area_resize, detect_driver, open_slide, slide_info

SVS_NAME = "CMU-1-Small-Region.svs"


@pytest.fixture
def svs(testdata: Path) -> Path:
    return testdata / SVS_NAME


def test_real_svs_info(svs: Path) -> None:
    info = slide_info(svs)
    assert info.driver == "SVS"
    assert (info.width, info.height) == (2220, 2967)
    assert info.magnification == 20.0 and not info.magnification_assumed
    assert info.mpp == pytest.approx(0.499, abs=1e-3) and not info.mpp_assumed
    assert info.levels[0] == (2220, 2967, 1.0)
    assert info.warnings == []


def test_real_svs_thumbnail_and_regions(svs: Path) -> None:
    with open_slide(svs) as slide:
        thumb, scale = slide.thumbnail(max_side=512)
        assert thumb.dtype == np.uint8 and thumb.shape[2] == 3
        assert max(thumb.shape[:2]) == 512
        assert scale == pytest.approx(2220 / thumb.shape[1])
        # Tissue is in the lower middle of this slide; the top-left corner is glass.
        tissue = slide.read_region(1000, 1000, 448, 448)
        glass = slide.read_region(0, 1400, 200, 200)
        assert tissue.shape == (448, 448, 3) and glass.shape == (200, 200, 3)
        assert tissue.mean() < glass.mean() - 30
        downsized = slide.read_region(1000, 1000, 448, 448, out_size=(224, 224))
        assert downsized.shape == (224, 224, 3)
        # A downsized read shows the same picture as the full read, averaged.
        pooled = tissue.reshape(224, 2, 224, 2, 3).mean(axis=(1, 3))
        assert np.abs(pooled - downsized).mean() < 12
        assert slide.read_region(0, 0, 600, 300, out_size=300).shape == (150, 300, 3)


def test_region_outside_slide_is_a_data_error(svs: Path) -> None:
    with open_slide(svs) as slide, pytest.raises(DataError, match="outside the 2220x2967 slide"):
        slide.read_region(2000, 0, 448, 448)


def test_renamed_copy_without_extension_is_detected_from_content(svs: Path, tmp_path: Path) -> None:
    upload = tmp_path / "tmpab12"
    shutil.copy(svs, upload)
    assert detect_driver(upload) == "SVS"
    info = slide_info(upload)
    assert (info.width, info.height, info.magnification) == (2220, 2967, 20.0)


def test_png_and_jpeg_without_extension_use_gdal_with_assumed_scale(tmp_path: Path) -> None:
    pixels = np.random.default_rng(0).integers(0, 255, (120, 160, 3), dtype=np.uint8)
    for name, fmt in (("upload_png", "PNG"), ("upload_jpg", "JPEG")):
        path = tmp_path / name
        Image.fromarray(pixels).save(path, format=fmt)
        assert detect_driver(path) == "GDAL"
        with pytest.warns(DataWarning, match="no magnification"), open_slide(path) as slide:
            info = slide.info
            region = slide.read_region(10, 20, 50, 40)
        assert (info.width, info.height) == (160, 120)
        assert info.magnification_assumed and info.mpp_assumed
        assert (info.magnification, info.mpp) == (DEFAULT_MAGNIFICATION, DEFAULT_MPP)
        assert region.shape == (40, 50, 3)
        if fmt == "PNG":  # lossless: the exact pixels come back
            assert np.array_equal(region, pixels[20:60, 10:60])


def test_aperio_description_with_tif_extension_reads_as_svs_at_40x(tmp_path: Path) -> None:
    path = tmp_path / "scan.tif"
    tifffile.imwrite(
        path,
        np.full((512, 512, 3), 200, dtype=np.uint8),
        tile=(256, 256),
        photometric="rgb",
        description="Aperio Image Library test |AppMag = 40|MPP = 0.25",
    )
    info = slide_info(path)
    assert info.driver == "SVS"
    assert (info.magnification, info.mpp) == (40.0, pytest.approx(0.25))
    assert not info.magnification_assumed


def test_text_file_with_slide_extension(tmp_path: Path) -> None:
    path = tmp_path / "notes.svs"
    path.write_text("hello, not a slide")
    with pytest.raises(DataError, match="not a slide") as caught:
        open_slide(path)
    assert caught.value.path == str(path)


def test_truncated_svs_without_its_directory(svs: Path, tmp_path: Path) -> None:
    path = tmp_path / "cut.svs"
    data = svs.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match="truncated") as caught:
        open_slide(path)
    assert str(path) in str(caught.value)


def test_truncated_tiff_losing_image_tiles(tmp_path: Path) -> None:
    full = tmp_path / "full.svs"
    tifffile.imwrite(
        full,
        np.random.default_rng(0).integers(0, 255, (512, 512, 3), dtype=np.uint8),
        tile=(256, 256),
        photometric="rgb",
        description="Aperio Image Library test |AppMag = 20",
    )
    data = full.read_bytes()
    cut = tmp_path / "cut.svs"
    cut.write_bytes(data[: len(data) * 2 // 3])
    with pytest.raises(DataError, match=r"truncated: image data ends at byte \d+ but the file has \d+ bytes"):
        slide_info(cut)


def test_16bit_grayscale_tiff_is_shown_as_8bit_rgb_with_a_warning(tmp_path: Path) -> None:
    path = tmp_path / "fluo.tif"
    ramp = np.tile(np.linspace(0, 65535, 256).astype(np.uint16), (64, 1))
    tifffile.imwrite(path, ramp)
    with pytest.warns(DataWarning, match="16-bit grayscale"), open_slide(path) as slide:
        assert any("16-bit grayscale" in note for note in slide.info.warnings)
        region = slide.read_region(0, 0, 256, 64)
    assert region.dtype == np.uint8 and region.shape == (64, 256, 3)
    assert np.array_equal(region[..., 0], region[..., 2])  # grey shown as equal RGB
    assert region[0, 0, 0] == 0 and region[0, -1, 0] == 255  # full 16-bit range mapped to 0..255


def test_missing_empty_and_unknown_files(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="file not found"):
        open_slide(tmp_path / "absent.svs")
    empty = tmp_path / "empty.ndpi"
    empty.touch()
    with pytest.raises(DataError, match="empty file"):
        open_slide(empty)
    blob = tmp_path / "blob.bin"
    blob.write_bytes(b"\x00\x01binary junk" * 10)
    with pytest.raises(DataError, match="unsupported file type"):
        open_slide(blob)
    with pytest.raises(DataError, match="not a file"):
        open_slide(tmp_path)


def test_scene_out_of_range_is_a_clear_error(testdata):
    svs = testdata / "CMU-1-Small-Region.svs"
    with open_slide(svs) as slide:
        assert (slide.info.scene, slide.info.scenes) == (0, 1)
    with pytest.raises(DataError, match=r"scene 3 asked, but the file holds 1 scene"):
        open_slide(svs, scene=3)


# ------------------------------------------------------------------ image fidelity: area-filtered reduction


def area_average(image: np.ndarray, factor: int) -> np.ndarray:
    height, width = image.shape[0] // factor, image.shape[1] // factor
    blocks = image[: height * factor, : width * factor].reshape(height, factor, width, factor, 3)
    return blocks.astype(np.float64).mean(axis=(1, 3))


@pytest.mark.parametrize("read_size", [448, 896])
def test_downsampled_read_is_an_area_average_not_slideio_aliasing(svs: Path, read_size: int) -> None:
    with open_slide(svs) as slide:
        errors, aliased = [], []
        for x, y in ((0, 0), (896, 896), (1200, 1792)):
            full = slide.read_region(x, y, read_size, read_size)
            small = slide.read_region(x, y, read_size, read_size, out_size=64)
            assert small.shape == (64, 64, 3) and small.dtype == np.uint8
            truth = area_average(full, read_size // 64)
            errors.append(np.abs(small - truth).mean())
            # What slideio's own resize gives (the old read): this test can tell the two apart.
            direct = slide._to_rgb(slide._scene.read_block((x, y, read_size, read_size), size=(64, 64)))
            aliased.append(np.abs(direct - truth).mean())
    assert max(errors) < 0.6, errors
    assert max(aliased) > 20 * max(errors) and max(aliased) > 15, aliased  # (on tissue; glass barely aliases)


def test_read_tiles_gives_read_region_pixels_for_runs_and_lone_cells(svs: Path) -> None:
    xs, ys = np.array([0, 448, 896, 1344, 0, 896, 448]), np.array([0, 0, 0, 0, 448, 448, 2240])
    with open_slide(svs) as slide:
        for out_size in (448, 224, 64, 500):
            tiles = list(slide.read_tiles(xs, ys, 448, out_size))
            assert len(tiles) == len(xs)
            for tile, x, y in zip(tiles, xs, ys, strict=True):
                assert np.array_equal(tile, slide.read_region(int(x), int(y), 448, 448, out_size=(out_size,) * 2))
        with pytest.raises(DataError, match="outside"):
            list(slide.read_tiles(np.array([1344, 1792]), np.array([0, 0]), 448, 448))  # the run leaves the slide


def test_downsampled_read_uses_the_nearest_pyramid_level_at_or_above_the_target(tmp_path: Path, testdata: Path) -> None:
    # The pyramid is painted from the real CMU-1 H&E in ../shared/testdata (skipped when absent, like the others).
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    import gtex_slide

    path = gtex_slide.make_gtex_size_svs(tmp_path / "pyramid.svs", 2880, 2160, seed=1)
    with open_slide(path) as slide:
        assert [round(level[2]) for level in slide.info.levels] == [1, 4, 16, 32]
        assert [slide._level_downsample(d) for d in (1.0, 3.9, 7.0, 14.0, 28.0, 64.0)] == pytest.approx(
            [1, 1, 4, 4, 16, 32], rel=0.01
        )
        for read_size in (448, 896):  # from the 4x level (112 or 224 px), then area-reduced to 64
            level = slide._read_block(512, 256, read_size, read_size, (read_size // 4,) * 2)
            small = slide.read_region(512, 256, read_size, read_size, out_size=64)
            assert np.array_equal(small, area_resize(level, (64, 64)))
            # The level holds its own JPEG loss, yet it stays far closer to the level-0 area average
            # than slideio's resize of the same box.
            truth = area_average(slide.read_region(512, 256, read_size, read_size), read_size // 64)
            direct = slide._to_rgb(slide._scene.read_block((512, 256, read_size, read_size), size=(64, 64)))
            assert 3 * np.abs(small - truth).mean() < np.abs(direct - truth).mean()


def test_tile_pack_holds_area_reduced_tiles(svs: Path, tmp_path: Path) -> None:
    from core.base.config import workspace
    from core.tiles.index import read_tile
    from core.tiles.pack import build_tilepack

    tiles = pd.DataFrame({"sample_id": "CMU-1", "slide_path": str(svs), "level": 0, "x": [0, 896, 1200],
                          "y": [0, 896, 1792], "read_size": 896, "tile_size": 448})
    pack = build_tilepack(tiles, 64, workspace(tmp_path / "ws"), read_tile, workers=1)
    with open_slide(svs) as slide:
        for image, row in zip(pack.images, tiles.itertuples(), strict=True):
            truth = area_average(slide.read_region(row.x, row.y, 896, 896), 14)
            assert np.abs(image - truth).mean() < 0.6
