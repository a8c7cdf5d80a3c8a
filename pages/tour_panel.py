"""The demo tour's panel on the first page: a button that starts the tour job, its steps with their state and
progress while it runs (found again from the job's state on disk after a reload, a new tab or a server
restart), and links to every page when it is done. No science here: core.tour.steps runs the steps."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import streamlit as st
from streamlit.errors import StreamlitAPIException

from core import jobs
from core.base import DataError, JobBusyError, Workspace
from core.tour import jobs as tour_jobs
from core.tour import steps as tour
from core.train import runs

ICONS = {tour.PENDING: ":material/radio_button_unchecked:", tour.RUNNING: ":material/progress_activity:",
         tour.DONE: ":material/check_circle:", tour.CACHED: ":material/check_circle:",
         tour.FAILED: ":material/error:", tour.CANCELLED: ":material/pause_circle:"}
PAGES = {"overview": ("pages/overview.py", "Dataset overview", ":material/dataset:"),
         "training": ("pages/training.py", "Training", ":material/model_training:"),
         "explorer": ("pages/explorer.py", "Embeddings explorer", ":material/scatter_plot:"),
         "rankings": ("pages/rankings.py", "Gene rankings", ":material/format_list_numbered:"),
         "predict": ("pages/predict.py", "Predict", ":material/online_prediction:")}
ABOUT = ("One click fills every page on the demo cohort: it tiles the slides, trains the default model (about 6 "
         "of the ~10 minutes on 2 CPU cores), embeds the tiles with the epoch selected on validation, computes the "
         "explorer's slide map and ranks every gene. It runs in a background worker: leave the page, reload or "
         "open a new tab, and it is still here. Steps already done are skipped, so a cancelled tour continues.")


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return ""
    return f"{seconds:.0f} s" if seconds < 90 else runs.format_duration(seconds)


def _elapsed(status: dict) -> float | None:
    try:
        start = datetime.fromisoformat(str(status.get("started")))
        end = datetime.fromisoformat(str(status.get("ended") or status.get("updated")))
    except ValueError:
        return None
    return max(0.0, (end - start).total_seconds())


def done_message(rows: list[dict], seconds: float | None) -> str:
    """What a finished tour says; a tour that only found cached results says so, not that the work took 1 s."""
    cached = sum(row["state"] == tour.CACHED for row in rows)
    took = _duration(seconds)
    if rows and cached == len(rows):
        when = f" (checked in {took})" if took else ""
        return f"The demo tour is done: every step's result was already there{when}. Every page opens on its results."
    parts = [part for part in (took, f"{cached} of {len(rows)} steps were already done" if cached else "") if part]
    detail = " (" + "; ".join(parts) + ")" if parts else ""
    return f"The demo tour is done{detail}: every page now opens on its results."


def _step_line(row: dict) -> str:
    state = row["state"]
    text = f"{ICONS.get(state, '')} **{row['label']}** · {state}"
    if state == tour.CACHED:
        text += " (already done: skipped)"
    if row.get("seconds") is not None and state != tour.CACHED:
        text += f" · {_duration(row['seconds'])}"
    if state in (tour.RUNNING, tour.FAILED) and row.get("message"):
        text += f"  \n  {row['message']}"
    return text


def draw_steps(status: dict) -> None:
    """The overall progress bar and each step with its state (the running one with its own bar)."""
    progress = status.get("progress") or {}
    done, total = progress.get("done") or 0.0, progress.get("total") or 1.0
    elapsed = _duration(_elapsed(status))
    st.progress(min(1.0, float(done) / float(total)), text=f"Demo tour: {status.get('state')} · "
                f"{float(done) / float(total):.0%}" + (f" · {elapsed}" if elapsed else ""))
    for row in tour.step_rows(status):
        st.markdown(_step_line(row))
        if row["state"] == tour.RUNNING:
            st.progress(min(1.0, float(row.get("fraction") or 0.0)))


def _summary(page: str, results: dict[str, dict]) -> str:
    """One line under a page's link: what the tour left there."""
    train, rank = results.get("train") or {}, results.get("rank") or {}
    if page == "training" and train.get("epoch") is not None:
        return f"run {Path(str(train.get('run_dir'))).name}, epoch {train['epoch']} selected on validation"
    if page == "explorer":
        embed = results.get("embed") or {}
        return f"slide map of {embed.get('tiles', '?')} tiles' embeddings (PCA; other maps on demand)"
    if page == "rankings" and rank.get("genes") is not None:
        recovered = f", {rank['recovered']} recovered" if rank.get("recovered") is not None else ""
        return f"{rank['genes']} genes ranked{recovered}"
    predict = results.get("predict") or {}
    if page == "predict" and predict.get("sample_id"):
        truth = f" (its tissue: {predict['true_tissue']})" if predict.get("true_tissue") else ""
        return f"held-out slide {predict['sample_id']} called {predict.get('tissue')}{truth}"
    return ""


