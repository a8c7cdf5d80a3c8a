"""predict_slide: one slide in, its tissue, expression, map place and neighbours out (steps 1-9).

Two cache levels under ws.cache_dir/predictions/, both keyed by the file's sha256 (its content, not its
name or path: an upload is a new temp file every time):
- slides/<sha>-<key>/: the slide's read (info, thumbnail, mask), its QC'd grid and the kept tiles'
  embeddings; key = checkpoint content hash + tiling parameters. The expensive part.
- results/<sha>-<request key>-<reference>/: the whole SlidePrediction for one request (threshold,
  neighbours, ranking parameters, map) and reference dataset. A second call is a read (cached=True).
One writer per result entry (an flock beside it): two tabs predicting the same file wait for one another;
different files or requests run side by side.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import shutil
import time
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from core.base.cache import cache_key
from core.base.config import Workspace
from core.base.errors import DataError
from core.base.fileio import temp_path_for
from core.base.types import Cancel, StepProgress
from core.predict.request import PredictRequest, reference_dir, run_model
from core.predict.result import SlidePrediction, load_prediction, save_prediction

if TYPE_CHECKING:
    from core.predict.reference import Reference, SlideDonor
    from core.predict.tiles import SlideTiles

PREDICT_VERSION = 1
RESULT_VERSION = 2  # 2: the reference leaves the slide's donor out
STEPS = ("read", "tiles", "embed", "tissue", "expression", "map", "report")
# Share of the progress bar per step (a cold GTEx slide: QC ~60%, embedding ~30%).
STEP_SHARES = {"read": 0.03, "tiles": 0.52, "embed": 0.30, "tissue": 0.05, "expression": 0.05, "map": 0.03,
               "report": 0.02}
_HASH_BLOCK = 1 << 20



def file_sha256(path: str | Path) -> str:
    """SHA-256 of a file's content, read in 1 MB blocks (a GTEx slide never sits in memory)."""
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as handle:
            while block := handle.read(_HASH_BLOCK):
                digest.update(block)
    except OSError as exc:
        raise DataError(path, f"cannot read file ({exc.strerror or exc})") from None
    return digest.hexdigest()


def predictions_dir(ws: Workspace) -> Path:
    return ws.cache_dir / "predictions"


def result_folder(ws: Workspace, sha256: str, request: PredictRequest, data_dir: Path) -> Path:
    """Where the result of this file, request and reference is saved: keyed also by the reference dataset's
    folder, its saved tiling settings and the run's classes (read from small files, so pages can call it)."""
    from core.base.settings import load_dataset_settings

    tiling = load_dataset_settings(ws, data_dir).get("tiling")
    classes = run_model(request).classes
    reference = cache_key("predict-reference", str(Path(data_dir).resolve()), tiling, classes,
                          PREDICT_VERSION, RESULT_VERSION).split(":", 1)[1]
    return predictions_dir(ws) / "results" / f"{sha256[:32]}-{request.key[:16]}-{reference[:8]}"


def _usable(hit: SlidePrediction | None) -> SlidePrediction | None:
    """A saved result, unless it lacks genes only because the ranking was missing and it exists now."""
    if hit is None:
        return None
    waiting_for = hit.notes.get("ranking_folder_missing")
    if waiting_for and (Path(waiting_for) / "summary.json").is_file():
        return None
    return hit


def cached_prediction(ws: Workspace, file_sha256: str, request: PredictRequest,
                      data_dir: str | Path | None = None) -> SlidePrediction | None:
    """The saved prediction for this file content and request, or None; never computes (pages)."""
    model = run_model(request)
    return _usable(load_prediction(result_folder(ws, file_sha256, request, reference_dir(ws, model, data_dir))))


class _Steps:
    """Progress over the fixed step shares, the seconds of each step, and cancellation between steps."""

    def __init__(self, progress: StepProgress | None, cancel: Cancel | None) -> None:
        self.progress, self.cancel = progress, cancel
        self.seconds: dict[str, float] = {}
        self._step, self._base, self._started = "", 0.0, time.perf_counter()

    def start(self, step: str, message: str = "") -> None:
        self._close()
        self._check_cancel()
        self._step, self._started = step, time.perf_counter()
        self._base = sum(STEP_SHARES[s] for s in STEPS[: STEPS.index(step)])
        self.report(0.0, message or step)

    def report(self, share: float, message: str) -> None:
        if self.progress is not None:
            done = self._base + STEP_SHARES[self._step] * min(max(share, 0.0), 1.0)
            self.progress(round(min(done, 1.0), 4), message, self._step)

    def within(self, share: float, message: str) -> None:  # for step callbacks: also checks cancel
        self.report(share, message)
        self._check_cancel()

    def _check_cancel(self) -> None:
        if self.cancel is not None and self.cancel():
            from core.jobs import JobCancelled

            raise JobCancelled("cancelled on request")

    def _close(self) -> None:
        if self._step:
            self.seconds[self._step] = round(self.seconds.get(self._step, 0.0) + time.perf_counter()
                                             - self._started, 3)

    def finish(self) -> dict[str, float]:
        self._close()
        self._step = ""
        self.seconds["total"] = round(sum(v for k, v in self.seconds.items() if k != "total"), 3)
        if self.progress is not None:
            self.progress(1.0, "done", "report")
        return self.seconds


