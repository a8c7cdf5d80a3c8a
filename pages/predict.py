"""Predict: one slide in (uploaded, or picked from the dataset), its tissue, tile heatmaps, predicted expression of
the recoverable genes, its place on the reference map and its nearest reference slides out. The prediction runs
in a background worker (core.predict, job kind "predict") and is cached by the file's SHA-256 and the request,
so a reload or a new tab finds it again (the slide's hash is kept in the URL)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import streamlit as st

from core import jobs
from core.base import DataError, JobBusyError
from core.embed import FeatureSource, checkpoint_epochs
from core.predict import (
    AUTO,
    LINK,
    STEP_SHARES,
    STEPS,
    PredictRequest,
    cached_prediction,
    file_sha256,
    launch_prediction,
    prediction_state,
)
from core.predict import figures as pf
from core.predict import upload as uploads
from core.ranking import RankParams, saved_ranking_params
from core.ranking import jobs as rank_jobs
from core.tiles import views as tile_views
from pages.common import compute_or_launch, dataset_dir, epoch_picker, get_cohort, get_workspace, runs_with_checkpoints
from pages.overview_cache import frozen, jpeg_bytes

# Every gene with R² >= 0 is predicted once; the page's threshold only filters what is shown, so moving the
# slider never starts a new prediction.
REQUEST_R2 = 0.0
STEP_LABELS = {"read": "read the slide", "tiles": "tile + QC", "embed": "embed tiles", "tissue": "tissue",
               "expression": "expression", "map": "map + neighbours", "report": "report"}
SLIDE_KEY = "predict-slide"  # this session's slide: {"sha", "name", "path", "source"}
JOBS_KEY = "predict-jobs"  # (sha, request key) -> job folder launched by this session

ws = get_workspace()
root = dataset_dir()
uploads.remove_stale_uploads(ws)

st.title("Predict")
st.caption("Drop in one slide and get its tissue, where on the slide each tissue and gene is predicted, the "
           "expression of the genes the run can recover with how far to trust each, and the reference slides it "
           "is closest to. The prediction runs in a background worker; a reload or a new tab finds it again.")


# ---------------------------------------------------------------- run, checkpoint, ranking
def restore_from_url(trained: list[Path]) -> None:
    """A fresh session (reload, new tab, shared link) takes its slide, run and epoch from the URL."""
    if st.session_state.get("_predict-restored"):
        return
    st.session_state["_predict-restored"] = True
    by_name = {p.name: p for p in trained}
    run = by_name.get(st.query_params.get("run", ""))
    if run is not None:
        st.session_state["predict-run"] = run
        epoch = st.query_params.get("epoch", "")
        if epoch.isdigit() and int(epoch) in checkpoint_epochs(run):
            st.session_state["predict-epoch"] = int(epoch)
    if st.query_params.get("map") in ("umap", "tsne", "pca"):
        st.session_state["predict-map"] = st.query_params["map"]
    neighbours = st.query_params.get("neighbours", "")
    if neighbours.isdigit() and 1 <= int(neighbours) <= 20:
        st.session_state["predict-neighbours"] = int(neighbours)
    rank = st.query_params.get("rank", "").split("-")
    if len(rank) == 3 and all(part.isdigit() for part in rank):
        st.session_state["_predict-rank-link"] = tuple(int(part) for part in rank)
    sha = st.query_params.get("slide", "")
    if len(sha) == 64 and all(c in "0123456789abcdef" for c in sha) and SLIDE_KEY not in st.session_state:
        name = st.query_params.get("name") or None
        st.session_state[SLIDE_KEY] = {"sha": sha, "name": name, "path": None, "source": "link"}
    elif not sha and not st.query_params.get("run"):
        open_on_tour(trained)


def open_on_tour(trained: list[Path]) -> None:
    """A session without a link opens on the demo tour's prediction (core.tour.steps.tour_record): the dataset slide of
    a held-out test donor it predicted with the run this page opens on, so the page shows it at once."""
    from core.tour import tour_record

    record = tour_record(ws)
    sample, run = record.get("predicted_sample"), record.get("run_dir")
    if not sample or not run or record.get("data_dir") != str(root) or not trained or Path(run) != trained[0]:
        return
    st.session_state["predict-mode"] = "A slide of the dataset"
    st.session_state["predict-sample"] = sample


def request_controls(trained: list[Path]) -> PredictRequest | None:
    cols = st.columns([3, 2])
    run_dir = cols[0].selectbox("Run", trained, key="predict-run", format_func=lambda p: p.name,
                                help="defaults to the best finished run (highest validation accuracy)")
    if st.session_state.get("_predict-epoch-run") not in (None, str(run_dir)) \
            or st.session_state.get("predict-epoch") not in checkpoint_epochs(run_dir):
        st.session_state.pop("predict-epoch", None)  # another run was chosen: open on its selected epoch
    st.session_state["_predict-epoch-run"] = str(run_dir)
    epoch = epoch_picker(ws, cols[1], run_dir, "predict-epoch")
    with st.expander("Gene ranking and map"):
        ranking = ranking_choice(run_dir, int(epoch))
        method = st.radio("Reference map", ["umap", "tsne", "pca"], horizontal=True, key="predict-map",
                          format_func={"umap": "UMAP", "tsne": "t-SNE (placed by PCA)", "pca": "PCA"}.get)
        neighbours = int(st.number_input("Nearest reference slides", 1, 20, 5, key="predict-neighbours"))
    st.query_params.update(run=run_dir.name, epoch=str(epoch), map=method, neighbours=str(neighbours),
                           rank=f"{ranking.components}-{ranking.folds}-{ranking.repeats}")
    try:
        return PredictRequest(run_dir=str(run_dir.resolve()), epoch=int(epoch),
                              ranking=ranking,
                              r2_threshold=REQUEST_R2, neighbours=neighbours, map_method=method)
    except DataError as exc:
        st.error(str(exc))
        return None


def _describe(params: RankParams) -> str:
    return f"{params.components} components · {params.folds} folds x {params.repeats} repeats"


def ranking_choice(run_dir: Path, epoch: int) -> RankParams:
    """That run's gene ranking: one already saved for this checkpoint (newest first), or parameters to rank with."""
    saved = saved_ranking_params(ws, run_dir, epoch)
    custom = "other parameters"
    linked = st.session_state.pop("_predict-rank-link", None)  # (components, folds, repeats) from the URL
    if linked is not None:
        match = [p for p in saved if (p.components, p.folds, p.repeats) == linked]
        st.session_state["predict-ranking"] = match[0] if match else custom
        if not match:
            st.session_state.update({"predict-comp": min(512, max(1, linked[0])),
                                     "predict-folds": min(10, max(2, linked[1])),
                                     "predict-repeats": min(50, max(1, linked[2]))})
    if saved:
        picked = st.selectbox("Gene ranking", [*saved, custom], key="predict-ranking",
                              format_func=lambda p: p if isinstance(p, str) else f"saved: {_describe(p)}",
                              help="the rankings of this checkpoint already computed (Gene rankings page)")
        if not isinstance(picked, str):
            return picked
    else:
        st.caption("No gene ranking of this checkpoint yet: the tissue is predicted, the expression needs a ranking "
                   "with these parameters.")
    defaults = RankParams()
    inner = st.columns(3)
    components = int(inner[0].number_input("PCA components", 1, 512, defaults.components, key="predict-comp"))
    folds = int(inner[1].number_input("Folds", 2, 10, defaults.folds, key="predict-folds"))
    repeats = int(inner[2].number_input("Repeats", 1, 50, defaults.repeats, key="predict-repeats"))
    return RankParams(components=components, folds=folds, repeats=repeats)


