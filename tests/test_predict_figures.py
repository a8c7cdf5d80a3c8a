"""core.predict.figures: per-tile values land on the right grid cells over the thumbnail; tables filter and name."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from core.predict import figures as pf

SCALE = 8.0  # level-0 px per thumbnail px
STEP = 448  # tile side, level-0 px: 56 thumbnail px


def grid_tiles() -> pd.DataFrame:
    """A 2 x 3 grid starting at (448, 896) level-0 px; the middle top tile rejected."""
    xs = [448, 896, 1344, 448, 896, 1344]
    ys = [896, 896, 896, 1344, 1344, 1344]
    passed = [True, False, True, True, True, True]
    return pd.DataFrame({"x": xs, "y": ys, "read_size": STEP, "passed_qc": passed,
                         "reason": ["" if p else "blur" for p in passed],
                         "predicted_tissue": ["Lung", "", "Lung", "Adipose", "Adipose", "Lung"],
                         "confidence": [1.0, np.nan, 0.0, 1.0, 0.5, 1.0]})


def test_tile_grid_cells_and_origin():
    grid = pf.tile_grid(grid_tiles(), SCALE)
    assert grid.shape == (2, 3)
    assert list(grid.cols) == [0, 1, 2, 0, 1, 2] and list(grid.rows) == [0, 0, 0, 1, 1, 1]
    assert (grid.x0, grid.y0, grid.step) == (56.0, 112.0, 56.0)


def test_kept_tiles_skip_rejected_and_unpredicted():
    assert list(pf.kept_tiles(grid_tiles()).index) == [0, 2, 3, 4, 5]


def test_tissue_overlay_tints_each_tile_by_tissue_and_confidence():
    thumb = np.full((300, 300, 3), 200, dtype=np.uint8)
    tiles = grid_tiles()
    fig = pf.tissue_overlay(thumb, SCALE, tiles, tissues=["Adipose", "Lung", "Muscle"])
    image = np.asarray(fig.data[0].z)
    colours = pf.tissue_colours(["Adipose", "Lung", "Muscle"])
    lung = np.array([int(colours["Lung"][i:i + 2], 16) for i in (1, 3, 5)])
    low, high = pf.OVERLAY_ALPHA
    centre = lambda col, row: image[112 + 56 * row + 28, 56 + 56 * col + 28].astype(float)  # noqa: E731
    np.testing.assert_allclose(centre(0, 0), 200 * (1 - high) + lung * high, atol=1)  # confident Lung
    np.testing.assert_allclose(centre(2, 0), 200 * (1 - low) + lung * low, atol=1)  # doubtful Lung: fainter
    assert (centre(1, 0) == 200).all()  # the rejected tile is left as it is
    assert (image[5, 5] == 200).all() and (image[290, 290] == 200).all()  # outside the grid
    hover = fig.data[1]
    assert hover.type == "heatmap" and hover.text[0][0] == "Lung<br>confidence 100%" and hover.text[0][1] == ""
    assert sorted(t.name for t in fig.data[2:]) == ["Adipose (2)", "Lung (3)"]


def test_gene_overlay_places_values_and_leaves_rejected_tiles_empty():
    thumb = np.zeros((300, 300, 3), dtype=np.uint8)
    values = np.array([1.0, np.nan, 3.0, 4.0, 5.0, 6.0])
    fig = pf.gene_overlay(thumb, SCALE, grid_tiles(), values, "LEP")
    heat = fig.data[1]
    z = np.asarray(heat.z, dtype=float)
    np.testing.assert_array_equal(z[1], [4.0, 5.0, 6.0])
    assert z[0, 0] == 1.0 and np.isnan(z[0, 1]) and z[0, 2] == 3.0
    assert (heat.x0, heat.dx, heat.y0, heat.dy) == (84.0, 56.0, 140.0, 56.0)  # cell centres, thumbnail px
    with pytest.raises(ValueError, match="5 tile values for 6 tiles"):
        pf.gene_overlay(thumb, SCALE, grid_tiles(), values[:5], "LEP")


def test_expression_table_filters_by_r2_most_reliable_first():
    genes = pd.DataFrame({"gene_id": ["a", "b", "c"], "symbol": ["A", "B", "C"], "predicted": [1.0, 2.0, 3.0],
                          "r2": [0.2, 0.05, 0.6], "ref_tissue": "Lung", "ref_low": 0.0, "ref_median": 1.0,
                          "ref_high": 2.0})
    shown = pf.expression_table(genes, 0.1)
    assert list(shown["Gene"]) == ["C", "A"]
    assert list(shown.columns) == ["Gene", "Ensembl ID", "Predicted log2(1+TPM)", "R² (reliability)",
                                   "Reference tissue", "Reference low", "Reference median", "Reference high"]


def test_tile_outcomes_and_top3_and_reference_map():
    bar = pf.tile_outcomes_bar({"considered": 10, "kept": 6, "rejected": {"blur": 1, "pen": 3}})
    assert list(bar.data[0].y) == ["kept", "rejected: pen", "rejected: blur"] and list(bar.data[0].x) == [6, 3, 1]
    top = pf.top3_bar([{"tissue": "Lung", "probability": 0.7}, {"tissue": "Adipose", "probability": 0.3}])
    assert list(top.data[0].text) == ["70%", "30%"]
    reference = pd.DataFrame({"sample_id": ["s1", "s2", "s3"], "tissue": ["Lung", "Lung", "Adipose"],
                              "x": [0.0, 1.0, 2.0], "y": [0.0, 1.0, 0.0]})
    fig = pf.reference_map({"method": "umap", "reference": reference, "point": (0.5, 0.5)},
                           pd.DataFrame({"sample_id": ["s2"], "tissue": ["Lung"], "distance": [0.1]}), "mine.svs")
    names = [t.name for t in fig.data]
    assert names == ["Adipose", "Lung", "nearest reference slides", "mine.svs"]
    assert list(fig.data[2].x) == [1.0] and tuple(fig.data[3].x) == (0.5,)


def test_tiles_of_other_scenes_are_not_drawn_and_are_counted_in_the_statement():
    """Scene 1's tiles sit at scene 1's own coordinates: drawn over scene 0's thumbnail they would cover scene 0's
    cells, so the overlays keep scene 0 and scene_statement says how many were left out."""
    tiles = pd.concat([grid_tiles().assign(scene=0), grid_tiles().assign(scene=1, predicted_tissue="Muscle")],
                      ignore_index=True)
    thumb = np.full((300, 300, 3), 200, dtype=np.uint8)
    fig = pf.tissue_overlay(thumb, SCALE, tiles, tissues=["Adipose", "Lung", "Muscle"])
    assert sorted(t.name for t in fig.data[2:]) == ["Adipose (2)", "Lung (3)"]  # no Muscle: scene 1 left out
    values = np.arange(12, dtype=float)
    z = np.asarray(pf.gene_overlay(thumb, SCALE, tiles, values, "LEP").data[1].z, dtype=float)
    np.testing.assert_array_equal(z[1], [3.0, 4.0, 5.0])  # scene 0's values, not scene 1's 9, 10, 11
    statement = pf.scene_statement(tiles, 2)
    assert "holds 2 scenes" in statement and "draw scene 0 only (5 of the 10 kept tiles)" in statement
    assert "5 kept tiles came from scene 1" in statement
    assert pf.scene_statement(tiles[tiles["scene"] == 0], 1) is None
    assert pf.scene_statement(grid_tiles(), None) is None  # no scene column: a one-scene result
    assert "No tile came from the other scenes" in pf.scene_statement(tiles[tiles["scene"] == 0], 3)