# ---------------------------------------------------------------- the slide's tiles and embeddings


def _slide_folder(ws: Workspace, sha256: str, source_key: str, params) -> Path:
    key = cache_key("predict-slide", PREDICT_VERSION, source_key, asdict(params)).split(":", 1)[1]
    return predictions_dir(ws) / "slides" / f"{sha256[:32]}-{key[:16]}"


def _load_slide(folder: Path) -> tuple[SlideTiles, np.ndarray] | None:
    from core.predict.tiles import SlideTiles

    try:
        meta = json.loads((folder / "slide.json").read_text())
        with np.load(folder / "arrays.npz", allow_pickle=False) as data:
            thumbnail, mask, values = data["thumbnail"], data["tissue_mask"], data["values"]
        tiles = pd.read_parquet(folder / "tiles.parquet")
    except (OSError, ValueError, KeyError):
        return None
    return SlideTiles(meta["info"], thumbnail, meta["thumb_scale"], mask, tiles, meta["summary"],
                      meta["warnings"]), values


def _save_slide(folder: Path, tiles: SlideTiles, values: np.ndarray) -> None:
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path_for(folder)
    tmp.mkdir()
    try:
        tiles.tiles.to_parquet(tmp / "tiles.parquet", index=False)
        np.savez(tmp / "arrays.npz", thumbnail=tiles.thumbnail, tissue_mask=tiles.tissue_mask, values=values)
        meta = {"info": tiles.info, "thumb_scale": tiles.thumb_scale, "summary": tiles.summary,
                "warnings": tiles.warnings}
        (tmp / "slide.json").write_text(json.dumps(meta, indent=1, default=str))
        shutil.rmtree(folder, ignore_errors=True)
        tmp.rename(folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _slide_features(ws: Workspace, path: Path, sha256: str, model, params, steps: _Steps,
                    loading=None) -> tuple[SlideTiles, np.ndarray]:
    from core.predict.embedding import embed_slide_tiles
    from core.predict.tiles import slide_tiles

    folder = _slide_folder(ws, sha256, model.source.key, params)
    saved = _load_slide(folder)
    if saved is not None:
        steps.start("read", "slide read before (cached)")
        steps.start("tiles", "tiles QC'd before (cached)")
        steps.start("embed", "tiles embedded before (cached)")
        return saved
    steps.start("read", f"reading {path.name}")
    tiles = slide_tiles(path, params, progress=lambda share, message: steps.within(share, message),
                        on_read=lambda: steps.start("tiles", "QC of every tissue cell"))
    steps.start("embed", f"embedding {tiles.summary['kept']:,} tiles")
    if loading is not None:
        loading.join()
    kept = tiles.tiles[tiles.tiles["passed_qc"].to_numpy(bool)]
    values = embed_slide_tiles(path, kept, model.source, progress=steps.within, cancel=steps.cancel)
    _save_slide(folder, tiles, values)
    return tiles, values


# ---------------------------------------------------------------- the whole prediction


def predict_slide(ws: Workspace, data_dir: str | Path | None, slide_path: str | Path, request: PredictRequest,
                  progress: StepProgress | None = None, cancel: Cancel | None = None,
                  sha256: str | None = None, display_name: str | None = None) -> SlidePrediction:
    """Predict one slide (see the module docstring for caching); DataError naming the file for bad input.

    `data_dir`: the reference dataset (None: the one the run was trained on). `sha256`: the file's hash
    when the caller computed it while writing the file (an upload), else it is computed here.
    `display_name`: the name the user knows the file by (an upload's own name; its temp path is never shown):
    the report's slide_name and the name in a DataError about the file."""
    try:
        prediction = _predict(ws, data_dir, Path(slide_path), request, progress, cancel, sha256, display_name)
    except DataError as exc:
        if display_name and exc.path == str(Path(slide_path)):
            raise DataError(display_name, exc.problem) from None
        raise
    if display_name:
        prediction.slide_name = display_name
    return prediction


def _predict(ws: Workspace, data_dir: str | Path | None, path: Path, request: PredictRequest,
             progress: StepProgress | None, cancel: Cancel | None, sha256: str | None,
             display_name: str | None) -> SlidePrediction:
    started = time.perf_counter()
    if not path.is_file():
        raise DataError(path, "file not found" if not path.exists() else "not a file")
    model = run_model(request)
    data = reference_dir(ws, model, data_dir)
    sha = sha256 or file_sha256(path)
    folder = result_folder(ws, sha, request, data)
    hit = _usable(load_prediction(folder))
    if hit is None:
        folder.parent.mkdir(parents=True, exist_ok=True)
        with open(folder.with_name(folder.name + ".lock"), "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # one writer per entry; the other waits, then reads it
            hit = _usable(load_prediction(folder))
            if hit is None:
                prediction = _compute(ws, data, path, sha, request, model, _Steps(progress, cancel))
                if display_name:
                    prediction.slide_name = display_name
                save_prediction(folder, prediction)
                prediction.cached = False
                return prediction
    first = hit.seconds.get("total")
    hit.seconds = {"total": round(time.perf_counter() - started, 3)}
    if first is not None:
        hit.seconds["first_run_total"] = first
    if progress is not None:
        progress(1.0, "read from the cache", "report")
    return hit


def _tile_columns(tiles: pd.DataFrame, probs: np.ndarray, classes: list[str]) -> pd.DataFrame:
    tiles = tiles.copy()
    kept = tiles["passed_qc"].to_numpy(bool)
    best = probs.argmax(axis=1) if len(probs) else np.zeros(0, int)
    predicted = np.full(len(tiles), "", dtype=object)
    predicted[kept] = np.asarray(classes, dtype=object)[best]
    confidence = np.full(len(tiles), np.nan)
    confidence[kept] = probs[np.arange(len(best)), best]
    tiles["predicted_tissue"] = predicted.astype(str)
    tiles["confidence"] = confidence
    for i, name in enumerate(classes):
        column = np.full(len(tiles), np.nan)
        column[kept] = probs[:, i]
        tiles[f"p_{name}"] = column
    return tiles


def _ranking(ws: Workspace, reference, model, request: PredictRequest, steps: _Steps):
    """(ranking or None, notes, folder it would be saved in when missing)."""
    from core.ranking.jobs import cached_ranking_for

    try:
        lookup = cached_ranking_for(ws, reference.data_dir, reference.cohort, model.source, request.ranking)
    except DataError as exc:
        return None, [f"no gene expression predicted: the reference cannot be ranked ({exc})"], None
    if lookup.ranking is not None:
        return lookup.ranking, [], None
    if request.compute_ranking:
        from core.ranking.api import rank_genes

        steps.report(0.0, "ranking genes on the reference (once per run; minutes)")
        ranking = rank_genes(ws, reference.data_dir, model.source, request.ranking, cohort=reference.cohort,
                             progress=lambda d, t, m="": steps.within(d / max(t, 1), f"gene ranking: {m}"),
                             cancel=steps.cancel)
        return ranking, [], None
    run = model.run_dir.name
    command = f"python -m core rank --run {run} --epoch {model.source.epoch} --data {reference.data_dir}"
    return None, [f"no gene ranking for this run's checkpoint yet (missing: {lookup.missing}): expression is not "
                  f"predicted. Rank genes on the Gene rankings page or with `{command}`"], lookup.folder


def _leave_donor_out(reference: Reference, donor: SlideDonor) -> tuple[Reference, dict]:
    """(the reference without the slide's donor's slides, what was left out and why) (issue 19 item 6: the
    gene models, neighbours, OOD distance and map place never see the slide's own donor)."""
    from core.predict.reference import without_donor

    described = {"excludes_donor": None, "subject_id": donor.subject_id, "sample_id": donor.sample_id,
                 "slides_left_out": [], "note": donor.how}
    if donor.subject_id is None:
        return reference, described
    kept = without_donor(reference, donor.subject_id)
    if len(kept.sample_ids) < 2:
        described.update(excludes_donor=False, note=f"{donor.how}, but leaving donor {donor.subject_id} out would "
                                                    "leave fewer than 2 reference slides: the reference keeps them")
        return reference, described
    left_out = list(kept.excluded_ids)
    described.update(excludes_donor=True, slides_left_out=left_out,
                     note=f"{donor.how} (donor {donor.subject_id}): the reference leaves that donor's "
                          f"{len(left_out)} slide(s) out of the gene models, neighbours, OOD distance and map")
    return kept, described


def _compute(ws: Workspace, data: Path, path: Path, sha: str, request: PredictRequest, model,
             steps: _Steps) -> SlidePrediction:
    # Every import of this step first, in this thread: the preload thread below is then the only one importing
    # torch (scikit-learn looks torch up for its array API when torch is loaded; two threads importing torch's
    # modules at once can register its kernels twice).
    from core.data.dataset import load_cohort
    from core.embed.compute import cached_folders
    from core.embed.heads import checkpoint_head
    from core.predict.embedding import preload
    from core.predict.expression import gene_models, predict_expression
    from core.predict.placement import place_on_map
    from core.predict.reference import check_tissues_fit, load_reference, nearest, slide_donor
    from core.predict.tiles import predict_tiling_params
    from core.predict.tissue import call_tissue
    from core.tiles.index import dataset_tiling_params

    params = predict_tiling_params(dataset_tiling_params(ws, data), model.classes)
    loading = None
    if _load_slide(_slide_folder(ws, sha, model.source.key, params)) is None:
        loading = preload(model.source)  # torch's imports and the checkpoint overlap the slide's read and QC

    cohort = load_cohort(data, ws)
    check_tissues_fit(cohort, data, model.classes)  # before any slide work
    tiles, values = _slide_features(ws, path, sha, model, params, steps, loading)
    notes = {"epoch": f"epoch {model.source.epoch}: {model.epoch_note}",
             "qc": f"JPEG-size bar {params.jpeg_kb_default:g} KB (the most lenient of the run's tissues)"}
    warnings = list(tiles.warnings)

    steps.start("tissue", "comparing with the reference slides")
    reference, reference_notes = load_reference(
        ws, data, model.source, model.classes,
        progress=lambda d, t, m="": steps.within(d / max(t, 1), f"reference embeddings: {m}"), cancel=steps.cancel,
        cohort=cohort)
    warnings += reference_notes
    reference, donor = _leave_donor_out(reference, slide_donor(cohort, path, sha))
    weight, bias, classes = checkpoint_head(model.source, cached_folders(ws, data, [model.source])[0])
    if list(classes) != list(model.classes):
        raise DataError(model.run_dir / "config.json", "the checkpoint's head classes differ from the run's")
    call = call_tissue(values, weight, bias, classes, reference)
    warnings += call.warnings
    tile_table = _tile_columns(tiles.tiles, call.probabilities, classes)

    steps.start("expression", "predicting expression")
    ranking, ranking_notes, missing_folder = _ranking(ws, reference, model, request, steps)
    warnings += ranking_notes
    empty_genes = pd.DataFrame({c: pd.Series(dtype=t) for c, t in (
        ("gene_id", str), ("symbol", str), ("predicted", float), ("r2", float), ("ref_tissue", str),
        ("ref_low", float), ("ref_median", float), ("ref_high", float))})
    genes, transcriptome = empty_genes, pd.DataFrame({"gene_id": [], "symbol": [], "predicted": []})
    expression = None
    if ranking is not None:
        models = gene_models(ws, ranking, request.ranking, reference.sample_ids, reference.values,
                             excluded=reference.excluded_ids)
        expression = predict_expression(models, ranking, values, call.tissue, request.r2_threshold,
                                        excluded=reference.excluded_ids)
        genes, transcriptome = expression.genes, expression.transcriptome
        notes["ranking"] = str(ranking.path)
        if genes.empty:
            warnings.append(f"no gene reaches the R² threshold {request.r2_threshold:g} in this run's ranking")
    elif missing_folder is not None:
        notes["ranking_folder_missing"] = str(missing_folder)

    steps.start("map", "placing the slide on the reference map")
    point = np.asarray(values, np.float64).mean(axis=0)
    place = place_on_map(ws, reference, point, request.map_method)
    neighbours = nearest(reference, point, request.neighbours)

    steps.start("report", "writing the report")
    seconds = steps.finish()
    k = expression.tile_scores.shape[1] if expression is not None else 0
    return SlidePrediction(
        file_sha256=sha, slide_name=path.name, info=tiles.info, thumbnail=tiles.thumbnail,
        thumb_scale=float(tiles.thumb_scale), tissue_mask=tiles.tissue_mask, tiles=tile_table,
        tile_summary=tiles.summary, tissue=call.tissue, top3=call.top3, warnings=warnings, genes=genes,
        transcriptome=transcriptome, map=place, neighbours=neighbours, seconds=seconds, cached=False,
        request=request.to_dict(), run=str(model.run_dir), epoch=int(model.source.epoch), classes=list(classes),
        notes=notes, reference_donor=donor,
        tile_scores=expression.tile_scores if expression is not None else np.zeros((int(tiles.summary["kept"]), 0)),
        gene_coef=expression.gene_coef if expression is not None else np.zeros((k, 0)),
        gene_mean_y=expression.gene_mean_y if expression is not None else np.zeros(0),
        mean_z=expression.mean_z if expression is not None else np.zeros(k),
    )
