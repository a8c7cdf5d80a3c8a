"""The demo tour: one background job (kind "tour") that fills every page on the demo cohort.

In order, through the same core functions the CLI commands use: generate the demo cohort when missing,
tile it, train the default model (TrainConfig's defaults, as the Training page), embed the tiles with the
epoch selected on validation, compute the map the Embeddings explorer opens on (slides, PCA), rank every
gene with the Gene rankings page's default parameters, and predict one slide of a held-out test donor
(core.predict, with the request the Predict page builds by default). The steps after training work on the
run every page opens on by default, the best finished run (core.predict.default_run): on a fresh workspace
the one the tour trained.
Each step first looks whether its result is already cached or done and then skips it, so a rerun after a
cancel, a failure or a server restart resumes where the chain stopped (training itself resumes from its
last complete epoch). The job's status.json carries every step's state (`progress["steps"]`), which the
Overview page reads on each rerun; `tour.json` in the workspace remembers the run the tour trained.

`TourParams` is the seam tests use to run the chain on a tiny cohort with a tiny model; its defaults are
the real ones.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Protocol

from core import jobs
from core.base.config import Workspace
from core.base.errors import DataError
from core.base.fileio import atomic_write_json, read_json_object
from core.base.types import Reporter
from core.maps.reduce import MapParams
from core.ranking.cv import RankParams
from core.train.config import TrainConfig

KIND = "tour"
RECORD_NAME = "tour.json"
# Step states as the page shows them.
PENDING, RUNNING, DONE, CACHED, FAILED, CANCELLED = "pending", "running", "done", "cached", "failed", "cancelled"


@dataclass(frozen=True)
class Step:
    name: str
    label: str
    page: str | None  # the page that shows its result (pages/<page>.py)
    weight: float  # its share of the overall progress bar: its seconds on 2 CPU cores, roughly


STEPS = (
    Step("demo", "Generate the demo cohort", "overview", 55),
    Step("tiles", "Tile the slides (QC and balanced sampling)", "overview", 40),
    Step("train", "Train the default model", "training", 360),
    Step("embed", "Embed the tiles with the selected epoch", "explorer", 30),
    Step("map", "Compute the explorer's slide map", "explorer", 3),
    Step("rank", "Rank genes by how well the slides predict them", "rankings", 40),
    Step("predict", "Predict a slide of a held-out test donor", "predict", 15),
)
STEP_NAMES = tuple(step.name for step in STEPS)


@dataclass(frozen=True)
class TourParams:
    """What the tour runs with; the defaults are the real ones (tests pass a tiny cohort and model)."""

    data_dir: str | None = None  # None: the workspace's demo cohort, generated when missing
    demo: dict[str, Any] = field(default_factory=dict)  # options of core.demo.ensure_demo_cohort (sizes, seed)
    train: TrainConfig = field(default_factory=TrainConfig)
    map_params: MapParams = field(default_factory=lambda: MapParams(method="pca"))  # the explorer's default map
    rank: RankParams = field(default_factory=RankParams)  # the Gene rankings page's defaults

    def to_dict(self) -> dict[str, Any]:
        return {"data_dir": self.data_dir, "demo": dict(self.demo), "train": asdict(self.train),
                "map_params": asdict(self.map_params), "rank": asdict(self.rank)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TourParams:
        demo = dict(data.get("demo") or {})
        if "slide_size" in demo:
            demo["slide_size"] = tuple(demo["slide_size"])
        return cls(data_dir=data.get("data_dir"), demo=demo,
                   train=TrainConfig(**(data.get("train") or {})),
                   map_params=MapParams(**(data.get("map_params") or {"method": "pca"})),
                   rank=RankParams(**(data.get("rank") or {})))

    def is_default(self) -> bool:
        return self.to_dict() == TourParams().to_dict()


class TourReporter(Reporter, Protocol):
    """What the tour reports to: core.jobs.JobReporter (progress with extras, a cancel flag, a result)."""

    result: Any


class TourStepError(DataError):
    """A step failed: names the step, then the step's own message (a DataError names its file)."""

    def __init__(self, step: Step, cause: BaseException) -> None:
        detail = str(cause) if isinstance(cause, DataError) else f"{type(cause).__name__}: {cause}"
        super().__init__(None, f"tour step '{step.name}' ({step.label}) failed: {detail}")
        self.step = step.name


