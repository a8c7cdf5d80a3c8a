"""What a prediction is asked for (run, checkpoint, ranking parameters, threshold) and the run it uses.

A request names its run by folder; the checkpoint defaults to the run's epoch selected on its validation
donors (core.train.runs.select_epoch), never the best one on test. `RunModel` is everything the prediction reads
from the run: the checkpoint as a FeatureSource, its class list, the tiling the run's dataset was cut with
and the reference dataset. Runs that cannot serve a prediction are a DataError naming the run's file."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from core.base.cache import cache_key
from core.base.config import Workspace, resolve_data_dir
from core.base.errors import DataError
from core.embed.features import FeatureSource, checkpoint_epochs
from core.ranking.params import RankParams

MAP_METHODS = ("umap", "tsne", "pca")
# Finished runs offered as the default: training ended (done) or was stopped with its checkpoints kept.
_USABLE_STATUSES = ("done", "paused", "cancelled")


@dataclass(frozen=True)
class PredictRequest:
    """One prediction's settings; `key` identifies what they compute (the checkpoint by content)."""

    run_dir: str
    epoch: int | None = None  # None: the run's validation-selected epoch
    ranking: RankParams = field(default_factory=RankParams)
    r2_threshold: float = 0.1
    neighbours: int = 5
    map_method: str = "umap"
    compute_ranking: bool = False  # compute a missing gene ranking (minutes) instead of warning

    def __post_init__(self) -> None:
        if self.map_method not in MAP_METHODS:
            raise DataError(None, f"map method must be one of {', '.join(MAP_METHODS)}, not {self.map_method!r}")
        if self.neighbours < 1:
            raise DataError(None, f"neighbours must be at least 1, got {self.neighbours}")
        if not math.isfinite(self.r2_threshold):
            raise DataError(None, "the R² threshold must be a number")

    def to_dict(self) -> dict[str, Any]:
        values = asdict(self)
        values["ranking"] = asdict(self.ranking)
        return values

    @property
    def key(self) -> str:
        """Content key: the checkpoint's content hash (not its path or epoch number alone) and every setting."""
        model = run_model(self)
        settings = {**self.to_dict(), "run_dir": None, "epoch": model.source.epoch}
        return cache_key("predict-request", model.source.key, settings).split(":", 1)[1]


@dataclass(frozen=True)
class RunModel:
    """What a prediction uses from its run."""

    run_dir: Path
    source: FeatureSource  # the checkpoint
    epoch_note: str  # how the epoch was chosen
    classes: tuple[str, ...]
    config: dict[str, Any]

    @property
    def data_dir(self) -> Path | None:
        value = self.config.get("data_dir")
        return Path(value) if value else None


def selected_epoch(run_dir: Path) -> tuple[int | None, str]:
    """(the run's epoch selected on validation, how it was chosen); (None, note) when metrics say nothing."""
    from core.train.runs import run_selection

    chosen = run_selection(run_dir)
    if chosen.get("selected_epoch") is None:
        return None, "latest checkpoint (the run has no epoch metrics)"
    return int(chosen["selected_epoch"]), f"selected by {chosen['selected_by']}"


def run_model(request: PredictRequest) -> RunModel:
    """The run's checkpoint and classes; DataError naming the run's file when it cannot predict."""
    from core.train.runs import run_config

    run_dir = Path(request.run_dir)
    config = run_config(run_dir)  # DataError: not a run
    epochs = checkpoint_epochs(run_dir)
    if not epochs:
        raise DataError(run_dir, "this run has no checkpoint yet: train it first (Training page)")
    if request.epoch is not None:
        epoch, note = int(request.epoch), "chosen"
    else:
        epoch, note = selected_epoch(run_dir)
        if epoch is None or epoch not in epochs:
            if epoch is not None:
                note = f"latest checkpoint (the selected epoch {epoch} has no checkpoint)"
            epoch = epochs[-1]
    source = FeatureSource.checkpoint(run_dir, epoch)  # DataError: no such epoch
    classes = config.get("classes")
    if not isinstance(classes, list) or len(classes) < 2:
        raise DataError(run_dir / "config.json", "the run has no list of tissue classes: it cannot classify")
    return RunModel(run_dir.resolve(), source, note, tuple(str(c) for c in classes), config)


def default_run(ws: Workspace) -> Path | None:
    """The best finished run: the highest validation accuracy at its selected epoch (then the newest)."""
    from core.train.runs import list_runs

    runs = list_runs(ws)
    if runs.empty:
        return None
    usable = runs[runs["status"].isin(_USABLE_STATUSES)]
    usable = usable[[bool(checkpoint_epochs(path)) for path in usable["path"]]]
    if usable.empty:
        return None
    score = usable["val_acc_selected"].fillna(-1.0)  # a run without validation donors ranks last
    best = usable.assign(_score=score).sort_values(["_score", "run_id"], ascending=[False, False]).iloc[0]
    return Path(best["path"])


def request_for(ws: Workspace, run: str | Path | None = None, epoch: int | None = None, **settings: Any
                ) -> PredictRequest:
    """A request for `run` (id or folder; default: default_run). DataError when there is no trained run."""
    from core.train.runs import run_path

    if run is None:
        found = default_run(ws)
        if found is None:
            raise DataError(ws.runs_dir, "no trained run yet: train a model first (Training page, or "
                                         "`python -m core train`)")
        run_dir = found
    else:
        run_dir = run_path(ws, run)
    return PredictRequest(run_dir=str(Path(run_dir).resolve()), epoch=epoch, **settings)


def reference_dir(ws: Workspace, model: RunModel, data_dir: str | Path | None) -> Path:
    """The reference dataset: `data_dir`, else the folder the run was trained on."""
    if data_dir is not None:
        return resolve_data_dir(ws, data_dir)
    if model.data_dir is None:
        raise DataError(model.run_dir / "config.json", "the run does not name its dataset: pass the data folder")
    if not model.data_dir.is_dir():
        raise DataError(model.data_dir, "the run's dataset folder is gone: pass the reference data folder")
    return model.data_dir