# ---------------------------------------------------------------- the slide
def upload_limit_bytes() -> int:
    return int(st.get_option("server.maxUploadSize")) * 1024 * 1024


def upload_input():
    """The file picker; a new file is saved (streamed, hashed) once and becomes this session's slide. Returns
    the uploaded file while the picker holds it (to save it again when its temporary copy is gone)."""
    limit = upload_limit_bytes()
    kinds = ", ".join(e.lstrip(".").upper() for e in (".svs", ".ndpi", ".scn", ".czi", ".ome.tiff", ".tiff",
                                                          ".jpeg", ".png"))
    # No `type=`: Streamlit would refuse other files with an exception; core.predict.upload says which file and why.
    file = st.file_uploader(f"Slide file ({kinds}; up to {uploads.describe_size(limit)})", key="predict-file",
                            help="saved to a private temporary file in the workspace and deleted once the "
                                 "prediction is done, unless you keep it")
    st.checkbox("Keep the uploaded slide in the workspace after the prediction", key="predict-keep",
                help=f"kept as {ws.root / uploads.UPLOADS / uploads.KEPT}/<sha256>.<ext>")
    if file is None:
        if st.session_state.pop("predict-file-id", None) is not None:  # the user removed the file: clear its result
            st.session_state.pop(SLIDE_KEY, None)
            st.session_state.pop("predict-upload-error", None)
            for name in ("slide", "name"):
                st.query_params.pop(name, None)
        return None
    if st.session_state.get("predict-file-id") == file.file_id:
        return file  # saved on an earlier run
    st.session_state["predict-file-id"] = file.file_id
    st.session_state.pop("predict-upload-error", None)
    try:
        saved = save(file)
    except DataError as exc:
        st.session_state["predict-upload-error"] = str(exc)
        st.session_state.pop(SLIDE_KEY, None)
        return None
    st.session_state[SLIDE_KEY] = {"sha": saved.sha256, "name": saved.name, "path": str(saved.path),
                                   "size": saved.size, "source": "upload", "file_id": file.file_id, "launched": []}
    return file


