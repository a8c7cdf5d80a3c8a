"""Step 4-5: the slide's tissue from its tiles (the classifier's own head on the penultimate features) and
a warning when the slide is unlike every reference slide."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from core.predict.reference import Reference, reference_nn_distances

# The slide is "unlike the reference" when it is farther from its nearest reference slide than this
# quantile of the reference slides' own nearest-neighbour distances.
OOD_QUANTILE = 0.99
LOW_CONFIDENCE = 0.5  # a top tissue below this probability is reported as uncertain
FEW_TILES = 10


@dataclass
class TissueCall:
    probabilities: np.ndarray  # (tiles, classes) softmax per kept tile
    slide_probabilities: np.ndarray  # (classes,) mean over tiles
    classes: list[str]
    tissue: str
    top3: list[dict]
    nearest_distance: float
    ood_threshold: float
    warnings: list[str]


def softmax_rows(values: np.ndarray, weight: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """Class probabilities per row: softmax of the linear head's logits."""
    logits = np.asarray(values, np.float32) @ weight.T.astype(np.float32) + bias.astype(np.float32)
    logits -= logits.max(axis=1, keepdims=True)
    probs = np.exp(logits)
    return probs / probs.sum(axis=1, keepdims=True)


def call_tissue(tile_values: np.ndarray, weight: np.ndarray, bias: np.ndarray, classes: list[str],
                reference: Reference) -> TissueCall:
    """Mean of the tiles' probabilities; top 3; the out-of-distribution and confidence warnings."""
    probs = softmax_rows(tile_values, weight, bias)
    slide = probs.mean(axis=0, dtype=np.float64)
    order = np.argsort(-slide, kind="stable")
    top3 = [{"tissue": classes[i], "probability": round(float(slide[i]), 4)} for i in order[:3]]
    notes = []
    point = np.asarray(tile_values, np.float64).mean(axis=0)
    distance = float(np.linalg.norm(reference.values.astype(np.float64) - point, axis=1).min())
    threshold = float(np.quantile(reference_nn_distances(reference.values), OOD_QUANTILE))
    if distance > threshold:
        notes.append(f"this slide is unlike the reference: {distance:.3g} from the nearest reference slide in "
                     f"embedding space, farther than {OOD_QUANTILE:.0%} of reference slides are from their nearest "
                     f"neighbour ({threshold:.3g}); the prediction may not be trustworthy")
    if slide[order[0]] < LOW_CONFIDENCE:
        notes.append(f"low confidence: the top tissue has probability {slide[order[0]]:.2f}")
    if len(tile_values) < FEW_TILES:
        notes.append(f"only {len(tile_values)} tiles passed QC: the prediction rests on little tissue")
    return TissueCall(probs, slide, list(classes), classes[order[0]], top3, distance, threshold, notes)
