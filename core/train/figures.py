"""The Training page's figures: loss and accuracy curves, runs compared, the confusion matrix."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from core.base.style import styled


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
    return styled(fig, "Loss and accuracy per epoch")


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
    return styled(fig, f"{label}, runs compared")


def batch_loss(batches: pd.DataFrame) -> go.Figure:
    """Per-batch training loss, x in fractional epochs."""
    fig = go.Figure()
    if not batches.empty:
        x = batches["epoch"] - 1 + batches["batch"] / batches["batches"]
        fig.add_trace(go.Scatter(x=x, y=batches["loss"], mode="lines", name="batch loss", line={"width": 1}))
    fig.update_xaxes(title="epoch")
    fig.update_yaxes(title="loss")
    return styled(fig, "Per-batch training loss", height=300)


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
    return styled(fig, f"Normalized confusion matrix, test donors, {which}", height=max(420, 45 * len(classes) + 150))


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
    return styled(fig, "Training time per architecture (seconds per epoch)", height=320)