def _cpu_seconds() -> float:
    """CPU time of this process and of its finished children (tiling and demo workers)."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


@dataclass
class _StepState:
    name: str
    label: str
    page: str | None
    state: str = PENDING
    fraction: float = 0.0
    message: str = ""
    seconds: float | None = None
    cpu_seconds: float | None = None
    result: dict[str, Any] = field(default_factory=dict)


class _Tour:
    """One pass over the steps: their shared context (dataset, run, epoch) and the progress report."""

    def __init__(self, ws: Workspace, params: TourParams, reporter: TourReporter) -> None:
        self.ws = ws
        self.params = params
        self.reporter = reporter
        self.data_dir = Path(params.data_dir) if params.data_dir else ws.demo_dir
        self.states = [_StepState(s.name, s.label, s.page) for s in STEPS]
        self.current: int | None = None
        self.record = _read_record(ws, self.data_dir)
        self._cohort = None

    # Progress ---------------------------------------------------------------------------------------
    def report(self, message: str = "") -> None:
        total = sum(s.weight for s in STEPS)
        done = sum(s.weight * (1.0 if st.state in (DONE, CACHED) else st.fraction if st.state == RUNNING else 0.0)
                   for s, st in zip(STEPS, self.states, strict=True))
        step = self.states[self.current].name if self.current is not None else None
        self.reporter.progress(round(done / total, 4), 1.0, message, step=step,
                               steps=[asdict(st) for st in self.states])

    def step_progress(self, done: float, total: float | None, message: str = "", **_: Any) -> None:
        """A step's own progress (done of total, message). Steps whose core function takes a cancel callable
        (embed, rank) are stopped by it at their own safe points."""
        state = self.states[self.current]
        state.fraction = min(1.0, max(0.0, float(done) / float(total))) if total else state.fraction
        state.message = message
        self.report(f"{state.label}: {message}" if message else state.label)

    def checked_progress(self, done: float, total: float | None, message: str = "", **_: Any) -> None:
        """step_progress, then JobCancelled once a cancel is asked for (between slides: demo, tiles, as the
        `demo` and `tiles` commands do)."""
        self.step_progress(done, total, message)
        self.check_cancel()

    def cancelled(self) -> bool:
        return self.reporter.cancel_requested()

    def check_cancel(self) -> None:
        if self.cancelled():
            raise jobs.JobCancelled("cancelled on request")

    # Shared context ---------------------------------------------------------------------------------
    def cohort(self):
        if self._cohort is None:
            from core.data.dataset import load_cohort

            self._cohort = load_cohort(self.data_dir, self.ws)
        return self._cohort

    def run_dir(self) -> Path:
        run = self.record.get("run_dir")
        if not run or not Path(run).is_dir():
            raise DataError(self.ws.runs_dir, "the tour has no trained run yet")
        return Path(run)

    def source(self):
        from core.embed.features import FeatureSource

        return FeatureSource.checkpoint(self.run_dir(), int(self.record["epoch"]))

    def remember(self, **values: Any) -> None:
        self.record.update(values, data_dir=str(self.data_dir))
        _write_record(self.ws, self.record)


def _record_path(ws: Workspace) -> Path:
    return ws.root / RECORD_NAME


def _read_record(ws: Workspace, data_dir: Path) -> dict[str, Any]:
    record = read_json_object(_record_path(ws)) or {}
    return record if record.get("data_dir") == str(data_dir) else {}


def _write_record(ws: Workspace, record: dict[str, Any]) -> None:
    atomic_write_json(_record_path(ws), record)


def tour_record(ws: Workspace) -> dict[str, Any]:
    """What the last tour left for the pages: data_dir, run_dir, epoch (and the predicted slide)."""
    return read_json_object(_record_path(ws)) or {}


# Steps: each returns its result (a small dict), with "cached": True when it only found it. ---------------

def _demo(t: _Tour) -> dict[str, Any]:
    from core.demo import demo_is_ready, ensure_demo_cohort

    if t.params.data_dir is not None:
        if not t.data_dir.is_dir():
            raise DataError(t.data_dir, "dataset folder not found")
        return {"cached": True, "path": str(t.data_dir), "note": "a dataset was given"}
    if demo_is_ready(t.ws):
        return {"cached": True, "path": str(t.ws.demo_dir)}
    path = ensure_demo_cohort(t.ws, t.checked_progress, **t.params.demo)
    return {"cached": False, "path": str(path)}


def _slides(t: _Tour):
    samples = t.cohort().samples
    samples = samples[samples["has_slide"].astype(bool)]
    if samples.empty:
        raise DataError(t.data_dir, "no slides to tile")
    return samples


def _tiles(t: _Tour) -> dict[str, Any]:
    from core.tiles.index import (
        build_tile_index,
        dataset_tiling_params,
        find_tile_index,
        load_tile_index,
        tiling_summary,
    )

    samples = _slides(t)
    params = dataset_tiling_params(t.ws, t.data_dir)
    found = find_tile_index(samples, params, t.ws)
    if found is not None:
        summary = tiling_summary(load_tile_index(found), found)
        return {"cached": True, **{k: summary.get(k) for k in ("considered", "kept", "selected")}}
    result = build_tile_index(samples, params, t.ws, progress=t.checked_progress)
    errors = result.summary.get("errors") or {}
    if errors and not result.summary.get("slides_tiled"):
        raise DataError(None, next(iter(errors.values())))
    return {"cached": False, **{k: result.summary.get(k) for k in ("considered", "kept", "selected")}}


class _TrainReporter:
    """core.train.loop's Reporter for the tour's train step: progress into the step, the tour's cancel flag."""

    def __init__(self, tour: _Tour) -> None:
        self.tour = tour
        self.result: Any = None

    PACK_SHARE = 0.1  # reading the tiles into the tile pack, before the epochs (~30 s of ~6 min on the demo)

    def progress(self, done: int, total: int, message: str = "", **extra: Any) -> None:
        state = self.tour.states[self.tour.current]
        if total:
            share = min(1.0, done / total)
            packing = "tile pack" in message or "packing" in message
            state.fraction = share * self.PACK_SHARE if packing else self.PACK_SHARE + share * (1 - self.PACK_SHARE)
        state.message = message
        self.tour.report(f"{state.label}: {message}")

    def cancel_requested(self) -> bool:
        return self.tour.cancelled()


