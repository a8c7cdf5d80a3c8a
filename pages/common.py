"""What every page shares: the workspace, the dataset, background-job panels. No science here."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import pandas as pd
import streamlit as st
from streamlit.runtime.pages_manager import PagesManager

from core import jobs
from core.base import (
    WORKSPACE_ENV,
    DataError,
    JobBusyError,
    Workspace,
    configured_data_dir,
    load_dataset_settings,
    workspace,
)
from core.data import Cohort, expression_ready, load_cohort
from core.data import jobs as load_jobs
from core.demo import demo_is_ready
from core.demo import jobs as demo_jobs
from core.embed import FeatureSource, checkpoint_epochs
from core.train import runs

ROUTED_KEY = "_routed_by_app"  # set by app.py before st.navigation runs a page
T = TypeVar("T")


@st.cache_resource
def _workspace(root: str) -> Workspace:
    return workspace(root or None)


@st.cache_resource
def _numba_warm_up(root: str) -> bool:
    from core.maps import start_warm_up

    return start_warm_up(workspace(root or None)) is not None


def warm_up_maps() -> None:
    """Start the numba warm-up process once per server and workspace (never blocks the page)."""
    _numba_warm_up(os.environ.get(WORKSPACE_ENV, ""))


def _leave_legacy_pages_mode() -> None:
    """Streamlit runs the first session after a server start in its old pages/-folder mode when a deep
    link (e.g. /training) is opened first, bypassing app.py's st.navigation; switch modes and rerun."""
    if not st.session_state.get(ROUTED_KEY) and PagesManager.uses_pages_directory:
        PagesManager.uses_pages_directory = False
        st.rerun()


def get_workspace() -> Workspace:
    """The workspace named by $HISTOGENE_WORKSPACE (read on each run, so tests can switch it)."""
    _leave_legacy_pages_mode()
    return _workspace(os.environ.get(WORKSPACE_ENV, ""))


def dataset_dir() -> Path:
    """The configured dataset, else the demo cohort (generated in a worker on first start)."""
    ws = get_workspace()
    configured = configured_data_dir()
    if configured is not None:
        return configured
    if not demo_is_ready(ws):
        st.title("HistoGene Explorer")
        st.info("First start: generating the synthetic GTEx-like demo cohort (about a minute, once).")
        job = jobs.active_job(ws)
        if job is not None and job.kind == "tour":  # the tour generates it as its first step: show the tour
            from pages.tour_panel import live_tour

            live_tour(job.dir, until_done="demo")  # then the page reruns on the cohort, the tour still shown
            st.stop()
        if job is None:
            try:
                job = demo_jobs.launch_demo(ws)
            except JobBusyError as exc:
                st.warning(str(exc))
                st.stop()
        job_panel(job.dir, rerun_when_done=True)
        st.stop()
    return ws.demo_dir


@st.cache_resource(show_spinner="Loading the cohort ...", max_entries=4)
def _cached_cohort(root: str, stamp: float, donor_column: str, parse_limit: int) -> Cohort:
    # reads the saved donor column itself; a GCT over parse_limit comes from the cache or not at all
    return load_cohort(Path(root), get_workspace(), gct_parse_limit=parse_limit)


def get_cohort(root: Path) -> Cohort:
    """The cohort, reloaded when the folder's files or its donor column change; bad input stops the page.

    A big GCT is never parsed here: until a `load` job has cached it, `expression_pending` is True
    (see `expression_loader`), and the cohort is reloaded on the first run after the cache is ready."""
    ws = get_workspace()
    stamp = max((p.stat().st_mtime for p in root.iterdir()), default=0.0) if root.is_dir() else 0.0
    donor_column = str(load_dataset_settings(ws, root).get("donor_column") or "")
    key = (str(root), stamp, donor_column, load_jobs.PAGE_PARSE_LIMIT_BYTES)
    try:
        cohort = _cached_cohort(*key)
        if cohort.expression_pending and expression_ready(cohort, ws):
            _cached_cohort.clear()
            cohort = _cached_cohort(*key)
        return cohort
    except DataError as exc:
        st.error(f"Could not load the dataset: {exc}")
        st.stop()


