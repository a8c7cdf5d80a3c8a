"""Stage 5, maps: point sets (tiles, slides, genes, unified) -> PCA, UMAP or t-SNE coordinates, exports.

In: embeddings (core.embed) and a Cohort. `points` builds a PointSet per level (a float32 matrix,
ids, per-point metadata, a content key); `reduce` maps it (PCA first, then UMAP or t-SNE), cached by
content and parameters; `export` writes coordinates as CSV, the figure as HTML and the slide level as
AnnData .h5ad. `jobs` holds the map request and spells the `map` command; `figures` draws the maps.
"""

from core.base.lazy import lazy_exports

_EXPORTS = {
    "MapParams": "reduce",
    "MapRequest": "jobs",
    "PointSet": "points",
    "QC_COLUMNS": "points",
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
    "top_genes": "points",
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, globals(), _EXPORTS)
