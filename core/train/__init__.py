"""Stage 3, train: the tissue classifier, trained on donor-split tiles, runs kept on disk.

In: a tile index and a `TrainConfig` (architecture, input size, epochs, optimiser, weight decay...;
importing it does not import torch). Out: a run folder (config.json, split.csv, metrics.jsonl,
summary.json, checkpoints/epoch_NNN.pt). Splits are by donor: train / validation / test, no donor on
two sides. The epoch to keep is selected on validation only (`runs.select_epoch`); test accuracy is
reported at that epoch. `runs` reads runs without torch; `jobs` launches and resumes training;
`figures` draws curves and confusion matrices. CUDA, then MPS, then CPU.
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
