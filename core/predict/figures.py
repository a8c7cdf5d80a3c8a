"""Plotly figures and display tables of the Predict page: tile heatmaps over the slide thumbnail, the QC outcome
of the slide's tiles, the slide on the reference map. Data in, Figure or DataFrame out (no streamlit).

Tile positions are level-0 pixels (x, y, read_size) and `scale` is level-0 pixels per thumbnail pixel, as in
core.tiles.figures.thumbnail_with_tiles. Tiles sit on a regular grid of step read_size, so a per-tile value becomes a
grid cell and one Heatmap trace (or one blended image) draws every tile of a GTEx-size slide.

A multi-scene file (CZI, SCN, some OME-TIFFs) has its tiles taken from every scene with tissue, each in its own
scene's coordinates, but the thumbnail is scene 0's: the heatmaps draw scene 0's tiles only (another scene's
would land on the wrong place), and `scene_statement` says how many tiles came from the other scenes."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from core.base.style import LAYOUT, category_colour

OVERLAY_ALPHA = (0.15, 0.7)  # a tile's tint from confidence 0 to 1: a doubtful tile lets the tissue show through
DRAWN_SCENE = 0  # the scene the prediction's thumbnail shows (core.predict.tiles.read_slide opens scene 0)


def on_drawn_scene(tiles: pd.DataFrame) -> np.ndarray:
    """Per row of `tiles`: whether it lies on the thumbnail's scene (every row when there is no scene column)."""
    if "scene" not in tiles:
        return np.ones(len(tiles), dtype=bool)
    return tiles["scene"].fillna(DRAWN_SCENE).astype(int).to_numpy() == DRAWN_SCENE


def scene_statement(tiles: pd.DataFrame, scenes: int | None = None) -> str | None:
    """For a file with several scenes: which scene the heatmaps draw and how many of the kept tiles came from
    the others (they count in the slide's prediction); None for a one-scene file."""
    kept = kept_tiles(tiles)
    other = kept[~on_drawn_scene(kept)]
    scenes = int(scenes or 1)
    if scenes <= 1 and other.empty:
        return None
    drawn = len(kept) - len(other)
    named = sorted({int(s) for s in other["scene"]}) if not other.empty else []
    text = (f"This file holds {max(scenes, 1 + len(named))} scenes; the heatmaps draw scene {DRAWN_SCENE} only "
            f"({drawn:,} of the {len(kept):,} kept tiles).")
    if named:
        where = f"scene {named[0]}" if len(named) == 1 else f"scenes {', '.join(map(str, named))}"
        text += (f" {len(other):,} kept tiles came from {where}: they count in the slide's predicted tissue and "
                 "expression but are not drawn.")
    else:
        text += " No tile came from the other scenes."
    return text


def tissue_colours(tissues: Sequence[str]) -> dict[str, str]:
    """One colour per tissue, in sorted order, so every figure of a prediction colours a tissue alike."""
    return {tissue: category_colour(i) for i, tissue in enumerate(sorted(set(map(str, tissues))))}


@dataclass(frozen=True)
class TileGrid:
    """Where each tile sits on a regular grid: column and row per tile, and the grid's origin and step in
    thumbnail pixels."""

    cols: np.ndarray
    rows: np.ndarray
    shape: tuple[int, int]  # (rows, cols)
    x0: float  # left edge of column 0, thumbnail px
    y0: float
    step: float  # tile side, thumbnail px


def tile_grid(tiles: pd.DataFrame, scale: float) -> TileGrid:
    """The grid of `tiles` (x, y, read_size in level-0 px) at thumbnail scale."""
    if tiles.empty:
        return TileGrid(np.zeros(0, int), np.zeros(0, int), (0, 0), 0.0, 0.0, 1.0)
    step = float(np.median(tiles["read_size"].to_numpy(dtype=float)))
    x = tiles["x"].to_numpy(dtype=float)
    y = tiles["y"].to_numpy(dtype=float)
    left, top = x.min(), y.min()
    cols = np.rint((x - left) / step).astype(int)
    rows = np.rint((y - top) / step).astype(int)
    return TileGrid(cols, rows, (int(rows.max()) + 1, int(cols.max()) + 1), left / scale, top / scale, step / scale)


