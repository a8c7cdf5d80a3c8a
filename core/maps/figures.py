"""Plotly figures of the Embeddings explorer: WebGL scatter maps, PCA variance, separation across epochs."""

from __future__ import annotations

import textwrap
from collections.abc import Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from core.base.style import LAYOUT, category_colour

# Beyond this many categories (e.g. donors of a 1,000-donor cohort) one legend entry each is useless:
# the colours cycle and the legend is hidden.
MAX_LEGEND = 40
# Characters of a title that fit a map drawn at half the page's width (two maps side by side).
HALF_WIDTH_TITLE = 48


def _hover(meta: pd.DataFrame) -> np.ndarray:
    """One hover string per point, "sample<br>tissue": strings cannot travel as typed arrays, and a flat
    array of them costs the browser far less than a nested [id, tissue] list per point did."""
    return (meta["sample_id"].astype(str) + "<br>" + meta["tissue"].astype(str)).to_numpy(dtype=object)


def selected_ids(points: list[dict], ids: Sequence[str]) -> list[str]:
    """The ids of a selection's points, from the row number each carries in its customdata (a selection's
    point index counts only within its trace: one trace per category). `ids`: the map's point ids, in the
    order of the rows given to `map_scatter`. Points without a valid row number are skipped."""
    chosen = []
    for point in points:
        row = point.get("customdata")
        if isinstance(row, int | float) and not isinstance(row, bool) and float(row).is_integer() \
                and 0 <= row < len(ids):
            chosen.append(str(ids[int(row)]))
    return list(dict.fromkeys(chosen))


# From this many points drawn, the WebGL layer is drawn at the page's own resolution. plotly.js draws it at
# twice the width and height by default: four times the pixels, which a browser without a GPU rasterizes in
# software on every switch (0.3-0.4 CPU s of the ~2 s a 50,000-point map took). The points are 2 px dots then.
FULL_RES_BELOW = 10_000


def spread_over(rows: pd.DataFrame, n: int, by: Sequence[str] = ("tissue", "sample_id")) -> pd.DataFrame:
    """Up to `n` rows taken in turn from each group of `by[0]`, and within it in turn from each group of the next
    key (groups in order of first appearance; missing keys are skipped). A selection's first rows often come
    from one slide of one tissue; these show as many tissues, then slides, as fit."""
    for key in reversed([key for key in by if key in rows]):  # innermost first: each pass keeps the order within
        group = pd.factorize(rows[key])[0]
        turn = rows.groupby(key, sort=False).cumcount().to_numpy()
        rows = rows.iloc[np.lexsort((group, turn))]
    return rows.head(n)


def map_config(n_points: int) -> dict:
    """The Plotly config of a map of `n_points` drawn points (st.plotly_chart's `config`)."""
    return {} if n_points < FULL_RES_BELOW else {"plotGlPixelRatio": 1}


def wrap_title(title: str, width: int) -> list[str]:
    """Lines of at most ~`width` characters, broken at " · " first and then at spaces."""
    lines: list[str] = []
    for part in title.split(" · "):
        if lines and len(lines[-1]) + 3 + len(part) <= width:
            lines[-1] = f"{lines[-1]} · {part}"
        else:
            lines.extend(textwrap.wrap(part, width, break_long_words=False, break_on_hyphens=False) or [part])
    return lines


