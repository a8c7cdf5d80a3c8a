"""What pages read of a slide's tiles: its thumbnail with the tissue mask the tiler uses, cached."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

from core.base.cache import cache_key, cached, file_fingerprint, open_cache
from core.base.config import Workspace
from core.data.slides import open_slide
from core.tiles.index import tissue_mask


def slide_thumbnail(ws: Workspace, path: str | Path, max_side: int = 1024) -> dict[str, Any]:
    """Thumbnail, its level-0 scale, tissue mask (at the slide's real scale) and metadata, cached."""
    key = cache_key("slide_thumbnail", file_fingerprint(path), max_side)

    def compute() -> dict[str, Any]:
        with open_slide(path) as slide:
            thumb, scale = slide.thumbnail(max_side)
            info = slide.info
        meta = {k: v for k, v in asdict(info).items() if k != "levels"}
        meta["levels"] = len(info.levels)
        return {"thumb": thumb, "scale": scale, "mask": tissue_mask(thumb, um_per_px=scale * info.mpp),
                "meta": meta}

    with open_cache(ws) as cache:
        return cached(cache, key, compute)
