"""Stage 4, embed: tile and slide embeddings from any feature source, and how well they separate tissues.

In: a tile index and a `FeatureSource` (a run's checkpoint at an epoch, random or ImageNet weights of
an architecture, a timm model from a local weights file). Out: cached tile embeddings (float32,
tiles x dim) and slide embeddings (the mean of a slide's tiles), keyed by the source's content and
the tiles' pixels; resumable when cancelled. `heads` applies a checkpoint's linear head to cached
embeddings (predicted tissue without a second pass). `separability`: silhouette and donor-held-out
kNN tissue accuracy, each beside its majority-class baseline. `jobs` spells the `embed` command.

Contract:
- `compute.tile_embeddings(ws, data_dir, source, progress=None, cancel=None)` and `slide_embeddings(...)`
  tile what is missing and embed the selected, QC-passed tiles; cached in
  `ws.cache_dir/embeddings/<source key>-<tile pack key>/` (values.npy appears last), one writer per entry.
  `cached_tile_embeddings` / `cached_slide_embeddings` never tile, pack or run a model (pages).
- `FeatureSource.key` is the checkpoint's or weights file's fingerprint (or arch + seed) plus the input
  size; `load_feature_model` returns a model that takes RGB floats in [0, 1] and normalises itself.
  Random weights take BatchNorm statistics from calibration tiles. A missing or unfit weights file is a
  DataError naming it; nothing is downloaded.
- `separability.separation(values, tissues, donors, k=5, folds=5)`: silhouette and kNN accuracy with
  whole donors held out, beside the commonest-training-tissue baseline; `separation_across_epochs`
  scores checkpoints and random weights (epoch 0), each score cached beside its embedding.
- Scores of a run's embeddings use the slides of its held-out donors (validation + test; `held_out_of`),
  the training donors' apart as `training_*`; random / ImageNet weights are scored on the held-out slides
  of the run they are compared with (`split_separation` for any points). No split: every slide.
"""

from core.base.lazy import lazy_exports

_EXPORTS = {
    "FeatureSource": "features",
    "checkpoint_epochs": "features",
    "epochs_to_score": "separability",
    "held_out_of": "separability",
    "scored_epochs": "separability",
    "separation": "separability",
    "split_separation": "separability",
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, globals(), _EXPORTS)
