"""Stage 4, embed: tile and slide embeddings from any feature source, and how well they separate tissues.

In: a tile index and a `FeatureSource` (a run's checkpoint at an epoch, random or ImageNet weights of
an architecture, a timm model from a local weights file). Out: cached tile embeddings (float32,
tiles x dim) and slide embeddings (the mean of a slide's tiles), keyed by the source's content and
the tiles' pixels; resumable when cancelled. `heads` applies a checkpoint's linear head to cached
embeddings (predicted tissue without a second pass). `separability`: silhouette and donor-held-out
kNN tissue accuracy, each beside its majority-class baseline. `jobs` spells the `embed` command.
"""

from core.base.lazy import lazy_exports

_EXPORTS = {
    "FeatureSource": "features",
    "checkpoint_epochs": "features",
    "epochs_to_score": "separability",
    "scored_epochs": "separability",
    "separation": "separability",
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, globals(), _EXPORTS)
