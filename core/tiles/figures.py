"""The tiling figures: the QC funnel, rejections per tissue, a slide's tiles over its thumbnail."""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.express as px
import plotly.graph_objects as go

from core.base.style import styled
from core.tiles.qc import QC_STAGES as QC_STAGE_ORDER


def qc_funnel(considered: int, rejected: dict[str, int]) -> go.Figure:
    """Tiles left after each QC stage, in the order the stages run."""
    stages = list(QC_STAGE_ORDER) + [s for s in rejected if s not in QC_STAGE_ORDER]
    labels, values, left = ["tissue tiles considered"], [considered], considered
    for stage in stages:
        left -= int(rejected.get(stage, 0))
        labels.append(f"after {stage}")
        values.append(left)
    fig = go.Figure(go.Funnel(y=labels, x=values, textinfo="value+percent initial"))
    return styled(fig, "QC funnel")


def rejections_per_tissue(index: pd.DataFrame) -> go.Figure:
    """Stacked bars of tiles rejected at each QC stage, per tissue."""
    rejected = index[~index["passed_qc"]]
    counts = rejected.groupby(["tissue", "reason"]).size().rename("tiles").reset_index()
    fig = px.bar(counts, y="tissue", x="tiles", color="reason", orientation="h",
                 category_orders={"reason": list(QC_STAGE_ORDER)})
    fig.update_yaxes(categoryorder="category descending", title=None)
    return styled(fig, "Tiles rejected per QC stage", height=max(380, 40 * counts["tissue"].nunique()))


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
    return styled(fig, "Tissue mask and tile grid", height=520)


def _tile_outcomes(tiles: pd.DataFrame) -> dict[str, pd.DataFrame]:
    if tiles.empty:
        return {}
    selected = tiles["selected"].astype(bool) if "selected" in tiles else pd.Series(False, index=tiles.index)
    passed = tiles["passed_qc"].astype(bool)
    groups = {"rejected": tiles[~passed], "kept": tiles[passed & ~selected], "selected": tiles[passed & selected]}
    return {name: group for name, group in groups.items() if len(group)}
