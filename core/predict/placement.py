"""Step 8: the slide's place on the reference slide map.

PCA map: the PCA of the reference slide embeddings (fitted as core.maps.reduce.pca fits it) transforms the new
slide exactly. UMAP map: the map's fitted UMAP, kept beside the cached coordinates (core.maps.reduce
`lookup_reducer`), transforms the slide's scores in the map's own PCA space (centre and axes fitted on the
reference slides). A UMAP map cached before reducers were kept has coordinates only: the slide is then placed
at the distance-weighted mean of its nearest reference slides' map coordinates, neighbours found in the map's
PCA space (what UMAP's own transform starts from before it optimises), and the note says so. t-SNE has no
transform for new points (issue 11: "PCA for t-SNE"): the slide is shown on the PCA map, and the note says so.
When no UMAP map is cached for these reference embeddings, the PCA map is shown and the note says so (a UMAP
would cost a numba compile and a fit). A reference that leaves the slide's donor out (reference.without_donor)
fits its PCA without that donor; its UMAP was fitted with them, so the slide is placed by its neighbours among
the other slides, and the map shows only those.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from core.base.config import Workspace
from core.maps.reduce import MapParams, lookup_map, lookup_reducer
from core.predict.reference import Reference

PLACE_NEIGHBOURS = 5


def _pca(values: np.ndarray, n_components: int, seed: int):
    from sklearn.decomposition import PCA  # after the embed step: torch is fully imported by then

    k = max(1, min(n_components, values.shape[0], values.shape[1]))
    return PCA(n_components=k, svd_solver="full", random_state=seed).fit(values)


def _neighbour_placement(coords: np.ndarray, ref_scores: np.ndarray, point_scores: np.ndarray) -> np.ndarray:
    distance = np.linalg.norm(ref_scores - point_scores, axis=1)
    near = np.argsort(distance, kind="stable")[:PLACE_NEIGHBOURS]
    weights = 1.0 / np.maximum(distance[near], 1e-9)
    return (coords[near] * weights[:, None]).sum(axis=0) / weights.sum()


def _umap_placement(ws: Workspace, reference: Reference, point: np.ndarray, params: MapParams
                    ) -> tuple[np.ndarray, np.ndarray, str, str] | None:
    """(map coords of the reference slides, the slide's (x, y), placement, note), or None when no UMAP map is
    cached. placement: "transform" (the kept UMAP's) or "neighbours" (an old map without its UMAP)."""
    cached = lookup_map(ws, reference.key, params)
    if cached is None or len(cached.coords) != len(reference.values) + len(reference.excluded_ids):
        return None
    coords = np.asarray(cached.coords, np.float64)
    reducer = lookup_reducer(ws, reference.key, params)
    why = "this UMAP map was cached without its fitted UMAP (computed before reducers were kept)"
    if reference.rows is not None:  # the map's UMAP was fitted with the left-out donor's slides
        coords = coords[reference.rows]
        reducer = None
        why = "the map's UMAP was fitted with this slide's donor, whom the reference leaves out"
    if reducer is not None and reducer.n_points == len(coords):
        try:
            xy = reducer.transform(np.asarray(point, np.float64)[None, :])[0].astype(np.float64)
        except Exception as exc:  # a kept model that cannot transform must not lose the prediction
            why = f"the kept UMAP could not place the slide ({type(exc).__name__}: {exc})"
        else:
            if np.isfinite(xy).all():
                note = (f"placed by the fitted UMAP's transform of the slide's {reducer.n_components} PCA "
                        "components (the map's own PCA of the reference slides)")
                return coords, xy, "transform", note
            why = "the kept UMAP placed the slide at a non-finite point"
    values = reference.values.astype(np.float32)
    model = _pca(values, params.pca_components, params.seed)
    xy = _neighbour_placement(coords, model.transform(values),
                              model.transform(np.asarray(point, np.float32)[None, :])[0])
    note = (f"approximate place: {why}, so the slide is at the distance-weighted mean of its {PLACE_NEIGHBOURS} "
            "nearest reference slides on the map (neighbours in its PCA space)")
    if reference.rows is None:
        note += ("; compute the slides UMAP map again (python -m core map --run RUN --level slides --method umap) "
                 "to keep its UMAP for an exact transform")
    return coords, xy, "neighbours", note


def place_on_map(ws: Workspace, reference: Reference, point: np.ndarray, method: str) -> dict[str, Any]:
    """{method, placement, note, reference: DataFrame(sample_id, tissue, x, y), point: (x, y)}.
    placement: "transform" (UMAP's), "neighbours" (approximate, old UMAP map) or "pca" (exact projection)."""
    note = ""
    placed = None
    if method == "umap":
        placed = _umap_placement(ws, reference, point, MapParams(method="umap"))
        if placed is None:
            note = ("no UMAP map of these reference slides is cached yet (Embeddings explorer): "
                    "shown on the PCA map")
    elif method == "tsne":
        note = ("t-SNE has no transform for a new slide: shown on the PCA map of the reference slides "
                "(the slide is projected exactly)")
    if placed is not None:
        coords, xy, placement, note = placed
    else:
        method, placement = "pca", "pca"
        params = MapParams(method="pca")
        values = reference.values.astype(np.float32)
        model = _pca(values, params.pca_components, params.seed)
        ref_scores = model.transform(values)
        point_scores = model.transform(np.asarray(point, np.float32)[None, :])[0]
        coords = np.zeros((len(values), 2))
        width = min(2, ref_scores.shape[1])
        coords[:, :width] = ref_scores[:, :width]
        xy = np.zeros(2)
        xy[:width] = point_scores[:width]
        note = note or "PCA of the reference slide embeddings; the slide is projected exactly"
    frame = pd.DataFrame({"sample_id": reference.sample_ids, "tissue": reference.tissues,
                          "x": coords[:, 0], "y": coords[:, 1]})
    return {"method": method, "placement": placement, "note": note, "reference": frame,
            "point": (float(xy[0]), float(xy[1]))}
