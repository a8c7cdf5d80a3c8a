"""core.train.runs: durations, epoch selection on validation, run splits, disk use and checkpoint pruning."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pandas as pd
import pytest

from core.__main__ import main
from core.base.config import workspace
from core.base.errors import DataError
from core.train import runs


@pytest.mark.parametrize(("seconds", "text"), [
    (0, "0 s"), (59.4, "59 s"), (75, "1 min 15 s"), (3599, "59 min 59 s"), (3700, "1 h 01 min"),
    (86399, "23 h 59 min"), (90000, "1 d 01 h"), (3 * 86400 + 7200, "3 d 02 h"), (None, "—"), (-1, "—"),
])
def test_durations_read_as_durations_beyond_an_hour_and_a_day(seconds, text) -> None:
    assert runs.format_duration(seconds) == text


def test_eta_of_a_long_run_is_a_duration_not_a_clock() -> None:
    status = {"state": "running", "progress": {"done": 1, "total": 100, "eta_s": 90000}}
    assert runs.live_progress(status, epochs_planned=30)["eta_text"] == "1 d 01 h"


def _epochs(val_acc, test_acc, val_loss=None) -> pd.DataFrame:
    n = len(test_acc)
    return pd.DataFrame({"epoch": range(1, n + 1), "val_acc": val_acc, "test_acc": test_acc,
                         "val_loss": val_loss if val_loss is not None else [1.0] * n})


def test_the_epoch_is_selected_on_validation_never_on_test() -> None:
    # Test peaks at epoch 2, validation at epoch 3: epoch 3 is selected and its test accuracy reported.
    chosen = runs.select_epoch(_epochs([0.5, 0.6, 0.8, 0.7], [0.6, 0.95, 0.7, 0.75]))
    assert chosen == {"selected_epoch": 3, "selected_by": "validation accuracy", "val_acc_selected": 0.8,
                      "test_acc_selected": 0.7, "test_acc_final": 0.75}
    # Ties on validation accuracy: lower validation loss, then the earlier epoch.
    assert runs.select_epoch(_epochs([0.8, 0.8, 0.8], [0.1, 0.2, 0.3], [0.5, 0.4, 0.4]))["selected_epoch"] == 2
    # No validation donors: the final epoch, said so.
    none = runs.select_epoch(_epochs([None, None], [0.9, 0.6]))
    assert none["selected_epoch"] == 2 and none["test_acc_selected"] == 0.6 and "no validation" in none["selected_by"]
    assert runs.select_epoch(pd.DataFrame())["selected_epoch"] is None


def test_run_split_of_an_older_run_comes_from_its_tile_ids(tmp_path: Path) -> None:
    (tmp_path / "split.json").write_text(json.dumps({
        "train_tiles": ["GTEX-A-0001:0:0", "GTEX-A-0001:448:0", "GTEX-B-0001:0:0"], "test_tiles": ["GTEX-C-0002:0:0"],
    }))
    split = runs.run_split(tmp_path)
    assert split.to_dict("list") == {"sample_id": ["GTEX-A-0001", "GTEX-B-0001", "GTEX-C-0002"],
                                     "subject_id": ["", "", ""], "split": ["train", "train", "test"]}
    with pytest.raises(DataError, match="no saved split"):
        runs.run_split(tmp_path / "nothing")


def _run_with_checkpoints(ws, epochs=(1, 2, 3, 4, 5), status="done") -> Path:
    run_dir = runs.new_run_dir(ws)
    (run_dir / "config.json").write_text(json.dumps({"arch": "resnet50", "epochs": len(epochs)}))
    (run_dir / "summary.json").write_text(json.dumps({"status": status, "pid": os.getpid(),
                                                      "epochs_done": len(epochs)}))
    (run_dir / "checkpoints").mkdir()
    for epoch in epochs:
        (run_dir / "checkpoints" / f"epoch_{epoch:03d}.pt").write_bytes(b"x" * 1000 * epoch)
    return run_dir


def test_disk_use_is_listed_and_pruning_keeps_chosen_epochs_and_the_latest(tmp_path: Path) -> None:
    ws = workspace(tmp_path / "ws")
    run_dir = _run_with_checkpoints(ws)
    before = runs.list_runs(ws).iloc[0]["disk_bytes"]
    assert before >= 15000
    result = runs.prune_checkpoints(run_dir, [2])
    assert result == {"deleted": [1, 3, 4], "kept": [2, 5], "freed_bytes": 8000}
    assert runs.checkpoint_epochs(run_dir) == [2, 5]  # the latest stays: resume continues from it
    assert runs.list_runs(ws).iloc[0]["disk_bytes"] == before - 8000
    with pytest.raises(DataError, match="no checkpoint for epoch"):
        runs.prune_checkpoints(run_dir, [3])


def test_pruning_refuses_the_running_run(tmp_path: Path) -> None:
    ws = workspace(tmp_path / "ws")
    run_dir = _run_with_checkpoints(ws, status="running")
    with pytest.raises(DataError, match="training now"):
        runs.prune_checkpoints(run_dir, [1])
    assert runs.checkpoint_epochs(run_dir) == [1, 2, 3, 4, 5]


def test_cli_prunes_and_lists_disk_use(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ws = workspace(tmp_path / "ws")
    run_dir = _run_with_checkpoints(ws, epochs=(1, 2, 3))
    assert main(["--workspace", str(ws.root), "runs", "--prune", run_dir.name, "--keep", "1"]) == 0
    assert "freed 2.0 KB" in capsys.readouterr().err and runs.checkpoint_epochs(run_dir) == [1, 3]
    assert main(["--workspace", str(ws.root), "runs", "--prune", run_dir.name, "--keep", "one"]) == 2
    assert main(["--workspace", str(ws.root), "runs"]) == 0
    out = capsys.readouterr().out
    assert "disk" in out and "KB" in out and "best" not in out
