"""core.maps.figures: one trace per category, each point's row number in customdata (mapped back to ids for a
selection), numeric arrays sent as typed arrays, a colour scale for numbers."""

from __future__ import annotations

import base64
import json

import numpy as np
import pandas as pd
import plotly.io as pio
import pytest

from core.maps.figures import (
    FULL_RES_BELOW,
    HALF_WIDTH_TITLE,
    MAX_LEGEND,
    explained_variance,
    map_config,
    map_scatter,
    selected_ids,
    spread_over,
    wrap_title,
)


def _meta(n: int = 9) -> pd.DataFrame:
    ids = [f"S{i}" for i in range(n)]
    return pd.DataFrame({"id": [f"{s}:0:0" for s in ids], "sample_id": ids,
                         "tissue": ["Lung", "Liver", "Thyroid"] * (n // 3), "donor": [f"D{i}" for i in range(n)]})


def test_categories_become_traces_whose_customdata_holds_the_rows():
    coords = np.arange(18, dtype=float).reshape(9, 2)
    fig = map_scatter(coords, _meta(), "tissue")
    assert sorted(t.name for t in fig.data) == ["Liver", "Lung", "Thyroid"]
    assert all(t.type == "scattergl" for t in fig.data)
    lung = next(t for t in fig.data if t.name == "Lung")
    assert list(lung.customdata) == [0, 3, 6]  # rows of the point set: a point index counts within its trace
    np.testing.assert_array_equal(lung.x, coords[[0, 3, 6], 0])  # each trace's own points
    # Hover shows sample and tissue, one string per point.
    assert list(lung.hovertext) == ["S0<br>Lung", "S3<br>Lung", "S6<br>Lung"]
    assert lung.hovertemplate == "%{hovertext}<extra></extra>"


def test_hover_shows_the_sample_even_when_ids_do_not_name_it():
    meta = _meta().assign(id=[f"point{i}" for i in range(9)])
    lung = next(t for t in map_scatter(np.zeros((9, 2)), meta, "tissue").data if t.name == "Lung")
    assert lung.hovertext[0] == "S0<br>Lung"


def _sent(fig) -> dict:
    """The figure as st.plotly_chart sends it to the browser."""
    return json.loads(pio.to_json(fig, validate=False))


def _typed(value) -> np.ndarray:
    assert isinstance(value, dict) and set(value) == {"dtype", "bdata"}, f"not a typed array: {str(value)[:80]}"
    return np.frombuffer(base64.b64decode(value["bdata"]), dtype=value["dtype"])


def test_coordinates_rows_and_colour_values_reach_the_browser_as_typed_arrays():
    n = MAX_LEGEND + 2
    coords = np.random.default_rng(0).normal(size=(n, 2))
    meta = _meta(n)
    figures = [map_scatter(coords, meta, "tissue"), map_scatter(coords, meta, "ALB", values=np.arange(float(n))),
               map_scatter(coords, meta, "donor"), map_scatter(coords, meta, None)]  # categories, numbers, many, none
    for fig in figures:
        for trace in _sent(fig)["data"]:
            rows = _typed(trace["customdata"])
            np.testing.assert_allclose(_typed(trace["x"]), coords[rows, 0], rtol=1e-6)  # float32 is enough
            np.testing.assert_allclose(_typed(trace["y"]), coords[rows, 1], rtol=1e-6)
            assert isinstance(trace["hovertext"], list) and len(trace["hovertext"]) == len(rows)
    np.testing.assert_allclose(_typed(_sent(figures[1])["data"][0]["marker"]["color"]), np.arange(float(n)))
    assert len(np.unique(_typed(_sent(figures[2])["data"][0]["marker"]["color"]))) == n  # one code per donor


def test_a_selection_on_per_tissue_traces_maps_back_to_the_ids_of_a_drawn_subset():
    meta = _meta(12)
    drawn = np.array([1, 4, 5, 8, 10, 11])  # a seeded subset: rows of the full point set
    fig = map_scatter(np.zeros((6, 2)), meta.iloc[drawn].reset_index(drop=True), "tissue", rows=drawn)
    liver = next(t for t in fig.data if t.name == "Liver")  # rows 1, 4, 10 of the full set
    assert list(liver.customdata) == [1, 4, 10]
    # What plotly reports for a box around the Liver trace's 2nd point and the Thyroid trace's 1st: point
    # indices count within each trace, customdata is the row number.
    thyroid = next(t for t in fig.data if t.name == "Thyroid")
    points = [{"curve_number": 0, "point_index": 1, "customdata": int(liver.customdata[1])},
              {"curve_number": 2, "point_index": 0, "customdata": int(thyroid.customdata[0])}]
    assert selected_ids(points, meta["id"].to_numpy()) == ["S4:0:0", "S5:0:0"]
    # Points without a usable row number are skipped, duplicates counted once.
    junk = [{"customdata": None}, {"customdata": "S4:0:0"}, {"customdata": 12}, {"customdata": -1},
            {"customdata": 1.5}, {"customdata": True}, {}, {"customdata": 4.0}]
    assert selected_ids(points + junk, meta["id"].to_numpy()) == ["S4:0:0", "S5:0:0"]


def test_rows_must_match_the_points():
    with pytest.raises(ValueError, match="rows"):
        map_scatter(np.zeros((9, 2)), _meta(), "tissue", rows=np.arange(8))


def test_a_long_title_wraps_when_the_map_is_half_the_page_wide():
    title = "tiles · UMAP · run 20261129-012856-demo epoch 30 (efficientnet_b0, 64 px, selected on validation)"
    assert wrap_title("tiles · UMAP", HALF_WIDTH_TITLE) == ["tiles · UMAP"]
    lines = wrap_title(title, HALF_WIDTH_TITLE)
    assert len(lines) > 1 and all(len(line) <= HALF_WIDTH_TITLE for line in lines)
    assert " ".join(lines).replace(" · ", " ").split() == title.replace(" · ", " ").split()  # nothing lost
    side = map_scatter(np.zeros((9, 2)), _meta(), "tissue", title=title, legend_below=True)
    assert side.layout.title.text == "<br>".join(lines) and side.layout.margin.t >= 18 * len(lines)
    assert map_scatter(np.zeros((9, 2)), _meta(), "tissue", title=title).layout.title.text == title  # full width


def test_numbers_get_one_trace_with_a_colour_scale_and_many_categories_no_legend():
    coords = np.zeros((9, 2))
    gene = map_scatter(coords, _meta(), "ALB", values=np.linspace(0, 8, 9))
    assert len(gene.data) == 1 and gene.data[0].marker.showscale
    np.testing.assert_allclose(gene.data[0].marker.color, np.linspace(0, 8, 9))
    meta = _meta(MAX_LEGEND + 2)
    many = map_scatter(np.zeros((MAX_LEGEND + 2, 2)), meta, "donor")  # 42 donors: one trace, no legend
    assert len(many.data) == 1 and many.layout.showlegend is False
    trace = many.data[0]
    codes = np.asarray(trace.marker.color)
    assert len(set(codes.tolist())) == MAX_LEGEND + 2 and trace.marker.cmin == 0 and trace.marker.cmax == MAX_LEGEND + 1
    # Each donor's code lands on its own stop of the stepped colour scale; the ids still travel per point.
    stops = {round(stop, 9) for stop, _ in trace.marker.colorscale}
    assert {round(code / (MAX_LEGEND + 1), 9) for code in codes.tolist()} <= stops
    assert list(trace.customdata) == list(range(MAX_LEGEND + 2))  # each point's row still travels


def test_explained_variance_curve_is_cumulative():
    fig = explained_variance(np.array([0.5, 0.3, 0.2]))
    np.testing.assert_allclose(fig.data[1].y, [50, 80, 100])


def test_big_maps_draw_their_webgl_layer_at_the_page_resolution():
    assert map_config(FULL_RES_BELOW - 1) == {}  # plotly.js's default: twice the resolution, crisp 7 px markers
    assert map_config(50_000) == {"plotGlPixelRatio": 1}


def test_spread_over_takes_rows_in_turn_from_each_tissue_then_slide():
    rows = pd.DataFrame({"tissue": ["Lung"] * 6 + ["Liver"] * 2, "sample_id": list("AAAABBCD"), "x": range(8)})
    shown = spread_over(rows, 5)
    assert shown["tissue"].tolist() == ["Lung", "Liver", "Lung", "Liver", "Lung"]
    assert shown["x"].tolist() == [0, 6, 4, 7, 1]  # Lung: slides A, B, A in turn; Liver: C, D
    assert spread_over(rows, 20)["x"].tolist() == [0, 6, 4, 7, 1, 5, 2, 3]
    assert spread_over(rows.drop(columns="tissue"), 3)["x"].tolist() == [0, 4, 6]  # slides only
    assert spread_over(rows[["x"]], 3)["x"].tolist() == [0, 1, 2]
