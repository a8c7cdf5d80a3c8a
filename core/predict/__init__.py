"""Predict one slide with a trained run: tissue, tile heatmaps, expression of the recoverable genes with
per-tile gene maps, its place on the reference map and its nearest reference slides (issue 11).

No streamlit; torch is imported only when the checkpoint loads.

Contract:
- `predict_slide(ws, data_dir, slide_path, request, progress=None, cancel=None, sha256=None) ->
  SlidePrediction`; steps `STEPS` (read, tiles, embed, tissue, expression, map, report) with shares
  `STEP_SHARES`. Epoch None means the run's validation-selected epoch; the default run is the finished
  run with the best validation accuracy at its selected epoch (`default_run`).
- Tiles are cut and QC'd by the training tiler over the full grid at the dataset's tiling parameters;
  the JPEG-size bar is the most lenient of the run's tissues (the tissue is unknown before).
- Caches under `ws.cache_dir/predictions/`, keyed by the file's SHA-256, never its name: `slides/`
  (tiles, embeddings per checkpoint and tiling), `results/` (one writer per entry), `models/` (gene
  models per ranking). `cached_prediction` never computes. A run without a saved ranking gives no
  genes and a warning naming the command, unless `compute_ranking`.
- Bad input is a DataError naming the file: not a slide, truncated, grayscale or 16-bit, no tissue,
  too coarse for the run (`MAX_UPSAMPLE`), no trained run or checkpoint, no tissue shared with the
  reference dataset (checked before any slide work).
- `launch_prediction` runs `python -m core predict` as a non-exclusive job (it never takes the
  one-writer lock); `predict_argv` spells every setting, so job and page compute the same key.
  `upload.save_upload` streams an upload to a private temporary file, hashed as it is written; the
  user's file name only picks the extension.
"""

from core.predict.jobs import find_prediction_job, launch_prediction, predict_argv
from core.predict.pipeline import (
    STEP_SHARES,
    STEPS,
    cached_prediction,
    file_sha256,
    predict_slide,
    predictions_dir,
    result_folder,
)
from core.predict.request import PredictRequest, default_run, request_for, run_model
from core.predict.result import SlidePrediction, load_prediction
from core.predict.state import AUTO, BUTTON, LINK, PredictionState, prediction_state

__all__ = [
    "AUTO", "BUTTON", "LINK", "PredictionState", "find_prediction_job", "prediction_state",
    "STEPS", "STEP_SHARES", "PredictRequest", "SlidePrediction", "cached_prediction",
    "default_run", "file_sha256", "launch_prediction", "load_prediction", "predict_argv", "predict_slide",
    "predictions_dir", "request_for", "result_folder", "run_model",
]
