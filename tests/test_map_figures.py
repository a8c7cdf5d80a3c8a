"""core.map_figures: one trace per category with string ids in customdata, a colour scale for numbers."""

from __future__ import annotations

import numpy as np
import pandas as pd

from core.map_figures import HALF_WIDTH_TITLE, MAX_LEGEND, explained_variance, map_scatter, wrap_title


def _meta(n: int = 9) -> pd.DataFrame:
    ids = [f"S{i}" for i in range(n)]
    return pd.DataFrame({"id": [f"{s}:0:0" for s in ids], "sample_id": ids,
                         "tissue": ["Lung", "Liver", "Thyroid"] * (n // 3), "donor": [f"D{i}" for i in range(n)]})


def test_categories_become_traces_whose_customdata_holds_the_ids():
    coords = np.arange(18, dtype=float).reshape(9, 2)
    fig = map_scatter(coords, _meta(), "tissue")
    assert sorted(t.name for t in fig.data) == ["Liver", "Lung", "Thyroid"]
    assert all(t.type == "scattergl" for t in fig.data)
    lung = next(t for t in fig.data if t.name == "Lung")
    assert [row[0] for row in lung.customdata] == ["S0:0:0", "S3:0:0", "S6:0:0"]
    np.testing.assert_array_equal(lung.x, coords[[0, 3, 6], 0])  # each trace's own points
    # Hover shows sample and tissue: a tile's id starts with its sample id, so the sample needs no column.
    assert [list(row) for row in lung.customdata] == [["S0:0:0", "Lung"], ["S3:0:0", "Lung"], ["S6:0:0", "Lung"]]
    assert lung.hovertemplate.startswith("%{customdata[0]}<br>%{customdata[1]}")


def test_ids_that_do_not_name_their_sample_carry_the_sample_for_the_hover():
    meta = _meta().assign(id=[f"point{i}" for i in range(9)])
    lung = next(t for t in map_scatter(np.zeros((9, 2)), meta, "tissue").data if t.name == "Lung")
    assert [list(row) for row in lung.customdata][0] == ["point0", "Lung", "S0"]
    assert lung.hovertemplate.startswith("%{customdata[2]}<br>%{customdata[1]}")


def test_a_long_title_wraps_when_the_map_is_half_the_page_wide():
    title = "tiles · UMAP · run 20261129-012856-0ec8 epoch 30 (efficientnet_b0, 64 px, selected on validation)"
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
    assert [row[0] for row in trace.customdata] == meta["id"].tolist()


def test_explained_variance_curve_is_cumulative():
    fig = explained_variance(np.array([0.5, 0.3, 0.2]))
    np.testing.assert_allclose(fig.data[1].y, [50, 80, 100])