def _same_config(run_dir: Path, config: Any, data_dir: Path) -> bool:
    from core.train import runs

    try:
        saved = runs.run_config(run_dir)
    except DataError:
        return False
    return saved.get("data_dir") == str(data_dir) and TrainConfig.from_dict(saved) == config


def _finished_default_run(t: _Tour) -> Path | None:
    """A finished run of the tour's configuration on this dataset (the tour's own first), else None; among
    several, the one with the best validation accuracy at its selected epoch."""
    from core.train import runs

    own = t.record.get("trained_run")
    if own and Path(own).is_dir() and runs.run_status(own) == "done" and _same_config(Path(own), t.params.train,
                                                                                     t.data_dir):
        return Path(own)
    table = runs.list_runs(t.ws)
    table = table[table["status"] == "done"].sort_values("val_acc_selected", ascending=False, na_position="last")
    for path in table["path"]:
        if _same_config(Path(path), t.params.train, t.data_dir):
            return Path(path)
    return None


def _selected_epoch(run_dir: Path) -> int:
    from core.train import runs

    chosen = runs.selected_epoch(run_dir)
    if chosen is None:
        raise DataError(run_dir, "the run finished no epoch")
    return chosen


def _train(t: _Tour) -> dict[str, Any]:
    from core.maps.jobs import tile_index_path
    from core.tiles.index import load_tile_index
    from core.train import runs
    from core.train.loop import train_run

    finished = _finished_default_run(t)
    if finished is not None:
        return _pages_run(t, finished, {"cached": True})
    index_path = tile_index_path(t.ws, t.data_dir, t.cohort())
    if index_path is None:
        raise DataError(t.data_dir, "the slides are not tiled")
    own = t.record.get("trained_run")
    resumable = own and (Path(own) / "config.json").exists() and _same_config(Path(own), t.params.train, t.data_dir)
    if resumable:
        run_dir, config = Path(own), None  # continues from its last complete epoch
    else:
        run_dir, config = runs.new_run_dir(t.ws), t.params.train.validate()
        atomic_write_json(run_dir / runs.REQUEST_NAME, {**asdict(config), "data_dir": str(t.data_dir),
                                                       "requested_by": KIND})
    t.remember(trained_run=str(run_dir), run_dir=None, epoch=None)
    summary = train_run(run_dir, config, load_tile_index(index_path), t.ws, _TrainReporter(t),
                        meta={"data_dir": str(t.data_dir), "tile_index_path": str(index_path)})
    if summary.get("status") == "cancelled" or t.cancelled():
        raise jobs.JobCancelled("cancelled on request")
    if summary.get("status") != "done":
        raise DataError(run_dir, f"training stopped: {summary.get('message') or summary.get('status')}")
    return _pages_run(t, run_dir, {"cached": False, "test_acc_selected": summary.get("test_acc_selected"),
                                   "val_acc_selected": summary.get("val_acc_selected")})


