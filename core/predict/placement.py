"""Step 8: the slide's place on the reference slide map.

PCA map: the PCA of the reference slide embeddings (fitted as core.reduce.pca fits it) transforms the new
slide exactly. UMAP / t-SNE: the Explorer's cached map keeps coordinates, not the fitted reducer (openTSNE
and UMAP objects are large, version-bound pickles), so the slide is placed at the distance-weighted mean of
its nearest reference slides' map coordinates, neighbours found in the same PCA space the map was computed
from: what UMAP's own transform starts from before it optimises. When no such map is cached for these
reference embeddings, the PCA map is shown and the note says so (a UMAP would cost a numba compile).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from core.config import Workspace
from core.predict.reference import Reference
from core.reduce import MapParams, lookup_map

PLACE_NEIGHBOURS = 5


def _pca(values: np.ndarray, n_components: int, seed: int):
    from sklearn.decomposition import PCA  # after the embed step: torch is fully imported by then

    k = max(1, min(n_components, values.shape[0], values.shape[1]))
    return PCA(n_components=k, svd_solver="full", random_state=seed).fit(values)


def place_on_map(ws: Workspace, reference: Reference, point: np.ndarray, method: str) -> dict[str, Any]:
    """{method, note, reference: DataFrame(sample_id, tissue, x, y), point: (x, y)}."""
    params = MapParams(method=method)
    values = reference.values.astype(np.float32)
    model = _pca(values, params.pca_components, params.seed)
    ref_scores = model.transform(values)
    point_scores = model.transform(np.asarray(point, np.float32)[None, :])[0]
    note = ""
    coords = None
    if method != "pca":
        cached = lookup_map(ws, reference.key, params)
        if cached is not None and len(cached.coords) == len(values):
            coords = np.asarray(cached.coords, np.float64)
            distance = np.linalg.norm(ref_scores - point_scores, axis=1)
            near = np.argsort(distance, kind="stable")[:PLACE_NEIGHBOURS]
            weights = 1.0 / np.maximum(distance[near], 1e-9)
            xy = (coords[near] * weights[:, None]).sum(axis=0) / weights.sum()
            note = (f"placed at the distance-weighted mean of its {len(near)} nearest reference slides on the "
                    f"cached {method.upper()} map (neighbours in its PCA space)")
        else:
            note = (f"no {method.upper()} map of these reference slides is cached yet (Embeddings explorer): "
                    "shown on the PCA map")
            method = "pca"
    if coords is None:
        coords = np.zeros((len(values), 2))
        width = min(2, ref_scores.shape[1])
        coords[:, :width] = ref_scores[:, :width]
        xy = np.zeros(2)
        xy[:width] = point_scores[:width]
        note = note or "PCA of the reference slide embeddings; the slide is projected exactly"
    frame = pd.DataFrame({"sample_id": reference.sample_ids, "tissue": reference.tissues,
                          "x": coords[:, 0], "y": coords[:, 1]})
    return {"method": method, "note": note, "reference": frame, "point": (float(xy[0]), float(xy[1]))}
