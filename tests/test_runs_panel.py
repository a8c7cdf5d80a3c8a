"""What the training page's run panel reads: live progress labels and a run's status without a job."""

from __future__ import annotations

import json

from core.train import runs


def test_live_progress_while_running_uses_the_worker_message():
    status = {"state": "running", "progress": {"done": 5, "total": 20, "message": "epoch 1/4 batch 5/5",
                                               "epoch": 1, "batch": 5, "batches": 5, "eta_s": 75}}
    live = runs.live_progress(status, epochs_planned=4)
    assert live["fraction"] == 0.25
    assert live["text"] == "running: epoch 1/4 batch 5/5"
    assert live["epoch_text"] == "1 / 4" and live["batch_text"] == "5 / 5" and live["eta_text"] == "1 min 15 s"


def test_live_progress_of_an_ended_run_says_how_far_it_got():
    live = runs.live_progress({"state": "cancelled", "progress": {"eta_s": 30, "epoch": 3}}, epochs_planned=4,
                              epochs_done=2)
    assert live["fraction"] == 0.5
    assert live["text"] == "cancelled: 2 of 4 epochs done"
    assert live["eta_text"] == "—" and live["batch_text"] == "—"
    assert live["epoch_text"] == "2 / 4"  # completed epochs, not the one that was interrupted


def test_run_trained_without_a_job_gets_a_status_from_its_summary(tmp_path):
    run = tmp_path / "run1"
    run.mkdir()
    (run / "summary.json").write_text(json.dumps({"status": "done", "epochs_done": 3}))
    status = runs.run_job_status(run)
    assert status["state"] == "done" and status["id"] == "run1"
    assert runs.run_job_status(tmp_path / "empty")["state"] == "new"


def test_history_shows_the_requested_config_before_the_worker_writes_its_own(tmp_path):
    from dataclasses import replace

    from core.base.config import workspace
    from core.train.config import TrainConfig

    ws = workspace(tmp_path / "ws")
    run = runs.new_run_dir(ws)
    request = replace(TrainConfig(), arch="resnet50", epochs=7, image_size=96)
    (run / runs.REQUEST_NAME).write_text(json.dumps({**request.to_dict(), "data_dir": "/data"}))
    row = runs.list_runs(ws).iloc[0]
    assert (row["run_id"], row["arch"], row["epochs_planned"], row["image_size"]) == (run.name, "resnet50", 7, 96)
    (run / "config.json").write_text(json.dumps({**request.to_dict(), "epochs": 9}))
    assert runs.list_runs(ws).iloc[0]["epochs_planned"] == 9  # the worker's config wins once written