def save(file) -> uploads.Upload:
    """Stream the uploaded file to a private temporary file (DataError naming it when refused)."""
    file.seek(0)
    with st.spinner(f"Saving {file.name} ..."):
        return uploads.save_upload(ws, file, file.name, upload_limit_bytes(), size=file.size)


def slide_file(slide: dict[str, Any], file) -> Path | None:
    """The slide's file on disk; an upload whose temporary copy was deleted after an earlier prediction is
    saved again from the picker (same content, same hash) when the picker still holds it."""
    path = Path(slide["path"]) if slide.get("path") else None
    if path is not None and path.exists():
        return path
    if slide["source"] != "upload" or file is None or file.file_id != slide.get("file_id"):
        return None
    saved = save(file)
    slide["path"] = str(saved.path)
    return saved.path


@st.cache_resource(show_spinner="Hashing the slide ...", max_entries=64)
def _dataset_sha(path: str, size: int, mtime_ns: int, inode: int) -> str:
    return file_sha256(path)


def dataset_input() -> dict[str, Any] | None:
    """A slide of the configured dataset (its file is never deleted)."""
    cohort = get_cohort(root)
    slides = cohort.samples[cohort.samples["has_slide"].astype(bool)]
    if slides.empty:
        st.info(f"The dataset {root} has no slides.")
        return None
    labels = dict(zip(slides["sample_id"], slides["tissue"], strict=True))
    sample = st.selectbox("Slide of the dataset", list(labels), key="predict-sample",
                          format_func=lambda s: f"{s} ({labels[s]})")
    path = Path(slides.set_index("sample_id").at[sample, "slide_path"])
    try:
        stat = path.stat()
        sha = _dataset_sha(str(path), stat.st_size, stat.st_mtime_ns, stat.st_ino)
    except (OSError, DataError) as exc:
        st.error(f"{path.name}: cannot read the slide ({exc})")
        return None
    return {"sha": sha, "name": path.name, "path": str(path), "source": "dataset"}


# ---------------------------------------------------------------- the job
def _session_jobs() -> dict[str, str]:
    return st.session_state.setdefault(JOBS_KEY, {})


