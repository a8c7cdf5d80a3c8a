"""Plotly figures of the Embeddings explorer: WebGL scatter maps, PCA variance, separation across epochs."""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.express as px
import plotly.graph_objects as go

_LAYOUT = {"margin": {"l": 10, "r": 10, "t": 40, "b": 10}, "template": "plotly_white"}
# Beyond this many categories (e.g. donors of a 1,000-donor cohort) one legend entry each is useless:
# the colours cycle and the legend is hidden.
MAX_LEGEND = 40
_PALETTE = px.colors.qualitative.Dark24 + px.colors.qualitative.Light24


def _hover(meta: pd.DataFrame) -> tuple[np.ndarray, str]:
    """customdata columns (string ids first: a selection's point index only counts within its trace) and
    the hover template showing sample and tissue."""
    custom = np.column_stack([meta["id"].astype(str), meta["sample_id"].astype(str), meta["tissue"].astype(str)])
    return custom, "%{customdata[1]}<br>%{customdata[2]}<extra></extra>"


def map_scatter(coords: np.ndarray, meta: pd.DataFrame, colour: str | None = None,
                values: np.ndarray | None = None, title: str = "", height: int = 560,
                marker_size: float | None = None) -> go.Figure:
    """Points at `coords` coloured by meta[colour] (or by `values`, e.g. a gene's expression): one
    Scattergl trace per category for text colours, one trace with a colour bar for numbers."""
    coords = np.asarray(coords)
    size = marker_size or (7 if len(coords) < 2_000 else 4 if len(coords) < 50_000 else 2)
    shown = values if values is not None else (meta[colour].to_numpy() if colour in meta else None)
    custom, hover = _hover(meta)
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
                                   customdata=custom, hovertemplate=hover, name="points", showlegend=False))
    else:
        labels = pd.Series(shown).fillna("").astype(str).replace("", "(none)").to_numpy()
        categories = sorted(pd.unique(labels))
        for i, category in enumerate(categories):
            rows = labels == category
            fig.add_trace(go.Scattergl(
                x=coords[rows, 0], y=coords[rows, 1], mode="markers", name=category,
                marker={"size": size, "color": _PALETTE[i % len(_PALETTE)]},
                customdata=custom[rows], hovertemplate=hover,
            ))
        fig.update_layout(showlegend=len(categories) <= MAX_LEGEND)
    fig.update_layout(title=title, height=height, dragmode="lasso", legend={"itemsizing": "constant"}, **_LAYOUT)
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
    fig.update_layout(title="PCA: explained variance (%)", height=260, **_LAYOUT)
    fig.update_xaxes(title="component")
    fig.update_yaxes(range=[0, 100])
    return fig


def separation_across_epochs(scores: pd.DataFrame) -> go.Figure:
    """Silhouette and kNN tissue accuracy per epoch (random weights at epoch 0), with test accuracy and
    the commonest-tissue baseline when present."""
    fig = go.Figure()
    series = (("knn_accuracy", "kNN tissue accuracy (donors held out)"), ("silhouette", "silhouette by tissue"),
              ("test_acc", "classifier test accuracy"), ("chance_accuracy", "baseline: commonest tissue"))
    for column, name in series:
        if column in scores and scores[column].notna().any():
            dash = "dot" if column == "chance_accuracy" else None
            fig.add_trace(go.Scatter(x=scores["epoch"], y=scores[column], name=name, mode="lines+markers",
                                     line={"dash": dash}))
    fig.update_layout(title="Tissue separation across epochs (epoch 0 = random weights)", height=320, **_LAYOUT)
    fig.update_xaxes(title="epoch")
    return fig