def expression_loader(cohort: Cohort, root: Path) -> None:
    """While the cohort's GCT is not cached: start the `load` job (or say why it waits or failed).
    The running job's progress shows in the page's job panel, which reruns the page when it ends."""
    if not cohort.expression_pending:
        return
    ws = get_workspace()
    active = jobs.active_job(ws)
    # a load that ended, yet nothing is cached: say why rather than relaunch in a loop
    last = load_jobs.last_attempt(ws, root, cohort.files.expression_gct) if active is None else None
    compute_or_launch(lambda: None, lambda: active, lambda: last, lambda: load_jobs.launch_load(ws, root),
                      "Load the expression matrix again", primary=False, show_job=_waiting_for_load,
                      show_failure=lambda status: _load_outcome(ws, status), auto=last is None,
                      rerun=False)  # the page's job panel picks the job up on this run


def _waiting_for_load(active: jobs.Job) -> None:
    if active.kind != load_jobs.KIND:
        st.info(f"The expression matrix is loaded once the running {active.kind} job ends; "
                "samples, slides and tissues are shown meanwhile.")


def _load_outcome(ws: Workspace, last: dict[str, Any]) -> None:
    if last.get("state") == "failed":
        st.error(f"Loading the expression matrix failed: {last.get('error') or 'unknown error'}")
    elif last.get("state") == "cancelled":
        st.info("Loading the expression matrix was cancelled.")
    else:
        st.warning(f"The expression matrix was read but could not be cached in {ws.cache_dir} "
                   "(see the load job's log); pages show it once it is cached.")


def donor_banner(cohort: Cohort) -> None:
    """The loud warning when samples without a donor ID count as their own donor (splits may leak)."""
    if cohort.donor_note:
        st.warning(cohort.donor_note, icon=":material/person_alert:")


def job_panel(job_dir: Path, rerun_when_done: bool = False, show_cancel: bool = True) -> None:
    """A self-refreshing panel for one background job: progress bar, message, cancel, outcome."""

    @st.fragment(run_every=1.0)
    def _panel() -> None:
        status = jobs.Job(job_dir).status()
        state = status.get("state", "unknown")
        progress = status.get("progress") or {}
        done, total = progress.get("done", 0), progress.get("total", 0) or 0
        label = f"{status.get('kind', 'job')} {status.get('id', '')}: {state}"
        if progress.get("message"):
            label += f" · {progress['message']}"
        st.progress(min(1.0, done / total) if total else 0.0, text=label)
        if state == "running":
            if show_cancel and st.button("Cancel", key=f"cancel-{status.get('id')}"):
                jobs.request_cancel(jobs.Job(job_dir))
                st.toast("Cancel requested: the worker stops at the next safe point.")
        elif state == "failed":
            st.error(f"The {status.get('kind', '')} job failed: {status.get('error', 'unknown error')}")
            tail = status.get("log_tail") or jobs.Job(job_dir).log_tail(20)
            if tail:
                st.code(tail if isinstance(tail, str) else "\n".join(tail))
        elif state in ("done", "cancelled") and rerun_when_done:
            st.rerun(scope="app")

    _panel()


def _one_line_failure(where: Any, status: dict[str, Any]) -> None:
    what = status.get("kind") or "background"
    if status.get("state") == jobs.CANCELLED:
        where.info(f"The last {what} job for this was cancelled.")
    else:
        where.error(f"The last {what} job for this failed: {status.get('error') or 'unknown error'}")


def compute_or_launch(cached: Callable[[], T | None], running: Callable[[], jobs.Job | None],
                      last_attempt: Callable[[], dict[str, Any] | None] | None, launch: Callable[[], Any],
                      label: str, *, where: Any = None, key: str | None = None, primary: bool = True,
                      missing: Callable[[], None] | None = None, busy: jobs.Job | None = None,
                      busy_note: str | None = None, auto: bool = False,
                      show_job: Callable[[jobs.Job], None] | None = None,
                      show_failure: Callable[[dict[str, Any]], None] | None = None,
                      show_error: Callable[[Exception], None] | None = None, rerun: bool = True) -> T | None:
    """What a page shows for a result computed by a background job, in this order: the cached result (returned);
    else the live panel of the job computing it (`running`); else the last attempt's failure, when it failed or
    was cancelled, then what is missing and the `label` button that starts the job (`launch`; the page reruns
    once it started). While another job holds the worker (`busy`), `busy_note` is shown instead of the button;
    `auto` starts the job without a click. Drawn in `where` (a column or container; the page by default). A
    launch refused (JobBusyError, DataError) is shown by `show_error`, a warning by default; `rerun=False`
    leaves the page to pick the started job up on this run."""
    where = where if where is not None else st
    result = cached()
    if result is not None:
        return result
    job = running()
    if job is not None:
        if show_job is not None:
            show_job(job)
        else:
            with st.container() if where is st else where:
                job_panel(job.dir, rerun_when_done=True)
        return None
    last = last_attempt() if last_attempt is not None else None
    if last is not None:
        (show_failure or (lambda status: _one_line_failure(where, status)))(last)
    if missing is not None:
        missing()
    if busy is not None:
        if busy_note:
            where.warning(busy_note)
        return None
    if auto or where.button(label, type="primary" if primary else "secondary", key=key):
        try:
            launch()
        except (JobBusyError, DataError) as exc:
            (show_error or (lambda error: where.warning(str(error))))(exc)
        else:
            if rerun:
                st.rerun()
    return None