def start(slide: dict[str, Any], file, request: PredictRequest, request_key: str) -> None:
    """Start the prediction of this session's slide (JobBusyError or DataError when refused); stops the page when
    the slide's file is gone."""
    slide.setdefault("launched", []).append(request_key)
    try:
        path = slide_file(slide, file)
    except DataError as exc:
        st.error(str(exc))
        st.stop()
    if path is None:
        st.info("This slide's prediction is not saved for this run and checkpoint: upload the slide again to "
                "predict it.")
        st.stop()
    delete = slide["source"] == "upload"
    if delete and st.session_state.get("predict-keep"):
        kept = uploads.keep_upload(ws, uploads.Upload(path, slide["sha"], int(slide.get("size") or 0),
                                                      slide["name"]))
        path, delete = kept.path, False
        slide["path"] = str(path)
    job = launch_prediction(ws, None, path, request, delete_slide=delete, sha256=slide["sha"],
                            name=slide.get("name"))
    _session_jobs()[f"{slide['sha']}:{request_key}"] = str(job.dir)


def _named(message: str, slide: dict[str, Any]) -> str:
    """A message about the temporary upload file, told with the name the user gave the file (without the
    exception type a worker's one-line error starts with)."""
    message = message.removeprefix("DataError: ")
    if slide.get("path") and slide.get("name"):
        message = message.replace(str(slide["path"]), slide["name"])
    return message


def step_line(step: str) -> str:
    """The steps with their share of the bar: done ones ticked, the current one in bold."""
    current = STEPS.index(step) if step in STEPS else -1
    parts = []
    for i, name in enumerate(STEPS):
        text = f"{STEP_LABELS.get(name, name)} {STEP_SHARES.get(name, 0):.0%}"
        parts.append(f"**{text}**" if i == current else f"✓ {text}" if i < current else text)
    return " → ".join(parts)


def progress_panel(job: jobs.Job, slide: dict[str, Any]) -> None:
    """The running prediction: one bar where each step has its share, the step under way, cancel."""

    @st.fragment(run_every=1.0)
    def _panel() -> None:
        status = job.status()
        state = status.get("state")
        progress = status.get("progress") or {}
        total = progress.get("total") or 1
        done = min(1.0, float(progress.get("done") or 0) / float(total))
        step = progress.get("step") or ""
        text = f"Predicting {slide.get('name') or 'the slide'}: {done:.0%}"
        if progress.get("message"):
            text += f" · {progress['message']}"
        st.progress(done, text=text)
        st.caption(step_line(step))
        if state == jobs.RUNNING:
            if st.button("Cancel the prediction", key=f"predict-cancel-{job.id}"):
                jobs.request_cancel(job)
        else:
            st.rerun(scope="app")

    _panel()


def job_outcome(status: dict[str, Any], slide: dict[str, Any]) -> None:
    """A failed or cancelled job's outcome, then the page stops (nothing to draw, nothing started again)."""
    if status.get("state") == jobs.FAILED:
        name = slide.get("name") or "The slide"
        st.error(_named(status.get("error") or "unknown error", slide), icon=":material/error:")
        if slide["source"] == "upload":
            st.caption(f"Nothing else was changed. Upload another file to try again ({name} is not kept).")
    else:
        st.info("The prediction was cancelled.")
    st.stop()


# ---------------------------------------------------------------- the result (cached per server)
class _NotKept(Exception):
    """A result st.cache_resource must not remember: none yet, or one without genes (a gene ranking made later
    gives the same request a new result)."""

    def __init__(self, found=None) -> None:
        super().__init__()
        self.found = found


@st.cache_resource(show_spinner="Reading the prediction ...", max_entries=8)
def _prediction(sha: str, request_key: str, _request: PredictRequest):
    found = cached_prediction(ws, sha, _request)
    if found is None or found.genes is None or found.genes.empty:
        raise _NotKept(found)
    return found


def prediction_for(sha: str, request_key: str, request: PredictRequest):
    try:
        return _prediction(sha, request_key, request)
    except _NotKept as missing:
        return missing.found


@st.cache_resource(show_spinner=False, max_entries=8)
def _tissue_figure(sha: str, request_key: str, _p) -> Any:
    return frozen(pf.tissue_overlay(_p.thumbnail, _p.thumb_scale, _p.tiles, _p.classes))