def map_scatter(coords: np.ndarray, meta: pd.DataFrame, colour: str | None = None,
                values: np.ndarray | None = None, title: str = "", height: int = 560,
                marker_size: float | None = None, legend_below: bool = False,
                rows: np.ndarray | None = None) -> go.Figure:
    """Points at `coords` coloured by meta[colour] (or by `values`, e.g. a gene's expression): one
    Scattergl trace per category for text colours, one trace with a colour bar for numbers. `legend_below`
    (two maps side by side): the legend under the map, which keeps the map's width.

    Each point's customdata is its row number (`rows`: the points' rows in the full point set when `meta`
    is a drawn subset; default 0..n-1), which `selected_ids` maps back to ids. Coordinates, row numbers
    and colour values are numeric arrays, which reach the browser as base64 typed arrays; the hover's
    sample and tissue are one string per point."""
    coords = np.asarray(coords, dtype=np.float32)
    size = marker_size or (7 if len(coords) < 2_000 else 4 if len(coords) < 50_000 else 2)
    shown = values if values is not None else (meta[colour].to_numpy() if colour in meta else None)
    custom = np.arange(len(meta), dtype=np.int32) if rows is None else np.asarray(rows, dtype=np.int32)
    if len(custom) != len(meta):
        raise ValueError(f"rows: {len(custom)} row numbers for {len(meta)} points")
    hovertext, hover = _hover(meta), "%{hovertext}<extra></extra>"
    fig = go.Figure()
    series = pd.Series(shown) if shown is not None else None
    # Numbers (a gene, a QC metric) get a colour scale; text and flags get one trace per category.
    numeric = series is not None and pd.api.types.is_numeric_dtype(series) and not pd.api.types.is_bool_dtype(series)
    if shown is None or numeric:
        marker: dict = {"size": size}
        if numeric:
            marker.update(color=np.asarray(shown, dtype=float), colorscale="Viridis", showscale=True,
                          colorbar={"title": {"text": colour or ""}})
        fig.add_trace(go.Scattergl(x=coords[:, 0], y=coords[:, 1], mode="markers", marker=marker,
                                   customdata=custom, hovertext=hovertext, hovertemplate=hover, name="points",
                                   showlegend=False))
    else:
        labels = pd.Series(shown).fillna("").astype(str).replace("", "(none)").to_numpy()
        codes, categories = pd.factorize(labels, sort=True)
        colours = [category_colour(i) for i in range(len(categories))]
        if len(categories) > MAX_LEGEND:
            # Hundreds of donors: one trace, each point's category code through a stepped colour scale (a
            # numeric array ships as compact binary; hundreds of traces cost seconds to build and draw).
            k = len(categories) - 1
            scale = [[i / k, colour] for i, colour in enumerate(colours)]
            fig.add_trace(go.Scattergl(
                x=coords[:, 0], y=coords[:, 1], mode="markers", name=colour or "points", showlegend=False,
                marker={"size": size, "color": codes.astype(np.int32), "colorscale": scale, "cmin": 0, "cmax": k},
                customdata=custom, hovertext=hovertext, hovertemplate=hover,
            ))
        else:
            order = np.argsort(codes, kind="stable")  # rows of each category, found in one pass
            bounds = np.concatenate([[0], np.cumsum(np.bincount(codes, minlength=len(categories)))])
            for i, category in enumerate(categories):
                members = order[bounds[i]:bounds[i + 1]]
                fig.add_trace(go.Scattergl(
                    x=coords[members, 0], y=coords[members, 1], mode="markers", name=str(category),
                    marker={"size": size, "color": colours[i]}, customdata=custom[members],
                    hovertext=hovertext[members], hovertemplate=hover,
                ))
        fig.update_layout(showlegend=len(categories) <= MAX_LEGEND)
    legend = {"itemsizing": "constant"}
    lines = [title]
    if legend_below:
        legend.update(orientation="h", yanchor="top", y=-0.02, xanchor="left", x=0)
        lines = wrap_title(title, HALF_WIDTH_TITLE)  # Plotly cuts a title at the plot's edge, never wraps it
    fig.update_layout(title={"text": "<br>".join(lines), "font": {"size": 14 if len(lines) > 1 else 17}},
                      height=height + (120 if legend_below else 0), dragmode="lasso", legend=legend, **LAYOUT)
    fig.update_layout(margin={**LAYOUT["margin"], "t": 22 + 18 * len(lines)})
    fig.update_xaxes(showticklabels=False, title=None)
    fig.update_yaxes(showticklabels=False, title=None, scaleanchor="x")
    return fig


def explained_variance(ratio: np.ndarray) -> go.Figure:
    """Per-component and cumulative share of variance of the PCA the map starts from."""
    ratio = np.asarray(ratio, dtype=float)
    k = np.arange(1, len(ratio) + 1)
    fig = go.Figure()
    fig.add_trace(go.Bar(x=k, y=ratio * 100, name="per component"))
    fig.add_trace(go.Scatter(x=k, y=np.cumsum(ratio) * 100, name="cumulative", mode="lines+markers"))
    fig.update_layout(title="PCA: explained variance (%)", height=260, **LAYOUT)
    fig.update_xaxes(title="component")
    fig.update_yaxes(range=[0, 100])
    return fig


_LEVEL_COLOURS = {"slides": "#1f77b4", "tiles": "#d62728"}