def selected_epoch(ws: Workspace, run_dir: Path) -> int | None:
    """The epoch the run selected on its validation donors (None when it has not said): the default epoch
    wherever a page offers a run's checkpoints."""
    table = runs.list_runs(ws)
    row = table[table["run_id"] == run_dir.name]
    value = row["selected_epoch"].iloc[0] if len(row) else None
    return None if value is None or pd.isna(value) else int(value)


SOURCE_KINDS = ("Trained run", "Random weights", "ImageNet weights", "Feature model file (timm)")


def runs_with_checkpoints(ws: Workspace) -> list[Path]:
    """Run folders that have at least one checkpoint, the best finished run (core.predict.default_run: the highest
    validation accuracy at its selected epoch) first and the others newest first: every page opens on the same
    run, and after the demo tour on the run it filled the pages for."""
    from core.predict import default_run

    found = [Path(p) for p in runs.list_runs(ws)["path"] if checkpoint_epochs(p)]
    best = default_run(ws)
    if best is not None and Path(best) in found:
        found.remove(Path(best))
        found.insert(0, Path(best))
    return found


def epoch_picker(ws: Workspace, column, run_dir: Path, key: str) -> int:
    """A run's checkpoint epochs, opening on the one the run selected on its validation donors."""
    epochs = checkpoint_epochs(run_dir)
    chosen = selected_epoch(ws, run_dir)
    index = epochs.index(chosen) if chosen in epochs else len(epochs) - 1
    return column.selectbox("Epoch", epochs, index=index, key=key,
                            format_func=lambda e: f"{e} (selected on validation)" if e == chosen else str(e),
                            help="defaults to the epoch the run selected on its validation donors")


def feature_source_controls(ws: Workspace, prefix: str, column) -> tuple[FeatureSource | None, Path | None]:
    """The feature source chosen in `column` (Explorer, Gene rankings) and the run folder it belongs to, if
    any; (None, None) while incomplete or invalid, the error shown there. Widget keys are `<prefix>-kind`,
    `-run`, `-epoch`, `-seed`, `-arch`, `-size`, `-timm`, `-timm-file` (the pages' URLs name them)."""
    trained = runs_with_checkpoints(ws)
    kinds = [k for k in SOURCE_KINDS if trained or k != "Trained run"]
    kind = column.selectbox("Features", kinds, key=f"{prefix}-kind")
    run_dir = column.selectbox("Run", trained, format_func=lambda p: p.name, key=f"{prefix}-run") if trained else None
    try:
        if kind == "Trained run":
            return FeatureSource.checkpoint(run_dir, epoch_picker(ws, column, run_dir, f"{prefix}-epoch")), run_dir
        if kind == "Feature model file (timm)":
            name = column.text_input("timm model name", "resnet18", key=f"{prefix}-timm")
            weights = column.text_input("Weights file (.safetensors or state dict)", key=f"{prefix}-timm-file")
            return (FeatureSource.timm(name, weights) if weights else None), None
        weights = "random" if kind == "Random weights" else "imagenet"
        seed = int(column.number_input("Seed", 0, 10_000, 0, key=f"{prefix}-seed")) if weights == "random" else 0
        if run_dir is not None:  # the baselines at the run's own architecture and input size
            return FeatureSource.for_run(run_dir, weights, seed=seed), run_dir
        from core.train import ARCHITECTURES  # imports torch: only when no run names the architecture

        arch = column.selectbox("Architecture", ARCHITECTURES, key=f"{prefix}-arch")
        size = int(column.number_input("Input size (px)", 16, 512, 64, key=f"{prefix}-size"))
        if weights == "random":
            return FeatureSource.random(arch, seed, size), None
        return FeatureSource.imagenet(arch, size), None
    except DataError as exc:
        column.error(str(exc))
        return None, None