@st.cache_resource(show_spinner=False, max_entries=32)
def _gene_figure(sha: str, request_key: str, gene_id: str, label: str, _p) -> Any:
    return frozen(pf.gene_overlay(_p.thumbnail, _p.thumb_scale, _p.tiles, _p.tile_gene_map(gene_id), label))


@st.cache_resource(show_spinner=False, max_entries=8)
def _small_figures(sha: str, request_key: str, name: str, _p) -> dict[str, Any]:
    shown = {"top3": frozen(pf.top3_bar(_p.top3, _p.classes)), "tiles": frozen(pf.tile_outcomes_bar(_p.tile_summary))}
    if _p.map:
        shown["map"] = frozen(pf.reference_map(_p.map, _p.neighbours, name))
    return shown


@st.cache_resource(show_spinner=False, max_entries=64)
def _neighbour_thumbnail(path: str, size: int, mtime_ns: int) -> bytes | str:
    try:
        shown = tile_views.slide_thumbnail(ws, path, max_side=320)
    except DataError as exc:
        return str(exc)
    return jpeg_bytes(shown["thumb"])


@st.cache_data(show_spinner=False, max_entries=8)
def _downloads(sha: str, request_key: str, _p) -> tuple[bytes, bytes]:
    return json.dumps(_p.to_json(), indent=2, default=str).encode(), _p.to_csv().encode()


def _seconds(seconds: dict[str, float] | None) -> float | None:
    """How long the prediction took when it was computed (a result read back also says how long that took)."""
    seconds = seconds or {}
    return seconds.get("first_run_total", seconds.get("total"))


def _fmt(value: Any, pattern: str = "{:.2f}") -> str:
    try:
        return "—" if value is None or not np.isfinite(float(value)) else pattern.format(float(value))
    except (TypeError, ValueError):
        return str(value)


def draw(p, request: PredictRequest, request_key: str, name: str) -> None:
    sha = p.file_sha256
    figures = _small_figures(sha, request_key, name, p)
    st.subheader(name)
    for warning in p.warnings:
        st.warning(warning, icon=":material/warning:")
    info = p.info or {}
    magnification = f"{_fmt(info.get('magnification'), '{:.0f}')}x"
    if info.get("magnification_assumed"):
        magnification += " (assumed: the file does not state it)"
    mpp = f"{_fmt(info.get('mpp'), '{:.3f}')} µm/px" + (" (assumed)" if info.get("mpp_assumed") else "")
    summary_tiles = p.tile_summary
    cols = st.columns([1.4, 2, 2])
    with cols[0]:
        st.caption("Predicted tissue")
        st.markdown(f"### {p.tissue}")
        if p.top3:
            st.markdown(f"**{p.top3[0]['probability']:.0%}**: the mean of the kept tiles' probabilities")
        st.caption(f"{info.get('width', '?')} x {info.get('height', '?')} px · magnification {magnification} · "
                   f"{mpp} · predicted in {_fmt(_seconds(p.seconds), '{:.1f}')} s · "
                   f"SHA-256 {sha[:12]}…")
        for note_name, note in (p.notes or {}).items():
            label = note_name.upper() if len(note_name) <= 3 else note_name.replace("_", " ").capitalize()
            st.caption(f"{label}: {note}")
    cols[1].plotly_chart(figures["top3"], width="stretch", key="predict-top3")
    reasons = {k: int(v) for k, v in (summary_tiles.get("rejected") or {}).items() if int(v)}
    rejected = sum(reasons.values())
    cols[2].plotly_chart(figures["tiles"], width="stretch", key="predict-tiles")
    cols[2].caption(f"{int(summary_tiles.get('considered', 0)):,} tiles considered, "
                    f"{int(summary_tiles.get('kept', 0)):,} kept, {rejected:,} rejected "
                    f"({', '.join(f'{k}: {v}' for k, v in reasons.items()) or 'none'}) by the training data's QC.")

    heatmaps = st.container()
    genes = expression(p, request)
    with heatmaps:
        left, right = st.columns(2)
        left.plotly_chart(_tissue_figure(sha, request_key, p), width="stretch", key="predict-tissue-map")
        left.caption("Each kept tile tinted by its predicted tissue; the stronger the tint, the more confident the "
                     "tile. Hover a tile for its tissue and confidence.")
        scenes = pf.scene_statement(p.tiles, info.get("scenes"))
        if scenes:
            st.info(scenes, icon=":material/layers:")
        if p.genes is None or p.genes.empty:
            right.info("No gene map: this prediction has no expression (no gene ranking).")
        elif genes.empty:
            right.info("No gene clears the R² threshold: lower it to see a gene's map.")
        else:
            options = list(genes["gene_id"])
            symbols = dict(zip(genes["gene_id"], genes["symbol"], strict=True))
            if st.session_state.get("predict-gene") not in options:
                st.session_state.pop("predict-gene", None)
            gene_id = right.selectbox("Gene on the slide", options, key="predict-gene",
                                      format_func=lambda g: f"{symbols[g]} ({g})",
                                      help="the gene's ridge model applied to each tile: the tiles average "
                                           "exactly to the slide's prediction")
            right.plotly_chart(_gene_figure(sha, request_key, gene_id, str(symbols[gene_id]), p), width="stretch",
                               key="predict-gene-map")
    reference(p, request_key, name)
    json_bytes, csv_bytes = _downloads(sha, request_key, p)
    stem = Path(name).stem
    cols = st.columns(4)
    cols[0].download_button("Download the report (JSON)", json_bytes, f"{stem}-prediction.json", "application/json",
                            key="predict-json")
    cols[1].download_button("Download the report (CSV)", csv_bytes, f"{stem}-prediction.csv", "text/csv",
                            key="predict-csv")