def _pages_run(t: _Tour, trained: Path, result: dict[str, Any]) -> dict[str, Any]:
    """Remember the trained run and the run the pages open on (the best finished run; the trained one unless the
    workspace holds a better one), with that run's validation-selected epoch."""
    from core.predict import default_run

    run_dir = default_run(t.ws) or trained
    t.remember(trained_run=str(trained), run_dir=str(run_dir), epoch=_selected_epoch(run_dir))
    note = {} if run_dir == trained else {"note": f"the pages open on the best finished run {run_dir.name}"}
    return {**result, "trained_run": str(trained), "run_dir": str(run_dir), "epoch": t.record["epoch"], **note}


def _embed(t: _Tour) -> dict[str, Any]:
    from core.embed import compute as embed

    source = t.source()
    tiles = embed.cached_tile_embeddings(t.ws, t.data_dir, source)
    cached = tiles is not None
    if tiles is None:
        tiles = embed.tile_embeddings(t.ws, t.data_dir, source, t.step_progress, t.cancelled)
    return {"cached": cached, "tiles": int(len(tiles.values)), "dim": int(tiles.values.shape[1]),
            "source": source.label}


def map_request(run_dir: str | Path, epoch: int, params: MapParams | None = None):
    """The map the Embeddings explorer opens on for a run: slides, PCA, the run's split colours."""
    from core.embed.features import FeatureSource
    from core.maps.jobs import MapRequest

    return MapRequest(level="slides", params=params or MapParams(method="pca"),
                      source=FeatureSource.checkpoint(run_dir, epoch), run_dir=str(run_dir))


def _map(t: _Tour) -> dict[str, Any]:
    from core.maps.jobs import points_for
    from core.maps.reduce import cached_map, lookup_map

    request = map_request(t.run_dir(), int(t.record["epoch"]), t.params.map_params)
    points = points_for(t.ws, t.data_dir, t.cohort(), request)
    if points is not None and lookup_map(t.ws, points.key, request.params) is not None:
        return {"cached": True, "points": len(points), "method": request.params.method}
    points = points_for(t.ws, t.data_dir, t.cohort(), request, compute=True, progress=t.checked_progress,
                        cancel=t.cancelled)
    mapped = cached_map(t.ws, points.values, request.params, input_key=points.key, progress=t.checked_progress,
                        keep_reducer=True)  # slides level: a UMAP keeps its reducer for predictions
    return {"cached": bool(mapped.cached), "points": len(points), "method": request.params.method}


def rank_params(params: RankParams, donors: int) -> RankParams:
    """The Gene rankings page's parameters for a cohort: its folds are capped by the donors (2..10)."""
    return replace(params, folds=min(params.folds, max(2, min(10, donors))))


def _rank(t: _Tour) -> dict[str, Any]:
    from core.ranking.api import rank_genes
    from core.ranking.jobs import cached_ranking_for

    cohort = t.cohort()
    donors = int(cohort.samples.loc[cohort.samples["has_slide"].astype(bool), "subject_id"].nunique())
    params = rank_params(t.params.rank, donors)
    source = t.source()
    found = cached_ranking_for(t.ws, t.data_dir, cohort, source, params)
    ranking = found.ranking
    cached = ranking is not None
    if ranking is None:
        ranking = rank_genes(t.ws, t.data_dir, source, params, cohort=cohort, progress=t.step_progress,
                             cancel=t.cancelled)
    t.remember(rank_params=asdict(params))
    summary = ranking.summary
    return {"cached": cached, "genes": summary.get("genes"), "recovered": summary.get("recovered"),
            "recovered_by_random": summary.get("recovered_by_random"), "folds": params.folds,
            "repeats": params.repeats}


def held_out_slide(run_dir: str | Path, samples) -> tuple[str, Path]:
    """(sample id, slide path) of the first slide, by sample id, of a donor the run held out for its test report:
    never seen in training or in choosing the epoch. DataError when the run tested no slide of `samples`."""
    from core.train import runs

    split = runs.run_split(run_dir)
    tested = set(split.loc[split["split"] == "test", "sample_id"].astype(str))
    slides = samples[samples["has_slide"].astype(bool) & samples["sample_id"].astype(str).isin(tested)]
    if slides.empty:
        raise DataError(Path(run_dir) / "split.csv", "the run has no test donor with a slide in this dataset")
    row = slides.sort_values("sample_id").iloc[0]
    return str(row["sample_id"]), Path(str(row["slide_path"]))