def separation_by_epoch(scores: pd.DataFrame) -> go.Figure:
    """Two panels over a run's epochs: kNN tissue accuracy (donors held out) and silhouette by tissue, each
    for slides and tiles, on the slides of the run's held-out donors (validation + test) when the table has
    held_out_slides. The trained checkpoints are solid lines; the same architecture with random weights
    (epoch 0 of the table) is a dashed line of the same colour across all epochs, side by side with them; the
    checkpoints' score on their own training donors is a dotted line, labelled apart. The classifier's
    validation and test accuracy share the accuracy panel (grey), with the commonest-tissue baseline dotted."""
    from plotly.subplots import make_subplots

    held_out = "held_out_slides" in scores and scores["held_out_slides"].notna().any()
    titles = ("kNN tissue accuracy (donors held out)", "Silhouette by tissue")
    if held_out:
        slides = int(scores["held_out_slides"].dropna().max())
        titles = (f"kNN tissue accuracy, held-out donors ({slides} slides)", "Silhouette by tissue, held-out donors")
    fig = make_subplots(rows=1, cols=2, horizontal_spacing=0.08, subplot_titles=titles)
    trained = scores[scores["source"] != "random"].sort_values("epoch") if "source" in scores else scores
    random = scores[scores["source"] == "random"] if "source" in scores else scores.iloc[:0]
    span = [1, max(int(trained["epoch"].max()), 1)] if len(trained) else [0, 1]
    panels = ((1, "knn_accuracy", "tile_knn_accuracy"), (2, "silhouette", "tile_silhouette"))
    for col, slide_column, tile_column in panels:
        for level, column in (("slides", slide_column), ("tiles", tile_column)):
            colour, first = _LEVEL_COLOURS[level], col == 1
            if column in trained and trained[column].notna().any():
                fig.add_trace(go.Scatter(x=trained["epoch"], y=trained[column], mode="lines+markers",
                                         name=f"{level}: trained", legendgroup=f"{level}-trained",
                                         showlegend=first, line={"color": colour}), row=1, col=col)
            if column in random and random[column].notna().any():
                value = float(random[column].iloc[0])
                fig.add_trace(go.Scatter(x=span, y=[value, value], mode="lines", name=f"{level}: random weights",
                                         legendgroup=f"{level}-random", showlegend=first,
                                         line={"color": colour, "dash": "dash"},
                                         hovertemplate=f"random weights: {value:.3f}<extra>{level}</extra>"),
                              row=1, col=col)
            fit = f"training_{column}"
            if held_out and fit in trained and trained[fit].notna().any():
                fig.add_trace(go.Scatter(x=trained["epoch"], y=trained[fit], mode="lines+markers",
                                         name=f"{level}: training donors (fit, not separation)",
                                         legendgroup=f"{level}-training", showlegend=first, opacity=0.6,
                                         line={"color": colour, "dash": "dot"}, marker={"size": 4}),
                              row=1, col=col)
    for column, name, dash in (("val_acc", "classifier validation accuracy", "dashdot"),
                               ("test_acc", "classifier test accuracy", None)):
        if column in trained and trained[column].notna().any():
            fig.add_trace(go.Scatter(x=trained["epoch"], y=trained[column], mode="lines+markers", name=name,
                                     line={"color": "#7f7f7f", "dash": dash}, marker={"size": 4}), row=1, col=1)
    if "chance_accuracy" in scores and scores["chance_accuracy"].notna().any():
        chance = float(scores["chance_accuracy"].dropna().iloc[0])
        fig.add_trace(go.Scatter(x=span, y=[chance, chance], mode="lines", name="baseline: commonest tissue",
                                 line={"color": "#bcbd22", "dash": "dot"}), row=1, col=1)
    title = "Tissue separation across epochs: trained (solid) against random weights (dashed)"
    if held_out:
        title = ("Tissue separation on held-out donors: trained (solid), random weights (dashed), "
                 "training donors (dotted)")
    fig.update_layout(title=title,
                      height=400, legend={"orientation": "h", "y": -0.22},
                      **{**LAYOUT, "margin": {"l": 10, "r": 10, "t": 80, "b": 10}})
    fig.update_xaxes(title="epoch")
    fig.update_yaxes(range=[0, 1.02], row=1, col=1)
    return fig