def _grid_values(grid: TileGrid, values: np.ndarray, fill: float = np.nan) -> np.ndarray:
    z = np.full(grid.shape, fill, dtype=float)
    z[grid.rows, grid.cols] = values
    return z


def _thumbnail_figure(thumbnail: np.ndarray, title: str, height: int) -> go.Figure:
    fig = go.Figure(go.Image(z=thumbnail, hoverinfo="skip"))
    fig.update_xaxes(visible=False, range=[0, thumbnail.shape[1]])
    fig.update_yaxes(visible=False, range=[thumbnail.shape[0], 0], scaleanchor="x")
    fig.update_layout(title=title, height=height, **LAYOUT)
    return fig


def _heatmap(grid: TileGrid, z: np.ndarray, **trace) -> go.Heatmap:
    return go.Heatmap(z=z, x0=grid.x0 + grid.step / 2, dx=grid.step, y0=grid.y0 + grid.step / 2, dy=grid.step,
                      hoverongaps=False, **trace)


def kept_tiles(tiles: pd.DataFrame) -> pd.DataFrame:
    """The tiles that passed QC and were predicted (the ones the slide's answer is the mean of)."""
    passed = tiles["passed_qc"].astype(bool) if "passed_qc" in tiles else pd.Series(True, index=tiles.index)
    if "predicted_tissue" in tiles:  # "" (or NaN) for a tile that was not predicted
        passed &= tiles["predicted_tissue"].fillna("").astype(str) != ""
    return tiles[passed]


def tissue_overlay(thumbnail: np.ndarray, scale: float, tiles: pd.DataFrame, tissues: Sequence[str] = (),
                   height: int = 560) -> go.Figure:
    """Each kept tile of the thumbnail's scene tinted by its predicted tissue, more opaque the more confident the
    tile (alpha from OVERLAY_ALPHA); hover names the tissue and the confidence. `tissues` fixes the colours (the
    run's classes)."""
    kept = kept_tiles(tiles)
    kept = kept[on_drawn_scene(kept)]
    fig = _thumbnail_figure(_blend_tissues(thumbnail, scale, kept, tissues), "Predicted tissue per tile", height)
    if kept.empty:
        return fig
    grid = tile_grid(kept, scale)
    labels = kept["predicted_tissue"].astype(str).to_numpy()
    confidence = kept["confidence"].to_numpy(dtype=float)
    text = np.full(grid.shape, "", dtype=object)
    text[grid.rows, grid.cols] = [f"{t}<br>confidence {c:.0%}" for t, c in zip(labels, confidence, strict=True)]
    fig.add_trace(_heatmap(grid, _grid_values(grid, confidence), text=text, hovertemplate="%{text}<extra></extra>",
                           opacity=0.0, showscale=False, colorscale="Greys", name="tiles"))
    colours = tissue_colours([*tissues, *labels])
    counts = pd.Series(labels).value_counts()
    for tissue in sorted(counts.index):
        fig.add_trace(go.Scatter(x=[None], y=[None], mode="markers", name=f"{tissue} ({counts[tissue]})",
                                 marker={"size": 12, "symbol": "square", "color": colours[tissue]}))
    fig.update_layout(showlegend=True, legend={"orientation": "h", "yanchor": "top", "y": -0.02, "x": 0})
    return fig