def predict_request(run_dir: str | Path, epoch: int, ranking: RankParams):
    """The request the Predict page builds by default for a run (its selected epoch, its ranking, every gene with
    its R² so the page's threshold only filters, the UMAP placement)."""
    from core.predict import PredictRequest

    return PredictRequest(run_dir=str(Path(run_dir).resolve()), epoch=int(epoch), ranking=ranking, r2_threshold=0.0)


def _predict(t: _Tour) -> dict[str, Any]:
    from core.predict import cached_prediction, file_sha256, predict_slide

    sample_id, slide = held_out_slide(t.run_dir(), t.cohort().samples)
    ranking = RankParams(**t.record["rank_params"]) if t.record.get("rank_params") else t.params.rank
    request = predict_request(t.run_dir(), int(t.record["epoch"]), ranking)
    sha = file_sha256(slide)
    prediction = cached_prediction(t.ws, sha, request)
    cached = prediction is not None
    if prediction is None:
        def progress(done: float, message: str, step: str) -> None:
            t.step_progress(done, 1.0, f"{step}: {message}" if message else step)

        # data_dir None: the run's own dataset as the reference, as the Predict page asks (same cache entry)
        prediction = predict_slide(t.ws, None, slide, request, progress=progress, cancel=t.cancelled, sha256=sha)
    t.remember(predicted_sample=sample_id, predicted_slide=str(slide), predicted_sha256=sha)
    samples = t.cohort().samples.set_index("sample_id")
    return {"cached": cached, "sample_id": sample_id, "slide": str(slide),
            "true_tissue": str(samples.loc[sample_id, "tissue"]) if sample_id in samples.index else None,
            "tissue": prediction.tissue, "top3": prediction.top3, "genes": int(len(prediction.genes)),
            "warnings": list(prediction.warnings)}


RUNNERS: dict[str, Callable[[_Tour], dict[str, Any]]] = {
    "demo": _demo, "tiles": _tiles, "train": _train, "embed": _embed, "map": _map, "rank": _rank,
    "predict": _predict,
}


def run_tour(ws: Workspace, params: TourParams, reporter: TourReporter) -> dict[str, Any]:
    """Run the steps in order (each skipped when its result is cached or done); returns the tour's result.

    A cancel request stops at the next safe point with core.jobs.JobCancelled (the step reads `cancelled`);
    a failing step is marked `failed` with its message and raised as TourStepError naming it.
    """
    tour = _Tour(ws, params, reporter)
    started = time.perf_counter()
    tour.report("starting")
    for i, step in enumerate(STEPS):
        tour.current = i
        state = tour.states[i]
        state.state, state.fraction, state.message = RUNNING, 0.0, ""
        tour.report(step.label)
        wall, cpu = time.perf_counter(), _cpu_seconds()
        try:
            tour.check_cancel()
            result = RUNNERS[step.name](tour)
        except jobs.JobCancelled:
            state.state, state.message = CANCELLED, "cancelled: run the tour again to continue from here"
            tour.report(f"{step.label}: cancelled")
            raise
        except BaseException as exc:
            state.state, state.message = FAILED, str(TourStepError(step, exc))
            tour.report(state.message)
            if isinstance(exc, KeyboardInterrupt):
                raise
            raise TourStepError(step, exc) from exc
        finally:
            state.seconds = round(time.perf_counter() - wall, 2)
            state.cpu_seconds = round(_cpu_seconds() - cpu, 2)
        state.state = CACHED if result.get("cached") else DONE
        state.fraction, state.result = 1.0, result
        state.message = "already done: skipped" if state.state == CACHED else "done"
    tour.current = None
    tour.report("done")
    result = {"data_dir": str(tour.data_dir), "run_dir": tour.record.get("run_dir"),
              "epoch": tour.record.get("epoch"), "seconds": round(time.perf_counter() - started, 2),
              "steps": [asdict(st) for st in tour.states]}
    reporter.result = result
    return result


def step_rows(status: dict[str, Any]) -> list[dict[str, Any]]:
    """The steps of a tour job's status, each with name, label, page, state, fraction, message, seconds;
    steps a worker has not reported yet read `pending` (a job that died before reporting)."""
    reported = {row.get("name"): row for row in (status.get("progress") or {}).get("steps") or []
                if isinstance(row, dict)}
    known = {f.name for f in fields(_StepState)}
    rows = []
    for step in STEPS:
        row = asdict(_StepState(step.name, step.label, step.page))
        row.update({k: v for k, v in reported.get(step.name, {}).items() if k in known})
        if row["state"] == RUNNING and status.get("state") in (jobs.FAILED, jobs.CANCELLED):
            row["state"] = status["state"]  # the worker died mid-step: it never wrote the step's end
        rows.append(row)
    return rows