def expression(p, request: PredictRequest) -> pd.DataFrame:
    """The expression table above the user's R² threshold and the coarser whole-transcriptome estimate; returns
    the genes shown (what the gene heatmap offers)."""
    st.subheader("Predicted expression")
    if p.genes is None or p.genes.empty:
        st.info("No gene ranking for this run at these parameters, so no expression is predicted. Rank the run's "
                "genes (below, or on the Gene rankings page), then predict again.")
        rank_button(request)
        return pd.DataFrame(columns=["gene_id", "symbol"])
    threshold = st.slider("Show genes whose cross-validated R² is at least", 0.0, 1.0, 0.1, 0.05,
                          key="predict-r2", help="R² of the gene's ridge model on held-out donors: how far to trust "
                                                 "its prediction")
    shown = pf.expression_table(p.genes, threshold)
    st.dataframe(shown, hide_index=True, width="stretch", height=min(320, 35 * (len(shown) + 1) + 3),
                 column_config={c: st.column_config.NumberColumn(format="%.2f") for c in shown.columns
                                if c not in ("Gene", "Ensembl ID", "Reference tissue")})
    st.caption(f"{len(shown):,} of {len(p.genes):,} ranked genes have R² ≥ {threshold:.2f}. Predicted log2(1 + TPM) "
               "from the slide embedding by each gene's ridge; the reference range is the 5th-95th percentile of "
               f"the reference samples of {p.tissue}.")
    if p.transcriptome is not None and not p.transcriptome.empty:
        with st.expander(f"Whole-transcriptome estimate ({len(p.transcriptome):,} genes): cluster average, the "
                         "coarser method"):
            st.caption("Every gene estimated as the mean expression of the reference slides in this slide's "
                       "embedding cluster (k-means): coarser than the per-gene models above, and not validated "
                       "gene by gene.")
            st.dataframe(pf.transcriptome_table(p.transcriptome), hide_index=True, width="stretch", height=300)
    keep = p.genes[p.genes["r2"].astype(float) >= threshold].sort_values("r2", ascending=False)
    return keep[["gene_id", "symbol"]]


def rank_button(request: PredictRequest) -> None:
    source = FeatureSource.checkpoint(Path(request.run_dir), request.epoch)
    params = request.ranking
    if st.button("Rank this run's genes (background job, minutes)", key="predict-rank"):
        try:
            rank_jobs.launch_ranking(ws, root, source, params)
            st.toast("Ranking started: the Gene rankings page shows its progress.")
        except (DataError, JobBusyError) as exc:
            st.warning(str(exc))


