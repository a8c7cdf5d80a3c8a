"""One plot style for every stage's figures: margins, template and the categorical palette."""

from __future__ import annotations

import plotly.express as px
import plotly.graph_objects as go

LAYOUT = {"margin": {"l": 10, "r": 10, "t": 40, "b": 10}, "template": "plotly_white"}
PALETTE = px.colors.qualitative.Dark24 + px.colors.qualitative.Light24


def styled(fig: go.Figure, title: str, height: int = 380) -> go.Figure:
    """`fig` with the house layout, a title and a height."""
    fig.update_layout(title=title, height=height, **LAYOUT)
    return fig


def category_colour(i: int) -> str:
    """The i-th category's colour (the palette repeats past 48 categories)."""
    return PALETTE[i % len(PALETTE)]