def _blend_tissues(thumbnail: np.ndarray, scale: float, kept: pd.DataFrame, tissues: Sequence[str]) -> np.ndarray:
    """The thumbnail with each kept tile's area blended towards its tissue's colour (vectorised per pixel)."""
    image = np.asarray(thumbnail, dtype=np.float32)[..., :3].copy()
    if kept.empty:
        return image.astype(np.uint8)
    grid = tile_grid(kept, scale)
    labels = kept["predicted_tissue"].astype(str).to_numpy()
    colours = tissue_colours([*tissues, *labels])
    names = sorted(colours)
    rgb = np.array([[int(colours[n][i:i + 2], 16) for i in (1, 3, 5)] for n in names], dtype=np.float32)
    codes = _grid_values(grid, np.searchsorted(names, labels), fill=-1).astype(int)
    low, high = OVERLAY_ALPHA
    alpha = _grid_values(grid, low + (high - low) * kept["confidence"].to_numpy(dtype=float).clip(0, 1), fill=0.0)
    h, w = image.shape[:2]
    col = np.floor((np.arange(w) + 0.5 - grid.x0) / grid.step).astype(int)
    row = np.floor((np.arange(h) + 0.5 - grid.y0) / grid.step).astype(int)
    inside_c = (col >= 0) & (col < grid.shape[1])
    inside_r = (row >= 0) & (row < grid.shape[0])
    cells = np.full((h, w), -1, dtype=int)
    rr, cc = np.meshgrid(np.where(inside_r, row, 0), np.where(inside_c, col, 0), indexing="ij")
    inside = inside_r[:, None] & inside_c[None, :]
    cells[inside] = codes[rr[inside], cc[inside]]
    weight = np.where(cells >= 0, alpha[rr, cc], 0.0)[..., None].astype(np.float32)
    tint = rgb[np.clip(cells, 0, None)]
    return (image * (1 - weight) + tint * weight).clip(0, 255).astype(np.uint8)


def gene_overlay(thumbnail: np.ndarray, scale: float, tiles: pd.DataFrame, values: np.ndarray, label: str,
                 height: int = 560) -> go.Figure:
    """One gene's per-tile predicted log2(1 + TPM) as a heatmap over the thumbnail: `values` has one entry per
    row of `tiles` (NaN where a tile was rejected, as SlidePrediction.tile_gene_map gives them); tiles of
    other scenes than the thumbnail's are left out."""
    values = np.asarray(values, dtype=float)
    if len(values) != len(tiles):
        raise ValueError(f"{len(values)} tile values for {len(tiles)} tiles")
    fig = _thumbnail_figure(np.asarray(thumbnail)[..., :3], f"{label}: predicted log2(1 + TPM) per tile", height)
    shown = np.isfinite(values) & on_drawn_scene(tiles)
    if not shown.any():
        return fig
    grid = tile_grid(tiles[shown], scale)
    fig.add_trace(_heatmap(grid, _grid_values(grid, values[shown]), colorscale="Viridis", opacity=0.7, name=label,
                           # Below the slide, as the tissue map's legend: both slides then draw at one size.
                           colorbar={"title": {"text": "log2(1+TPM)", "side": "top"}, "orientation": "h",
                                     "x": 0, "xanchor": "left", "y": -0.02, "yanchor": "top", "len": 0.6,
                                     "thickness": 12},
                           hovertemplate=f"{label}: %{{z:.2f}}<extra></extra>"))
    return fig


def tile_outcomes_bar(tile_summary: dict) -> go.Figure:
    """Tiles considered, kept, and rejected by each QC reason."""
    rejected = {str(k): int(v) for k, v in (tile_summary.get("rejected") or {}).items() if int(v)}
    labels = ["kept", *(f"rejected: {reason}" for reason in sorted(rejected, key=rejected.get, reverse=True))]
    counts = [int(tile_summary.get("kept", 0)), *sorted(rejected.values(), reverse=True)]
    colours = ["#2ca02c", *(["#d62728"] * len(rejected))]
    fig = go.Figure(go.Bar(x=counts, y=labels, orientation="h", marker_color=colours, text=counts,
                           textposition="auto"))
    fig.update_yaxes(autorange="reversed")
    fig.update_layout(title=f"{int(tile_summary.get('considered', sum(counts))):,} tissue tiles considered",
                      height=max(200, 40 * len(labels) + 90), **LAYOUT)
    return fig


