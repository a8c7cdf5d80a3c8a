"""Stage 2, tiles: slides -> a quality-checked, balanced tile index, and the training tile pack.

In: a Cohort's slides and TilingParams (tile size, magnification, per-slide quota, QC thresholds).
Out: a tile index (one row per tile: slide, coordinates, every QC metric, `reason` = first failed
QC stage or ""), cached by slide fingerprints and parameters; `read_tile(row)` reads its pixels from
the slide; `pack` decodes the training tiles once into a memory-mapped uint8 array.
QC stages, in order: pen, dirt, half_empty, blur, jpeg_size (`qc`). Tiles are coordinates, not JPEG
copies. `figures` draws the QC funnel and a slide's tiles over its thumbnail.
"""

from core.base.lazy import lazy_exports

_EXPORTS = {
    "dataset_tiling_params": "index",
    "funnel_caption": "index",
    "read_tile": "index",
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, globals(), _EXPORTS)
