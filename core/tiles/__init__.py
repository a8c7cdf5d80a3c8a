"""Stage 2, tiles: slides -> a quality-checked, balanced tile index, and the training tile pack.

In: a Cohort's slides and TilingParams (tile size, magnification, per-slide quota, QC thresholds).
Out: a tile index (one row per tile: slide, coordinates, every QC metric, `reason` = first failed
QC stage or ""), cached by slide fingerprints and parameters; `read_tile(row)` reads its pixels from
the slide; `pack` decodes the training tiles once into a memory-mapped uint8 array.
QC stages, in order: pen, dirt, half_empty, blur, jpeg_size (`qc`). Tiles are coordinates, not JPEG
copies. `figures` draws the QC funnel and a slide's tiles over its thumbnail.

Contract:
- `build_tile_index(samples, params, ws, progress=None, workers=None) -> TileIndexResult(index, path,
  summary)`: quota mode by default (per slide, cells in a seeded random order QC'd in batches until the
  slide's quota has passed), `all_tiles` for the full grid. `progress(done, total, message)` moves within
  a slide too. A run expected to QC at most `run.INLINE_CELLS` cells stays in the calling process.
- Index columns: `sample_id, tissue, subject_id, slide_path, scene, level, x, y, read_size, tile_size`,
  the QC metrics, `passed_qc`, `reason` ("" or the first failed stage) and `selected` (balanced sampling).
  `read_size` is the level-0 box: 224 µm / MPP when the slide states it, else from the magnification.
- Caching: one part per slide (`parts`), keyed by the slide's fingerprint, the parameters that change
  pixels or decisions, the tissue's JPEG bar and CODE_VERSION (never by sample, donor or tissue name),
  saved after each batch, so a cohort index grows slide by slide and a cancelled run resumes. A
  DataError about a file is cached as that slide's error; any other failure is listed in
  `summary["transient"]` and retried by the next build.
- `dataset_tiling_params(ws, data_dir)`: the tiling a dataset uses (recorded by `tiles --data`);
  `find_tile_index` never tiles (pages).
"""

from core.base.lazy import lazy_exports

_EXPORTS = {
    "dataset_tiling_params": "index",
    "funnel_caption": "index",
    "read_tile": "index",
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, globals(), _EXPORTS)
