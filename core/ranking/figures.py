"""Plotly figures of the Gene rankings page: R² histograms with the tissue-only baseline, a gene's predicted
against observed expression, its per-tissue R², and two feature sources compared gene by gene."""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from core.base.style import LAYOUT, category_colour
from core.ranking.table import R2_BINS

HISTOGRAM_SERIES = (("r2", "embedding"), ("r2_tissue", "tissue only"), ("r2_random", "random weights"))


def r2_histograms(table: pd.DataFrame) -> go.Figure:
    """Genes per R² bin for the embedding, the tissue-only baseline and random weights (when ranked),
    clipped to the summary's bins [-0.5, 1]."""
    centres = (R2_BINS[:-1] + R2_BINS[1:]) / 2
    fig = go.Figure()
    for column, name in HISTOGRAM_SERIES:
        if column not in table:
            continue
        values = table[column].to_numpy(dtype=float)
        values = np.clip(values[~np.isnan(values)], R2_BINS[0], R2_BINS[-1])
        counts, _ = np.histogram(values, bins=R2_BINS)
        fig.add_trace(go.Bar(x=centres, y=counts, name=name, opacity=0.75 if column != "r2" else 1.0))
    fig.update_layout(title="Out-of-fold R² per gene (clipped to [-0.5, 1])", barmode="overlay", height=340,
                      bargap=0.05, **LAYOUT)
    fig.update_xaxes(title="R²")
    fig.update_yaxes(title="genes")
    return fig


def predicted_vs_observed(frame: pd.DataFrame, label: str, column: str = "predicted") -> go.Figure:
    """One point per sample: out-of-fold prediction against observed logTPM, coloured by tissue, y = x line."""
    fig = go.Figure()
    for i, (tissue, group) in enumerate(frame.groupby("tissue", sort=True)):
        fig.add_trace(go.Scattergl(
            x=group["observed"], y=group[column], mode="markers", name=str(tissue),
            marker={"size": 7, "color": category_colour(i)},
            customdata=np.column_stack([group["sample_id"], group["subject_id"]]),
            hovertemplate="%{customdata[0]}<br>donor %{customdata[1]}<br>observed %{x:.2f}<br>"
                          "predicted %{y:.2f}<extra>" + str(tissue) + "</extra>",
        ))
    both = pd.concat([frame["observed"], frame[column]]).astype(float)
    low, high = (float(both.min()), float(both.max())) if len(both) else (0.0, 1.0)
    fig.add_trace(go.Scatter(x=[low, high], y=[low, high], mode="lines", name="y = x",
                             line={"dash": "dot", "color": "grey"}))
    fig.update_layout(title=f"{label}: out-of-fold prediction against observed", height=460,
                      legend={"orientation": "h", "y": -0.28, "yanchor": "top"}, **LAYOUT)
    fig.update_xaxes(title="observed log2(1 + TPM)")
    fig.update_yaxes(title="predicted log2(1 + TPM)")
    return fig


def tissue_r2_bar(per_tissue: pd.DataFrame) -> go.Figure:
    """R² within each tissue: the embedding model and embedding + tissue."""
    fig = go.Figure()
    fig.add_trace(go.Bar(x=per_tissue["tissue"], y=per_tissue["r2"], name="embedding"))
    fig.add_trace(go.Bar(x=per_tissue["tissue"], y=per_tissue["r2_emb_tissue"], name="embedding + tissue"))
    low = np.nanmin(per_tissue[["r2", "r2_emb_tissue"]].to_numpy(dtype=float), initial=0.0)
    clipped = low < -1
    fig.update_layout(title="R² within each tissue" + (" (axis cut at -1)" if clipped else ""), barmode="group",
                      height=380, legend={"orientation": "h", "y": 1.1}, **LAYOUT)
    # A tissue of a few samples can score -100 and flatten the rest: the axis stops at -1.
    fig.update_yaxes(title="R² (within tissue)", range=[-1.05 if clipped else min(low, 0.0) - 0.05, 1.0])
    return fig


def compare_scatter(pairs: pd.DataFrame, label_a: str, label_b: str, column: str = "r2",
                    title: str = "R² per gene: A against B (green: B higher)",
                    names: tuple[str, str] = ("A", "B")) -> go.Figure:
    """R² of source A against source B, one point per gene, with the y = x line (above it: B better)."""
    a, b = pairs[f"{column}_a"].astype(float), pairs[f"{column}_b"].astype(float)
    fig = go.Figure()
    fig.add_trace(go.Scattergl(
        x=a, y=b, mode="markers", name="genes", marker={"size": 5, "color": np.where(b > a, "#2a9d8f", "#e76f51")},
        customdata=pairs[["symbol", "gene_id"]].to_numpy(), showlegend=False,
        hovertemplate=f"%{{customdata[0]}} (%{{customdata[1]}})<br>{names[0]} %{{x:.3f}}<br>{names[1]} %{{y:.3f}}"
                      "<extra></extra>",
    ))
    both = pd.concat([a, b])
    low, high = (float(both.min()), float(both.max())) if len(both) else (0.0, 1.0)
    fig.add_trace(go.Scatter(x=[low, high], y=[low, high], mode="lines", name="y = x", showlegend=False,
                             line={"dash": "dot", "color": "grey"}))
    fig.update_layout(title=title, height=460, **LAYOUT)
    fig.update_xaxes(title=f"{names[0]}: {label_a}")
    fig.update_yaxes(title=f"{names[1]}: {label_b}")
    return fig