def top3_bar(top3: Sequence[dict], tissues: Sequence[str] = ()) -> go.Figure:
    """The three most probable tissues (mean of the tile probabilities)."""
    names = [str(item["tissue"]) for item in top3]
    probabilities = [float(item["probability"]) for item in top3]
    colours = tissue_colours([*tissues, *names])
    fig = go.Figure(go.Bar(x=probabilities, y=names, orientation="h", marker_color=[colours[n] for n in names],
                           text=[f"{p:.0%}" for p in probabilities], textposition="auto"))
    fig.update_xaxes(range=[0, 1], tickformat=".0%")
    fig.update_yaxes(autorange="reversed")
    fig.update_layout(title="Top 3 tissues", height=220, **LAYOUT)
    return fig


def reference_map(slide_map: dict, neighbours: pd.DataFrame, slide_name: str = "this slide",
                  height: int = 520) -> go.Figure:
    """The reference slides on their map (one colour per tissue), the nearest ones ringed, and this slide's
    place as a star."""
    reference = slide_map["reference"]
    colours = tissue_colours(reference["tissue"].astype(str))
    fig = go.Figure()
    for tissue, rows in reference.groupby(reference["tissue"].astype(str), sort=True):
        fig.add_trace(go.Scatter(x=rows["x"], y=rows["y"], mode="markers", name=tissue,
                                 marker={"size": 8, "color": colours[tissue]}, text=rows["sample_id"],
                                 hovertemplate="%{text}<br>" + tissue + "<extra></extra>"))
    near = reference[reference["sample_id"].isin(set(neighbours["sample_id"]))] if len(neighbours) else reference[:0]
    if len(near):
        fig.add_trace(go.Scatter(x=near["x"], y=near["y"], mode="markers", name="nearest reference slides",
                                 marker={"size": 16, "color": "rgba(0,0,0,0)", "line": {"width": 2, "color": "#222"}},
                                 hoverinfo="skip"))
    x, y = slide_map["point"]
    fig.add_trace(go.Scatter(x=[x], y=[y], mode="markers", name=slide_name,
                             marker={"size": 20, "symbol": "star", "color": "#ffd700", "line": {"width": 1.5,
                                                                                                 "color": "#000"}},
                             hovertemplate=f"{slide_name}<extra></extra>"))
    method = str(slide_map.get("method", "")).upper()
    fig.update_xaxes(showticklabels=False, title=None)
    fig.update_yaxes(showticklabels=False, title=None, scaleanchor="x")
    fig.update_layout(title=f"Reference slides ({method} of their embeddings) and this slide", height=height,
                      legend={"itemsizing": "constant"}, **LAYOUT)
    return fig


def expression_table(genes: pd.DataFrame, r2_threshold: float) -> pd.DataFrame:
    """The genes whose cross-validated R² clears `r2_threshold`, most reliable first, with display names."""
    shown = genes[genes["r2"].astype(float) >= r2_threshold].sort_values("r2", ascending=False)
    columns = {"symbol": "Gene", "gene_id": "Ensembl ID", "predicted": "Predicted log2(1+TPM)",
               "r2": "R² (reliability)", "ref_tissue": "Reference tissue", "ref_low": "Reference low",
               "ref_median": "Reference median", "ref_high": "Reference high"}
    return shown[[c for c in columns if c in shown]].rename(columns=columns).reset_index(drop=True)


def transcriptome_table(transcriptome: pd.DataFrame) -> pd.DataFrame:
    """The cluster-average whole-transcriptome estimate with display names, highest first."""
    columns = {"symbol": "Gene", "gene_id": "Ensembl ID", "predicted": "Cluster-average log2(1+TPM)"}
    shown = transcriptome.sort_values("predicted", ascending=False)
    return shown[[c for c in columns if c in shown]].rename(columns=columns).reset_index(drop=True)
