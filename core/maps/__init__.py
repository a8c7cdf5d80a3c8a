"""Stage 5, maps: point sets (tiles, slides, genes, unified) -> PCA, UMAP or t-SNE coordinates, exports.

In: embeddings (core.embed) and a Cohort. `points` builds a PointSet per level (a float32 matrix,
ids, per-point metadata, a content key); `reduce` maps it (PCA first, then UMAP or t-SNE), cached by
content and parameters; `export` writes coordinates as CSV, the figure as HTML and the slide level as
AnnData .h5ad. `jobs` holds the map request and spells the `map` command; `figures` draws the maps.

Contract:
- `reduce.cached_map(ws, values, params, input_key=None, progress=None, keep_reducer=False)`: PCA cached
  by (input, components, seed), the map by its method's parameters; `lookup_map` never computes
  (pages). With `keep_reducer` (slides level: the `map` CLI, the tour) the fitted PCA + UMAP are kept
  under the map's key + `:reducer`, which the Predict page places a new slide with.
- `points.PointSet(level, ids, values, meta, key, label)`: `meta` has `id, sample_id, tissue,
  subject_id, sex, age_bracket, hardy_scale` (+ coordinates and QC metrics for tiles, `split` of a run).
  Unified: each block's PCA scaled to unit total variance, `weight` of the variance from images.
- `jobs.points_for(..., compute=False)` reads caches only (None when embeddings are missing);
  `launch_map` runs `python -m core map` (kind "map"). `reduce.start_warm_up` compiles UMAP's numba
  code in a side process at app start (off with HISTOGENE_WARMUP=0).
"""

from core.base.lazy import lazy_exports

_EXPORTS = {
    "MapParams": "reduce",
    "MapRequest": "jobs",
    "PointSet": "points",
    "QC_COLOUR_COLUMNS": "points",
    "gene_expression": "points",
    "genes_level": "points",
    "launch_map": "jobs",
    "lookup_map": "reduce",
    "pca": "reduce",
    "points_for": "jobs",
    "seeded_subset": "reduce",
    "slide_pca_points": "points",
    "start_warm_up": "reduce",
    "tile_index_path": "jobs",
    "sample_top_genes": "points",
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, globals(), _EXPORTS)