def reference(p, request_key: str, name: str) -> None:
    st.subheader("Among the reference slides")
    st.caption(f"Reference: {(getattr(p, 'reference_donor', None) or {}).get('note') or 'every dataset slide'}.")
    if not p.map:
        st.info("No reference map for this run.")
        return
    left, right = st.columns([3, 2])
    shown = _small_figures(p.file_sha256, request_key, name, p)
    left.plotly_chart(shown["map"], width="stretch", key="predict-ref-map")
    if p.map.get("note"):
        left.caption(str(p.map["note"]))
    right.markdown("**Nearest reference slides** (distance in embedding space)")
    neighbours = p.neighbours if p.neighbours is not None else pd.DataFrame()
    grid = right.columns(2)
    for i, row in enumerate(neighbours.itertuples()):
        cell = grid[i % 2]
        caption = f"{row.sample_id} · {row.tissue} · distance {row.distance:.3g}"
        path = Path(str(getattr(row, "slide_path", "") or ""))
        try:
            stat = path.stat()
            shown = _neighbour_thumbnail(str(path), stat.st_size, stat.st_mtime_ns)
        except OSError:
            shown = f"{path.name}: slide file not found"
        if isinstance(shown, bytes):
            cell.image(shown, caption=caption, width="stretch")
        else:
            cell.caption(f"{caption}: {shown}")


# ---------------------------------------------------------------- the page
trained = runs_with_checkpoints(ws)
if not trained:
    st.error("No trained run yet: a prediction needs a trained tissue classifier (and, for expression, its gene "
             "ranking).", icon=":material/error:")
    st.page_link("pages/training.py", label="Train one on the Training page", icon=":material/model_training:")
    st.stop()
restore_from_url(trained)
request = request_controls(trained)
mode = st.radio("Slide", ["Upload a slide", "A slide of the dataset"], horizontal=True, key="predict-mode",
                label_visibility="collapsed")
file = None
if mode == "Upload a slide":
    file = upload_input()
    if st.session_state.get("predict-upload-error"):
        st.error(st.session_state["predict-upload-error"], icon=":material/error:")
    slide = st.session_state.get(SLIDE_KEY)
else:
    slide = dataset_input()
if request is None or slide is None:
    st.stop()
st.query_params["slide"] = slide["sha"]
if slide.get("name"):
    st.query_params["name"] = slide["name"]
try:
    request_key = request.key
except DataError as exc:
    st.error(str(exc))
    st.stop()
state = prediction_state(ws, slide["sha"], request, request_key,
                         lambda: prediction_for(slide["sha"], request_key, request), source=slide["source"],
                         known_job=_session_jobs().get(f"{slide['sha']}:{request_key}"),
                         launched=slide.get("launched") or ())
if state.offer == LINK:
    st.info("The slide in this link has no saved prediction for this run and checkpoint: upload it to predict it.")
    st.stop()
prediction = compute_or_launch(
    lambda: state.prediction, lambda: state.running, lambda: state.ended,
    lambda: start(slide, file, request, request_key), f"Predict {slide['name']}", key="predict-go",
    auto=state.offer == AUTO, show_job=lambda job: progress_panel(job, slide),
    show_failure=lambda status: job_outcome(status, slide),
    show_error=lambda exc: st.error(_named(str(exc), slide)))
if prediction is None:
    st.stop()
if slide["source"] == "upload" and slide.get("path") and Path(slide["path"]).exists():
    # the result is saved: the temporary copy is kept only when asked for
    if st.session_state.get("predict-keep"):
        slide["path"] = str(uploads.keep_upload(ws, uploads.Upload(Path(slide["path"]), slide["sha"],
                                                                   int(slide.get("size") or 0), slide["name"])).path)
    else:
        uploads.delete_upload(ws, slide["path"])
draw(prediction, request, request_key, slide.get("name") or prediction.slide_name or "The slide")
