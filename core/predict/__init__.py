"""Predict one slide with a trained run: tissue, tile heatmaps, expression of the recoverable genes with
per-tile gene maps, its place on the reference map and its nearest reference slides (issue 11).

No streamlit; torch is imported only when the checkpoint loads. See /ARCHITECTURE.md "core/predict"."""

from core.predict.jobs import find_prediction_job, launch_prediction, predict_argv
from core.predict.pipeline import (
    STEP_SHARES,
    STEPS,
    UPLOAD_EXTENSIONS,
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
    "STEPS", "STEP_SHARES", "UPLOAD_EXTENSIONS", "PredictRequest", "SlidePrediction", "cached_prediction",
    "default_run", "file_sha256", "launch_prediction", "load_prediction", "predict_argv", "predict_slide",
    "predictions_dir", "request_for", "result_folder", "run_model",
]
