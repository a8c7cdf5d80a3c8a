"""The Dataset overview's figures of the cohort: samples per tissue, demographics, the gene filter."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import plotly.express as px
import plotly.graph_objects as go

from core.base.style import styled


def per_tissue_counts_bar(per_tissue: pd.DataFrame) -> go.Figure:
    """Small multiples: one panel per count (slides, tiles, ...), each on its own scale, a row per tissue."""
    long = per_tissue.reset_index(names="tissue").melt(id_vars="tissue", var_name="count", value_name="n")
    fig = px.bar(long, y="tissue", x="n", color="count", facet_col="count", orientation="h", text="n")
    fig.update_xaxes(matches=None, showticklabels=False, title=None)
    fig.update_yaxes(categoryorder="category descending", title=None)
    fig.for_each_annotation(lambda a: a.update(text=a.text.split("=")[-1].replace("_", " ")))
    fig.update_layout(showlegend=False)
    return styled(fig, "Per tissue", height=max(380, 38 * len(per_tissue) + 80))


def gene_filter_funnel(funnel: Sequence[tuple[str, int]]) -> go.Figure:
    fig = go.Figure(go.Funnel(y=[step for step, _ in funnel], x=[n for _, n in funnel],
                              textinfo="value+percent initial"))
    return styled(fig, "Gene filters")


def log_tpm_histogram(log_tpm: np.ndarray, threshold: float | None = None, bins: int = 60) -> go.Figure:
    """Distribution of logTPM = log2(1 + TPM) values, with the expression threshold marked.

    Binned here, not in the browser: a go.Histogram ships every value (200,000) in the page's JSON.
    """
    values = np.asarray(log_tpm, dtype=np.float64).ravel()
    counts, edges = np.histogram(values[np.isfinite(values)], bins=bins)
    fig = go.Figure(go.Bar(x=(edges[:-1] + edges[1:]) / 2, y=counts, width=np.diff(edges), marker_color="#8e3b8f"))
    fig.update_layout(bargap=0)
    if threshold is not None:
        fig.add_vline(x=threshold, line_dash="dash", annotation_text=f"logTPM > {threshold:g}")
    fig.update_xaxes(title="log2(1 + TPM)")
    fig.update_yaxes(title="values")
    return styled(fig, "logTPM distribution")


def breakdown_bar(values: pd.Series, title: str) -> go.Figure:
    counts = values.fillna("unknown").astype(str).value_counts().sort_index()
    fig = px.bar(x=counts.index, y=counts.values, labels={"x": "", "y": "count"})
    return styled(fig, title, height=300)