def _links(rows: list[dict]) -> None:
    """A link to each page the tour filled (not this one), with what it left there."""
    results = {row["name"]: row.get("result") or {} for row in rows}
    here = Path(__file__).parent
    shown = [page for page in dict.fromkeys(row.get("page") for row in rows)
             if page in PAGES and page != "overview" and (here / Path(PAGES[page][0]).name).exists()]
    cols = st.columns(len(shown))
    for col, page in zip(cols, shown, strict=True):
        path, label, icon = PAGES[page]
        try:
            col.page_link(path, label=label, icon=icon)
        except StreamlitAPIException:  # a page file not (yet) in app.py's navigation
            col.markdown(f"**{label}**")
        col.caption(_summary(page, results))


def live_tour(job_dir: Path, until_done: str | None = None) -> None:
    """The running tour, refreshed every second; the whole page reruns when it ends, or once step `until_done`
    is done (the first-start screen waits only for the demo cohort)."""

    @st.fragment(run_every=1.0)
    def _panel() -> None:
        job = jobs.Job(job_dir)
        status = job.status()
        draw_steps(status)
        passed = until_done is not None and any(row["name"] == until_done and row["state"] in (tour.DONE, tour.CACHED)
                                                for row in tour.step_rows(status))
        if status.get("state") == jobs.RUNNING and not passed:
            if st.button("Cancel the tour", key="tour-cancel"):
                jobs.request_cancel(job)
                st.toast("Cancel requested: the tour stops at the next safe point; running it again continues.")
        else:
            st.rerun(scope="app")

    _panel()


def _launch_button(ws: Workspace, label: str, busy: jobs.Job | None) -> None:
    if busy is not None:
        st.button(label, disabled=True, key="tour-go", help=f"a {busy.kind} job is running; the tour can start "
                                                            "when it ends")
        return
    if st.button(label, type="primary", key="tour-go"):
        try:
            tour_jobs.launch_tour(ws)
        except (JobBusyError, DataError) as exc:
            st.warning(str(exc))
        else:
            st.rerun()


def tour_section(ws: Workspace) -> None:
    """The Demo tour block of the first page."""
    st.subheader("Demo tour")
    active = jobs.active_job(ws)
    if active is not None and active.kind == tour.KIND:
        live_tour(active.dir)
        return
    latest = tour_jobs.latest_tour(ws)
    try:
        status = latest.status() if latest is not None else None
    except DataError:
        status = None
    if status is None:
        st.caption(ABOUT)
        _launch_button(ws, "Run the demo tour", active)
        return
    rows = tour.step_rows(status)
    state = status.get("state")
    if state == jobs.DONE:
        st.success(done_message(rows, _elapsed(status)), icon=":material/check_circle:")
        _links(rows)
        with st.expander("The tour's steps"):
            draw_steps(status)
        return
    failed = next((row for row in rows if row["state"] == tour.FAILED), None)
    if state == jobs.FAILED:
        st.error(failed["message"] if failed and failed.get("message") else
                 f"The demo tour failed: {status.get('error') or 'unknown error'}")
        tail = status.get("log_tail") or (latest.log_tail(12) if latest is not None else [])
        if tail:
            with st.expander("The tour's log"):
                st.code("\n".join(tail) if isinstance(tail, list) else str(tail))
    else:
        stopped = next((row["label"] for row in rows if row["state"] == tour.CANCELLED), None)
        st.info(f"The demo tour was cancelled{f' at: {stopped}' if stopped else ''}. Resuming skips the steps "
                "already done (training continues from its last complete epoch).")
    draw_steps(status)
    _launch_button(ws, "Resume the demo tour", active)
