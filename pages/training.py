"""Training: launch a tissue classifier in a background worker, watch it live, compare runs."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import streamlit as st

from core import jobs
from core.base import DataError, JobBusyError
from core.train import ARCHITECTURES, TrainConfig, figures, launch_training, resume_training, runs
from pages.common import dataset_dir, donor_banner, get_cohort, get_workspace, job_panel

ws = get_workspace()
root = dataset_dir()
defaults = TrainConfig()

st.title("Training")
st.caption("A tissue classifier on the QC-passed tiles, split by donor into train, validation and test: the "
           "epoch to keep is chosen on the validation donors, and the test donors only report how it does. "
           "Training runs in a background worker: reload the page or open a new tab and it is still here.")
donor_banner(get_cohort(root))


def _draw_confusion(run_dir: Path, epochs, selected: int, classes: list[str]) -> None:
    """The test donors' confusion matrix at the selected epoch (the model the other pages use), or the latest."""
    latest = int(epochs["epoch"].iloc[-1])
    options = {f"epoch {selected} (selected)": selected}
    if latest != selected:
        options[f"epoch {latest} (latest)"] = latest
    label = next(iter(options))
    if len(options) > 1:
        label = st.radio("Confusion matrix of", list(options), horizontal=True, key=f"confusion-epoch-{run_dir.name}")
    confusion = runs.epoch_confusion(epochs, options[label])
    if confusion is None:
        st.caption(f"No confusion matrix in the metrics of {label} (a run from an older version, or an epoch "
                   "line written without one): nothing to draw there.")
        return
    st.plotly_chart(figures.confusion_heatmap(confusion, classes, label), width="stretch",
                    key=f"confusion-{run_dir.name}")


def draw_run(run_dir: Path) -> None:
    """Progress, per-batch and per-epoch curves and the confusion matrix of one run."""
    job = jobs.Job(run_dir)
    status = runs.run_job_status(run_dir)
    progress = status.get("progress") or {}
    config = runs.run_config(run_dir) if (run_dir / "config.json").exists() else {}
    batches, epochs = runs.read_metrics(run_dir)
    live = runs.live_progress(status, config.get("epochs"), epochs_done=len(epochs))
    st.progress(live["fraction"], text=live["text"])
    cols = st.columns(4)
    cols[0].metric("Epoch", live["epoch_text"])
    cols[1].metric("Batch", live["batch_text"])
    cols[2].metric("Tiles/s", f"{progress['tiles_per_s']:.0f}" if progress.get("tiles_per_s") else "—")
    cols[3].metric("ETA", live["eta_text"])
    left, right = st.columns(2)
    if batches.empty:
        left.info("The per-batch loss appears once the tiles are packed and the first batch is done.")
    else:
        left.plotly_chart(figures.batch_loss(batches), width="stretch", key=f"batch-{run_dir.name}")
    if epochs.empty:
        right.info("Per-epoch loss and accuracy (train, validation and test donors) appear after the first epoch.")
    else:
        right.plotly_chart(figures.training_curves(epochs), width="stretch", key=f"epochs-{run_dir.name}")
    if not epochs.empty:
        chosen = runs.select_epoch(epochs)
        st.caption(f"Epoch {chosen['selected_epoch']} selected by {chosen['selected_by']}: test accuracy "
                   f"{_percent(chosen['test_acc_selected'])} there, {_percent(chosen['test_acc_final'])} at the "
                   "latest epoch.")
        _draw_confusion(run_dir, epochs, chosen["selected_epoch"], config.get("classes", []))
    state = status.get("state")
    if state == "running":
        if st.button("Cancel training", key=f"cancel-{run_dir.name}"):
            jobs.request_cancel(job)
            st.toast("Cancel requested: the worker stops after the current batch.")
    elif state == "failed":
        st.error(f"Run failed: {status.get('error', 'unknown error')}")
        st.code("\n".join(status.get("log_tail") or job.log_tail(20)))
    if state != "running" and st.session_state.get("watching") == str(run_dir):
        st.session_state.pop("watching")
        st.rerun(scope="app")  # the run ended: redraw the page without the live panel


