"""Plotly figure builders: data in, Figure out (testable without a browser)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import plotly.express as px
import plotly.graph_objects as go

from core.tiles.qc import QC_STAGES as QC_STAGE_ORDER

_LAYOUT = {"margin": {"l": 10, "r": 10, "t": 40, "b": 10}, "template": "plotly_white"}


def _style(fig: go.Figure, title: str, height: int = 380) -> go.Figure:
    fig.update_layout(title=title, height=height, **_LAYOUT)
    return fig


def per_tissue_counts_bar(per_tissue: pd.DataFrame) -> go.Figure:
    """Small multiples: one panel per count (slides, tiles, ...), each on its own scale, a row per tissue."""
    long = per_tissue.reset_index(names="tissue").melt(id_vars="tissue", var_name="count", value_name="n")
    fig = px.bar(long, y="tissue", x="n", color="count", facet_col="count", orientation="h", text="n")
    fig.update_xaxes(matches=None, showticklabels=False, title=None)
    fig.update_yaxes(categoryorder="category descending", title=None)
    fig.for_each_annotation(lambda a: a.update(text=a.text.split("=")[-1].replace("_", " ")))
    fig.update_layout(showlegend=False)
    return _style(fig, "Per tissue", height=max(380, 38 * len(per_tissue) + 80))


def qc_funnel(considered: int, rejected: dict[str, int]) -> go.Figure:
    """Tiles left after each QC stage, in the order the stages run."""
    stages = list(QC_STAGE_ORDER) + [s for s in rejected if s not in QC_STAGE_ORDER]
    labels, values, left = ["tissue tiles considered"], [considered], considered
    for stage in stages:
        left -= int(rejected.get(stage, 0))
        labels.append(f"after {stage}")
        values.append(left)
    fig = go.Figure(go.Funnel(y=labels, x=values, textinfo="value+percent initial"))
    return _style(fig, "QC funnel")


def rejections_per_tissue(index: pd.DataFrame) -> go.Figure:
    """Stacked bars of tiles rejected at each QC stage, per tissue."""
    rejected = index[~index["passed_qc"]]
    counts = rejected.groupby(["tissue", "reason"]).size().rename("tiles").reset_index()
    fig = px.bar(counts, y="tissue", x="tiles", color="reason", orientation="h",
                 category_orders={"reason": list(QC_STAGE_ORDER)})
    fig.update_yaxes(categoryorder="category descending", title=None)
    return _style(fig, "Tiles rejected per QC stage", height=max(380, 40 * counts["tissue"].nunique()))


def gene_filter_funnel(funnel: Sequence[tuple[str, int]]) -> go.Figure:
    fig = go.Figure(go.Funnel(y=[step for step, _ in funnel], x=[n for _, n in funnel],
                              textinfo="value+percent initial"))
    return _style(fig, "Gene filters")


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
    return _style(fig, "logTPM distribution")


def breakdown_bar(values: pd.Series, title: str) -> go.Figure:
    counts = values.fillna("unknown").astype(str).value_counts().sort_index()
    fig = px.bar(x=counts.index, y=counts.values, labels={"x": "", "y": "count"})
    return _style(fig, title, height=300)


def thumbnail_with_tiles(thumb: np.ndarray, scale: float, tiles: pd.DataFrame,
                         mask: np.ndarray | None = None) -> go.Figure:
    """Slide thumbnail with the tissue mask tinted and each tile outlined by its QC outcome.

    `scale` is level-0 pixels per thumbnail pixel; tile x, y, read_size are level-0 pixels.
    """
    image = thumb.astype(np.float32)
    if mask is not None and mask.shape[:2] == thumb.shape[:2]:
        tint = np.array([60, 180, 75], dtype=np.float32)
        image[mask] = 0.8 * image[mask] + 0.2 * tint
    fig = px.imshow(image.clip(0, 255).astype(np.uint8))
    colours = {"kept": "#1f77b4", "selected": "#2ca02c", "rejected": "#d62728"}
    for outcome, group in _tile_outcomes(tiles).items():
        xs, ys = [], []
        for row in group.itertuples():
            x0, y0 = row.x / scale, row.y / scale
            x1, y1 = x0 + row.read_size / scale, y0 + row.read_size / scale
            xs += [x0, x1, x1, x0, x0, None]
            ys += [y0, y0, y1, y1, y0, None]
        fig.add_trace(go.Scatter(x=xs, y=ys, mode="lines", name=f"{outcome} ({len(group)})",
                                 line={"color": colours[outcome], "width": 1}, hoverinfo="skip"))
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False)
    fig.update_layout(legend={"orientation": "h", "y": -0.05})
    return _style(fig, "Tissue mask and tile grid", height=520)


def _tile_outcomes(tiles: pd.DataFrame) -> dict[str, pd.DataFrame]:
    if tiles.empty:
        return {}
    selected = tiles["selected"].astype(bool) if "selected" in tiles else pd.Series(False, index=tiles.index)
    passed = tiles["passed_qc"].astype(bool)
    groups = {"rejected": tiles[~passed], "kept": tiles[passed & ~selected], "selected": tiles[passed & selected]}
    return {name: group for name, group in groups.items() if len(group)}


def _epoch_dtick(*frames: pd.DataFrame) -> int:
    """Whole-epoch ticks, at most about 15 of them (30 labelled epochs overlapped into a smear)."""
    last = max((int(f["epoch"].max()) for f in frames if not f.empty), default=1)
    return max(1, -(-last // 15))


def training_curves(epochs: pd.DataFrame, run_label: str | None = None) -> go.Figure:
    """Per-epoch train, validation and test loss and accuracy on one chart (two y axes), as in the GTEx study."""
    fig = go.Figure()
    _add_epoch_traces(fig, epochs, prefix=f"{run_label} " if run_label else "")
    fig.update_layout(yaxis={"title": "loss"},
                      yaxis2={"title": "accuracy", "overlaying": "y", "side": "right", "range": [0, 1],
                              "autorange": False, "tickmode": "linear", "tick0": 0, "dtick": 0.2,
                              "tickformat": ".0%", "showgrid": False},
                      xaxis={"title": "epoch", "dtick": _epoch_dtick(epochs)}, legend={"orientation": "h", "y": -0.25})
    return _style(fig, "Loss and accuracy per epoch")


def _add_epoch_traces(fig: go.Figure, epochs: pd.DataFrame, prefix: str = "", colour: str | None = None) -> None:
    if epochs.empty:
        return
    for split, dash in (("train", "solid"), ("val", "dot"), ("test", "dash")):
        if f"{split}_acc" not in epochs or epochs[f"{split}_acc"].isna().all():
            continue  # runs saved before validation existed
        line = {"dash": dash, **({"color": colour} if colour else {})}
        fig.add_trace(go.Scatter(x=epochs["epoch"], y=epochs[f"{split}_loss"], name=f"{prefix}{split} loss",
                                 mode="lines+markers", line=line))
        fig.add_trace(go.Scatter(x=epochs["epoch"], y=epochs[f"{split}_acc"], name=f"{prefix}{split} acc",
                                 mode="lines+markers", yaxis="y2", line={**line, "width": 3},
                                 marker={"symbol": "diamond"}))


# Per-epoch metrics as people name them; accuracies are fractions shown as percent.
EPOCH_METRIC_LABELS = {
    "test_acc": "Test accuracy (held-out donors)", "train_acc": "Training accuracy",
    "test_loss": "Test loss", "train_loss": "Training loss",
    "val_acc": "Validation accuracy (selects the epoch)", "val_loss": "Validation loss",
}


def runs_overlay(epochs_by_run: dict[str, pd.DataFrame], metric: str = "test_acc") -> go.Figure:
    """One metric per epoch for several runs, overlaid."""
    fig = go.Figure()
    for run_id, epochs in epochs_by_run.items():
        if not epochs.empty:
            fig.add_trace(go.Scatter(x=epochs["epoch"], y=epochs[metric], name=run_id, mode="lines+markers"))
    label = EPOCH_METRIC_LABELS.get(metric, metric)
    fig.update_xaxes(title="epoch", dtick=_epoch_dtick(*epochs_by_run.values()))
    if metric.endswith("_acc"):
        fig.update_yaxes(title=label, tickformat=".0%", range=[0, 1.02])
    else:
        fig.update_yaxes(title=label, rangemode="tozero")
    fig.update_layout(legend={"orientation": "h", "y": -0.25})
    return _style(fig, f"{label}, runs compared")


def batch_loss(batches: pd.DataFrame) -> go.Figure:
    """Per-batch training loss, x in fractional epochs."""
    fig = go.Figure()
    if not batches.empty:
        x = batches["epoch"] - 1 + batches["batch"] / batches["batches"]
        fig.add_trace(go.Scatter(x=x, y=batches["loss"], mode="lines", name="batch loss", line={"width": 1}))
    fig.update_xaxes(title="epoch")
    fig.update_yaxes(title="loss")
    return _style(fig, "Per-batch training loss", height=300)


def confusion_heatmap(confusion: np.ndarray, classes: Sequence[str], which: str = "latest epoch") -> go.Figure:
    """Row-normalized confusion matrix (true rows, predicted columns) with per-class accuracy; `which` names the
    epoch in the title."""
    counts = np.asarray(confusion, dtype=float)
    if len(classes) != len(counts):  # a config without (or with other) class names: number them
        classes = [f"class {i}" for i in range(len(counts))]
    totals = counts.sum(axis=1, keepdims=True)
    normalized = np.divide(counts, totals, out=np.zeros_like(counts), where=totals > 0)
    labels = [f"{name} ({normalized[i, i]:.0%})" for i, name in enumerate(classes)]
    fig = go.Figure(go.Heatmap(z=normalized, x=list(classes), y=labels, zmin=0, zmax=1, colorscale="Purples",
                               text=np.round(normalized, 2), texttemplate="%{text}",
                               hovertemplate="true %{y}<br>predicted %{x}<br>%{z:.2f}<extra></extra>"))
    fig.update_yaxes(autorange="reversed", title="true tissue (per-class accuracy)")
    fig.update_xaxes(title="predicted tissue", tickangle=35)
    return _style(fig, f"Normalized confusion matrix, test donors, {which}", height=max(420, 45 * len(classes) + 150))


def seconds_per_epoch_by_arch(runs: pd.DataFrame) -> go.Figure:
    """Training time per epoch for each architecture, as the study compared them: a bar at the median
    over runs, labelled with it and the number of runs, and each run as a point."""
    fig = go.Figure()
    by_arch = runs.groupby("arch")["seconds_per_epoch"].agg(["median", "count"]).sort_values("median")
    fig.add_trace(go.Bar(
        x=by_arch.index, y=by_arch["median"], name="median over runs", marker_color="#9ecae1", width=0.4,
        text=[f"{m:.1f} s ({n} run{'s' if n != 1 else ''})" for m, n in zip(by_arch["median"], by_arch["count"],
                                                                            strict=True)],
        textposition="outside",
    ))
    fig.add_trace(go.Scatter(x=runs["arch"], y=runs["seconds_per_epoch"], mode="markers", name="run",
                             marker={"color": "#08519c", "size": 8}, text=runs.get("run_id")))
    fig.update_yaxes(title="seconds per epoch", rangemode="tozero")
    fig.update_xaxes(title=None, categoryorder="array", categoryarray=list(by_arch.index))
    fig.update_layout(showlegend=False)
    return _style(fig, "Training time per architecture (seconds per epoch)", height=320)
