"""Stage 3, train: the tissue classifier, trained on donor-split tiles, runs kept on disk.

In: a tile index and a `TrainConfig` (architecture, input size, epochs, optimiser, weight decay...;
importing it does not import torch). Out: a run folder (config.json, split.csv, metrics.jsonl,
summary.json, checkpoints/epoch_NNN.pt). Splits are by donor: train / validation / test, no donor on
two sides. The epoch to keep is selected on validation only (`runs.select_epoch`); test accuracy is
reported at that epoch. `runs` reads runs without torch; `jobs` launches and resumes training;
core.tiles.figures draws curves and confusion matrices. CUDA, then MPS, then CPU.

Contract:
- `split.donor_split(samples, test_fraction=0.3, val_fraction=0.1, seed=0)`: test donors first, covering
  each tissue (rarest first) without taking a tissue's last donor; validation donors drawn the same way
  from the donors left for training (own RNG stream, so a seed's test donors do not depend on it). Same
  input and seed, same split. Saved as `split.csv` and `split.json` (donors, tile ids, seeds).
- `runs.select_epoch(epochs)`: highest validation accuracy, ties to the lower validation loss, then the
  earlier epoch; a run without validation donors selects its final epoch and says so. Never the best
  epoch on test; every later stage uses this epoch by default.
- Each epoch writes an atomic checkpoint; cancel saves one and stops; resume continues from the last
  complete epoch. The split, data order and RNG states are seeded and saved, so the same configuration
  gives the same first-epoch metrics on one machine. On CPU each batch runs as `batch_shards`
  concurrent shards whose gradients are summed in shard order (BatchNorm normalises within a shard).
- `jobs.launch_training` writes `request.json` into a new run folder before the worker starts, so the
  run history shows it while it tiles; `runs.prune_checkpoints` never deletes the latest checkpoint.
"""

from core.base.lazy import lazy_exports

_EXPORTS = {
    "ARCHITECTURES": "config",
    "TrainConfig": "config",
    "imagenet_weights_status": "models",
    "launch_training": "jobs",
    "resume_training": "jobs",
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, globals(), _EXPORTS)