def _percent(value: float | None) -> str:
    return "—" if value is None else f"{value:.1%}"


@st.fragment(run_every=1.5)
def live_panel(run_dir: Path) -> None:
    draw_run(run_dir)


active = jobs.active_job(ws)
history = runs.list_runs(ws)
if active is not None and active.kind == "train":
    st.subheader(f"Running: {active.id}")
    st.session_state["watching"] = str(active.dir)
    live_panel(active.dir)
else:
    if active is not None:
        st.info(f"A {active.kind} job is running; training can start when it ends.")
        job_panel(active.dir, rerun_when_done=True)
    if not history.empty:
        latest = history.iloc[0]
        with st.expander(f"Latest run: {latest['run_id']} ({latest['status']})", expanded=True):
            draw_run(Path(latest["path"]))

with st.form("launch"):
    st.subheader("Launch a training run")
    c1, c2, c3, c4 = st.columns(4)
    arch = c1.selectbox("Architecture", ARCHITECTURES, index=ARCHITECTURES.index(defaults.arch))
    lr = c2.number_input("Learning rate", value=defaults.lr, format="%.0e", min_value=1e-6, max_value=1.0)
    epochs = c3.number_input("Epochs", value=defaults.epochs, min_value=1, max_value=200)
    batch_size = c4.number_input("Batch size", value=defaults.batch_size, min_value=2, max_value=1024)
    c5, c6, c7, c8 = st.columns(4)
    image_size = c5.number_input("Input resolution (px)", value=defaults.image_size, min_value=32, max_value=448,
                                 step=16, help="Tiles are resized to this for speed.")
    optimizer = c6.selectbox("Optimizer", ["adamw", "adam", "sgd"], index=["adamw", "adam", "sgd"].index(
        defaults.optimizer))
    mode = c7.selectbox("Mode", ["at-once", "restart"], help="restart: N runs of one epoch, each resuming "
                        "from the last checkpoint (as the GTEx study did)")
    seed = c8.number_input("Seed", value=defaults.seed, min_value=0)
    c9, c10 = st.columns(2)
    augment = c9.checkbox("Augmentation (flips, 90° rotations, mild colour jitter)", value=defaults.augment)
    weights = c10.radio("Weights", ["none", "imagenet"], horizontal=True,
                        format_func=lambda w: "from scratch" if w == "none" else "ImageNet (if on disk)")
    submitted = st.form_submit_button("Start training", type="primary")



def imagenet_missing(arch: str) -> str | None:
    """Why the ImageNet weights of `arch` cannot be used (None when they are on disk); imports torch."""
    from core.train import imagenet_weights_status

    available, _, message = imagenet_weights_status(arch)
    return None if available else message


if submitted:
    missing = imagenet_missing(arch) if weights == "imagenet" else None
    if missing:
        st.error(missing)
    else:
        config = TrainConfig(arch=arch, lr=float(lr), epochs=int(epochs), batch_size=int(batch_size),
                             image_size=int(image_size), optimizer=optimizer, mode=mode, seed=int(seed),
                             augment=augment, weights=weights)
        try:
            launch_training(ws, root, config)
        except (JobBusyError, DataError) as exc:
            st.warning(f"Not started: {exc}")
        else:
            st.rerun()

