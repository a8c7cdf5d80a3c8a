"""benchmarks/gtex_slide.py: the GTEx-size benchmark slide, made small here (same code path)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from core.data.slides import open_slide
from core.tiles.index import stained_pixels, tissue_mask

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import gtex_slide  # noqa: E402

WIDTH, HEIGHT = 2880, 2160


@pytest.fixture(scope="module")
def slide_path(testdata: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return gtex_slide.make_gtex_size_svs(tmp_path_factory.mktemp("gtex") / "small.svs", WIDTH, HEIGHT, seed=3)


def test_pyramidal_aperio_svs_that_slideio_and_openslide_both_open(slide_path: Path) -> None:
    import openslide

    with open_slide(slide_path) as slide:
        info = slide.info
        region = slide.read_region(1000, 1000, 448, 448)
    assert info.driver == "SVS" and (info.width, info.height) == (WIDTH, HEIGHT)
    assert [round(level[2]) for level in info.levels] == [1, 4, 16, 32]
    assert info.magnification == 20 and info.mpp == pytest.approx(0.499)
    with openslide.OpenSlide(slide_path) as other:
        assert other.dimensions == (WIDTH, HEIGHT)
        assert {"thumbnail", "label", "macro"} <= set(other.associated_images)
        same = np.asarray(other.read_region((1000, 1000), 0, (448, 448)).convert("RGB"))
    assert np.abs(same.astype(int) - region).mean() < 2  # the same JPEG tiles, two decoders


def test_tissue_covers_about_58_percent_and_is_real_h_and_e(slide_path: Path) -> None:
    with open_slide(slide_path) as slide:
        thumb, scale = slide.thumbnail(1024)
        mask = tissue_mask(thumb, um_per_px=scale * slide.info.mpp)
    assert 0.5 < mask.mean() < 0.68
    stained = stained_pixels(thumb)
    assert stained[mask].mean() > 0.7 and stained[~mask].mean() < 0.02  # stain inside, glass outside
    # H&E colours: pink to purple (red and blue above green), as in the source slide.
    red, green, blue = thumb[stained].astype(float).mean(axis=0)
    assert red > green + 30 and blue > green + 10


def test_same_seed_same_pixels_and_reused_when_present(slide_path: Path, tmp_path: Path) -> None:
    mtime = slide_path.stat().st_mtime_ns
    assert gtex_slide.make_gtex_size_svs(slide_path, WIDTH, HEIGHT, seed=3) == slide_path
    assert slide_path.stat().st_mtime_ns == mtime  # reused, not rewritten
    again = gtex_slide.make_gtex_size_svs(tmp_path / "again.svs", WIDTH, HEIGHT, seed=3)
    with open_slide(slide_path) as a, open_slide(again) as b:
        assert np.array_equal(a.read_region(0, 0, WIDTH, HEIGHT, out_size=960),
                              b.read_region(0, 0, WIDTH, HEIGHT, out_size=960))
    # Other parameters at the same path: regenerated (another seed, other pixels), not reused.
    assert gtex_slide.make_gtex_size_svs(again, WIDTH, HEIGHT, seed=4) == again
    with open_slide(slide_path) as a, open_slide(again) as b:
        assert not np.array_equal(a.read_region(0, 0, WIDTH, HEIGHT, out_size=960),
                                  b.read_region(0, 0, WIDTH, HEIGHT, out_size=960))