HISTORY_COLUMNS = {
    "run_id": st.column_config.TextColumn("Run"),
    "status": st.column_config.TextColumn("Status"),
    "arch": st.column_config.TextColumn("Architecture"),
    "lr": st.column_config.NumberColumn("LR", format="%.0e"),
    "batch_size": st.column_config.NumberColumn("Batch"),
    "image_size": st.column_config.NumberColumn("Input px"),
    "epochs_done": st.column_config.NumberColumn("Epochs done"),
    "epochs_planned": st.column_config.NumberColumn("Planned"),
    "selected_epoch": st.column_config.NumberColumn("Selected epoch", help="Best epoch on the validation donors"),
    "val_acc_selected": st.column_config.NumberColumn("Val acc (selected)", format="percent"),
    "test_acc_selected": st.column_config.NumberColumn("Test acc (selected)", format="percent",
                                                       help="Held-out test donors, at the validation-selected epoch"),
    "test_acc_final": st.column_config.NumberColumn("Test acc (final)", format="percent"),
    "duration": st.column_config.TextColumn("Duration"),
    "seconds_per_epoch": st.column_config.NumberColumn("s / epoch", format="%.1f"),
    "disk_mb": st.column_config.NumberColumn("Disk (MB)", format="%.0f"),
    "mode": st.column_config.TextColumn("Mode"),
    "optimizer": st.column_config.TextColumn("Optimizer"),
    "created": st.column_config.TextColumn("Created"),
    "message": st.column_config.TextColumn("Message"),
}


def history_table(table: pd.DataFrame) -> None:
    shown = table.assign(duration=table["duration_s"].map(runs.format_duration),
                         disk_mb=table["disk_bytes"] / 2**20)
    st.dataframe(shown[list(HISTORY_COLUMNS)], width="stretch", hide_index=True, column_config=HISTORY_COLUMNS)


@st.fragment(run_every=3.0)
def live_history_table() -> None:
    """While a job runs, the table re-reads the runs so epochs and accuracies follow."""
    history_table(runs.list_runs(ws))


st.subheader("Run history")
if history.empty:
    st.caption("No runs yet.")
else:
    if active is not None:
        live_history_table()
    else:
        history_table(history)  # already read above: no second scan of the runs folder
    ids = history["run_id"].tolist()
    chosen = st.multiselect("Overlay runs", ids, default=ids[: min(3, len(ids))])
    by_run = {run_id: runs.read_metrics(ws.runs_dir / run_id)[1] for run_id in chosen}
    by_run = {run_id: epochs for run_id, epochs in by_run.items() if not epochs.empty}
    if by_run:
        left, right = st.columns(2)
        left.plotly_chart(figures.runs_overlay(by_run, "val_acc"), width="stretch")
        right.plotly_chart(figures.runs_overlay(by_run, "train_loss"), width="stretch")
    timed = history.dropna(subset=["seconds_per_epoch"]) if "seconds_per_epoch" in history else pd.DataFrame()
    if not timed.empty:
        st.plotly_chart(figures.seconds_per_epoch_by_arch(timed), width="stretch")
    c1, c2, c3 = st.columns([2, 1, 1])
    target = c1.selectbox("Run", ids, key="target-run")
    if c2.button("Resume run"):
        try:
            resume_training(ws, root, target)
            st.rerun()
        except (JobBusyError, DataError) as exc:
            st.warning(f"Not resumed: {exc}")
    if c3.button("Delete run"):
        try:
            runs.delete_run(ws, target)
            st.rerun()
        except (DataError, JobBusyError, ValueError) as exc:
            st.warning(f"Not deleted: {exc}")
    target_dir = ws.runs_dir / target
    saved_epochs = runs.checkpoint_epochs(target_dir)
    if len(saved_epochs) > 1:
        with st.expander(f"Free disk space: {len(saved_epochs)} checkpoints of {target}"):
            selected = history.set_index("run_id").loc[target, "selected_epoch"]
            keep = st.multiselect("Keep the checkpoints of epochs", saved_epochs,
                                  default=[int(selected)] if pd.notna(selected) and selected in saved_epochs else [],
                                  help="The latest checkpoint is always kept: resume continues from it.")
            if st.button("Delete the other checkpoints", key="prune"):
                try:
                    freed = runs.prune_checkpoints(target_dir, keep)["freed_bytes"]
                    st.toast(f"Freed {freed / 2**20:.0f} MB.")
                    st.rerun()
                except DataError as exc:
                    st.warning(f"Not pruned: {exc}")
