"""Training worker: donor split, metrics, reproducibility, cancel/crash/resume, restart mode, checkpoints,
tile packs and the run listing. A tiny stand-in cohort (coloured tiles, 6 donors, 3 tissues) at 32 px."""

from __future__ import annotations

import json
import os
import zlib
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from core.base.config import Workspace
from core.base.errors import DataError
from core.tiles.pack import build_tilepack
from core.train import runs
from core.train.loop import (
    TrainConfig,
    latest_checkpoint,
    load_checkpoint,
    load_run_model,
    lr_factor,
    recalibrate_batchnorm,
    train_run,
    training_tiles,
)

TISSUES = {"Lung": (200, 80, 90), "Liver": (90, 60, 50), "Skin": (230, 190, 200)}
DONORS = [f"GTEX-D{i}" for i in range(6)]
TILES_PER_SLIDE = 8
CONFIG = TrainConfig(epochs=2, batch_size=16, image_size=32, test_fraction=0.34, threads=1)


def fake_read_tile(row: pd.Series, out_size: int | None = None) -> np.ndarray:
    """A tissue-coloured noisy tile; pixels depend only on the row (deterministic)."""
    size = out_size or 64
    rng = np.random.default_rng(int(row["x"]) * 7919 + int(row["y"]) + zlib.crc32(row["sample_id"].encode()) % 1000)
    colour = np.array(TISSUES[row["tissue"]], dtype=np.float32)
    image = colour + rng.normal(0, 25, size=(size, size, 3))
    return np.clip(image, 0, 255).astype(np.uint8)


def make_tile_index() -> pd.DataFrame:
    """Every donor has every tissue; a few rows fail QC or are not selected (must be left out)."""
    rows = []
    for d, donor in enumerate(DONORS):
        for t, tissue in enumerate(TISSUES):
            sample = f"{donor}-{t:04d}"
            for k in range(TILES_PER_SLIDE + 2):
                rows.append({
                    "sample_id": sample, "tissue": tissue, "subject_id": donor,
                    "slide_path": f"/nowhere/{sample}.svs", "level": 0, "x": 448 * k, "y": 448 * d,
                    "read_size": 448, "tile_size": 448,
                    "passed_qc": k != TILES_PER_SLIDE, "reason": "" if k != TILES_PER_SLIDE else "blur",
                    "selected": k < TILES_PER_SLIDE,
                })
    return pd.DataFrame(rows)


class StubReporter:
    """Stands in for core.jobs.JobReporter: records progress, cancels or crashes at a given batch."""

    def __init__(self, cancel_at: tuple[int, int] | None = None, crash_at: tuple[int, int] | None = None) -> None:
        self.cancel_at, self.crash_at = cancel_at, crash_at
        self.calls: list[dict] = []
        self.cancelled = False
        self.result = None

    def progress(self, done, total, message="", **extra) -> None:
        self.calls.append({"done": done, "total": total, "message": message, **extra})
        where = (extra.get("epoch"), extra.get("batch"))
        if where == self.crash_at:
            raise RuntimeError("simulated crash")
        if where == self.cancel_at:
            self.cancelled = True

    def cancel_requested(self) -> bool:
        return self.cancelled


def run(ws: Workspace, name: str, config: TrainConfig = CONFIG, reporter=None) -> tuple[Path, dict]:
    run_dir = ws.runs_dir / name
    result = train_run(run_dir, config, make_tile_index(), ws, reporter, read_tile=fake_read_tile, pack_workers=1)
    return run_dir, result


def epoch_metrics(run_dir: Path) -> list[dict]:
    """Epoch lines without wall-clock figures (those differ between identical runs)."""
    _, epochs = runs.read_metrics(run_dir)
    return epochs.drop(columns=["seconds", "tiles_per_s"]).to_dict("records")


def batch_losses(run_dir: Path) -> list[tuple[int, int, float]]:
    batches, _ = runs.read_metrics(run_dir)
    return list(zip(batches["epoch"], batches["batch"], batches["loss"], strict=True))


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> tuple[Workspace, Path]:
    """One uninterrupted 2-epoch run that the other tests compare against."""
    from core.base.config import workspace

    ws = workspace(tmp_path_factory.mktemp("ref") / "workspace")
    run_dir, result = run(ws, "reference")
    assert result["status"] == "done"
    return ws, run_dir


def test_run_writes_config_split_metrics_and_checkpoints(reference) -> None:
    ws, run_dir = reference
    config = runs.run_config(run_dir)
    assert config["classes"] == sorted(TISSUES) and config["lr"] == 1e-4
    split = json.loads((run_dir / "split.json").read_text())
    n_tiles = len(split["train_tiles"]) + len(split["validation_tiles"]) + len(split["test_tiles"])
    assert n_tiles == len(DONORS) * len(TISSUES) * TILES_PER_SLIDE
    assert {"data_order_seed", "augment_seed"} <= set(split)
    # Disjoint by the donors the tile index names (not by the split's own donor lists).
    donor_of = training_tiles(make_tile_index()).set_index("tile_id")["subject_id"]
    donors = {name: set(donor_of[split[f"{name}_tiles"]]) for name in ("train", "validation", "test")}
    assert donors["train"] and donors["validation"] and donors["test"]
    assert not (donors["train"] & donors["validation"] or donors["train"] & donors["test"]
                or donors["validation"] & donors["test"])
    assert donors["test"] == set(split["test_donors"]) and donors["validation"] == set(split["validation_donors"])
    saved = runs.run_split(run_dir)  # split.csv: one row per sample
    assert list(saved.columns) == ["sample_id", "subject_id", "split"] and len(saved) == len(DONORS) * len(TISSUES)
    assert set(saved.loc[saved.split == "validation", "subject_id"]) == donors["validation"]

    lines = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    batch_keys = {"type", "epoch", "batch", "batches", "loss", "acc", "tiles_per_s", "elapsed"}
    epoch_keys = {"type", "epoch", "train_loss", "train_acc", "val_loss", "val_acc", "test_loss", "test_acc",
                  "seconds", "tiles_per_s", "confusion", "val_confusion"}
    batches = [line for line in lines if line["type"] == "batch"]
    epochs = [line for line in lines if line["type"] == "epoch"]
    assert batches and all(set(b) == batch_keys for b in batches)
    assert [e["epoch"] for e in epochs] == [1, 2] and all(set(e) == epoch_keys for e in epochs)
    confusion = np.array(epochs[-1]["confusion"])
    assert confusion.shape == (3, 3) and confusion.sum() == len(split["test_tiles"])
    assert epochs[-1]["test_acc"] == pytest.approx(np.trace(confusion) / confusion.sum())
    val_confusion = np.array(epochs[-1]["val_confusion"])
    assert val_confusion.sum() == len(split["validation_tiles"])
    assert epochs[-1]["val_acc"] == pytest.approx(np.trace(val_confusion) / val_confusion.sum())

    assert [p.name for p in sorted((run_dir / "checkpoints").glob("*.pt"))] == ["epoch_001.pt", "epoch_002.pt"]
    state = torch.load(run_dir / "checkpoints" / "epoch_002.pt", weights_only=True)
    assert state["epoch"] == 2 and {"model", "optimizer", "rng", "scheduler"} <= set(state)
    model, classes = load_run_model(run_dir)
    assert classes == sorted(TISSUES) and not model.training

    listing = runs.list_runs(ws)
    row = listing.set_index("run_id").loc["reference"]
    assert row.status == "done" and row.epochs_done == 2 and row.epochs_planned == 2
    # The epoch is selected on validation; test accuracy is reported there and at the end.
    chosen = max(epochs, key=lambda e: (e["val_acc"], -e["val_loss"], -e["epoch"]))
    assert row.selected_epoch == chosen["epoch"] and row.val_acc_selected == pytest.approx(chosen["val_acc"])
    assert row.test_acc_selected == pytest.approx(chosen["test_acc"])
    assert row.test_acc_final == pytest.approx(epochs[-1]["test_acc"])
    assert "best_test_acc" not in listing.columns and row.disk_bytes > 0


def test_defaults_keep_the_studys_choices_and_reach_the_cli() -> None:
    import argparse

    from core.cli import train as train_cli
    from core.train import jobs as train_jobs

    defaults = TrainConfig().validate()
    # Fixed by the issue: EfficientNet-B0 from scratch at lr 1e-4, augmented, donor split.
    assert (defaults.arch, defaults.lr, defaults.weights, defaults.augment) == ("efficientnet_b0", 1e-4, "none", True)
    assert 0 < defaults.test_fraction < 1
    parser = argparse.ArgumentParser()
    train_cli.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["train"])
    cli_config = train_cli._config(args)
    assert cli_config == defaults  # fields the CLI has no flag for keep the TrainConfig defaults
    tuned = replace(defaults, lr=3e-4, epochs=7, schedule="constant", weight_decay=0.5, decay="all", augment=False)
    assert train_cli._config(parser.parse_args(train_jobs.train_argv("/data", tuned))) == tuned  # UI -> CLI round trip


@pytest.mark.parametrize(("total", "warmup"), [(1, 0), (10, 0), (100, 0), (100, 7), (5, 9)])
def test_lr_schedule_never_exceeds_the_configured_lr(total: int, warmup: int) -> None:
    cosine = [lr_factor(step, total, warmup, "cosine") for step in range(total)]
    constant = [lr_factor(step, total, warmup, "constant") for step in range(total)]
    assert all(0 < f <= 1.0 for f in cosine + constant)
    ramp = min(warmup, total)
    assert cosine[:ramp] == constant[:ramp] == sorted(cosine[:ramp])  # warmup rises, the same in both schedules
    assert all(f == 1.0 for f in constant[ramp:])
    decay = cosine[ramp:]
    assert all(a >= b for a, b in zip(decay, decay[1:], strict=False))
    if total - warmup >= 10:
        assert decay[0] == 1.0 and decay[-1] < 0.05  # full rate after warmup, nearly zero at the end


def test_run_sets_each_steps_lr_from_the_schedule(reference) -> None:
    _, run_dir = reference
    batches, _ = runs.read_metrics(run_dir)
    per_epoch = int(batches["batches"].iloc[0])
    total = CONFIG.epochs * per_epoch
    for epoch in (1, 2):
        state = load_checkpoint(run_dir / "checkpoints" / f"epoch_{epoch:03d}.pt")
        lr = state["optimizer"]["param_groups"][0]["lr"]
        expected = CONFIG.lr * lr_factor(epoch * per_epoch - 1, total, 0, CONFIG.schedule)
        assert lr == pytest.approx(expected)
        groups = state["optimizer"]["param_groups"]
        assert all(group["lr"] == lr for group in groups)
        assert groups[0]["weight_decay"] == CONFIG.weight_decay and groups[0]["betas"][1] == CONFIG.adam_beta2
        if CONFIG.decay == "conv":  # BatchNorm, biases and the head are not decayed
            assert len(groups) == 2 and groups[1]["weight_decay"] == 0.0
    assert CONFIG.schedule == "cosine" and lr < CONFIG.lr / 10  # decayed by the last step


def test_config_saved_before_the_training_details_resumes_unchanged() -> None:
    old = {"arch": "efficientnet_b0", "lr": 1e-4, "epochs": 4, "optimizer": "adamw", "classes": ["A", "B"]}
    config = TrainConfig.from_dict(old)
    assert (config.schedule, config.label_smoothing, config.weight_decay) == ("constant", 0.0, 0.01)
    assert (config.dropout, config.stochastic_depth, config.warmup_epochs) == (0.2, 0.2, 0.0)
    assert (config.decay, config.adam_beta2, config.zero_init_residual) == ("all", 0.999, False)
    assert config.bn_recalibration_tiles == 0 and config.batch_shards == 1
    assert TrainConfig.from_dict({**old, "optimizer": "sgd"}).weight_decay == 0.0
    current = replace(TrainConfig(), schedule="constant", label_smoothing=0.05)
    assert TrainConfig.from_dict({**current.to_dict(), "classes": ["A"]}) == current


@pytest.mark.parametrize(("field", "value"), [
    ("schedule", "step"), ("label_smoothing", 1.0), ("dropout", -0.1), ("stochastic_depth", 1.5),
    ("weight_decay", -1e-4), ("warmup_epochs", -1.0), ("decay", "bn"), ("adam_beta2", 1.0), ("batch_shards", 0),
    ("bn_recalibration_tiles", -1),
])
def test_bad_training_details_are_refused(field: str, value) -> None:
    with pytest.raises(ValueError, match=field):
        replace(TrainConfig(), **{field: value}).validate()


def test_batchnorm_recalibration_averages_the_given_tiles_without_randomness() -> None:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4), torch.nn.Dropout(0.5))
    norm = model[1]
    norm.running_mean.fill_(5.0)  # stale statistics from "earlier weights"
    images = np.random.default_rng(0).integers(0, 256, size=(10, 8, 8, 3), dtype=np.uint8)
    rows = np.arange(2, 10)
    rng_before = torch.get_rng_state()
    recalibrate_batchnorm(model, images, rows, batch_size=4, device=torch.device("cpu"))
    assert torch.equal(torch.get_rng_state(), rng_before)  # dropout stayed off: no random numbers drawn
    assert model.training and norm.momentum == 0.1
    from core.train.loop import images_to_tensor, normalize

    with torch.no_grad():
        features = model[0](normalize(images_to_tensor(images[rows], torch.device("cpu"))))
    halves = features.view(2, 4, 4, *features.shape[2:])  # the two batches of 4
    expected = halves.mean(dim=(1, 3, 4)).mean(dim=0)  # average of the per-batch means
    assert torch.allclose(norm.running_mean, expected, atol=1e-5)
    assert int(norm.num_batches_tracked) == 2


def test_same_config_gives_identical_run(reference, ws: Workspace) -> None:
    _, ref_dir = reference
    # The whole run: the LR schedule spans all planned epochs, so a shorter run differs after step one.
    run_dir, _ = run(ws, "again", CONFIG)
    assert epoch_metrics(run_dir) == epoch_metrics(ref_dir)
    assert batch_losses(run_dir) == batch_losses(ref_dir)
    other_dir, _ = run(ws, "other-seed", replace(CONFIG, epochs=1, seed=1))
    assert batch_losses(other_dir) != [b for b in batch_losses(ref_dir) if b[0] == 1]


def test_cancel_keeps_last_epoch_and_resume_finishes_identically(reference, ws: Workspace) -> None:
    _, ref_dir = reference
    reporter = StubReporter(cancel_at=(2, 2))
    run_dir, result = run(ws, "cancelled", reporter=reporter)
    assert result["status"] == "cancelled" and result["epochs_done"] == 1
    assert "epoch 1" in result["message"] and reporter.result["status"] == "cancelled"
    assert latest_checkpoint(run_dir)[0] == 1
    assert runs.list_runs(ws).set_index("run_id").loc["cancelled", "status"] == "cancelled"
    assert reporter.calls[-1]["epoch"] == 2  # per-batch progress reached the reporter
    assert {"tiles_per_s", "eta_s", "batch"} <= set(reporter.calls[-1])

    result = train_run(run_dir, None, make_tile_index(), ws, read_tile=fake_read_tile, pack_workers=1)
    assert result["status"] == "done" and result["epochs_done"] == 2
    # The half epoch's lines were dropped; the resumed run equals the uninterrupted one.
    assert epoch_metrics(run_dir) == epoch_metrics(ref_dir)
    assert batch_losses(run_dir) == batch_losses(ref_dir)


def test_crash_mid_epoch_leaves_a_resumable_run(reference, ws: Workspace) -> None:
    _, ref_dir = reference
    with pytest.raises(RuntimeError, match="simulated crash"):
        run(ws, "crashed", reporter=StubReporter(crash_at=(2, 1)))
    run_dir = ws.runs_dir / "crashed"
    assert latest_checkpoint(run_dir)[0] == 1
    assert runs.run_status(run_dir) == "failed"
    with (run_dir / "metrics.jsonl").open("a") as handle:
        handle.write('{"type": "batch", "epoch": 2, "ba')  # a line cut by the crash
    batches, _ = runs.read_metrics(run_dir)
    assert batches["epoch"].max() == 2
    train_run(run_dir, None, make_tile_index(), ws, read_tile=fake_read_tile, pack_workers=1)
    assert epoch_metrics(run_dir) == epoch_metrics(ref_dir)


def test_restart_mode_equals_at_once(reference, ws: Workspace) -> None:
    _, ref_dir = reference
    run_dir, result = run(ws, "restart", replace(CONFIG, mode="restart"))
    assert result["status"] == "done"
    assert epoch_metrics(run_dir) == epoch_metrics(ref_dir)


def test_corrupt_checkpoint_raises_data_error(reference, ws: Workspace) -> None:
    _, ref_dir = reference
    run_dir = ws.runs_dir / "corrupt"
    run_dir.mkdir(parents=True)
    for name in ("config.json", "split.json"):
        (run_dir / name).write_text((ref_dir / name).read_text())
    (run_dir / "config.json").write_text(json.dumps({**runs.run_config(ref_dir), "epochs": 3}))
    bad = run_dir / "checkpoints" / "epoch_002.pt"
    bad.parent.mkdir()
    bad.write_bytes((ref_dir / "checkpoints" / "epoch_002.pt").read_bytes()[:5000])
    with pytest.raises(DataError, match="corrupt or unreadable checkpoint") as info:
        load_checkpoint(bad)
    assert info.value.path == str(bad)
    with pytest.raises(DataError, match="epoch_002.pt"):
        train_run(run_dir, None, make_tile_index(), ws, read_tile=fake_read_tile, pack_workers=1)


def test_missing_imagenet_weights_fail_before_any_work(ws: Workspace, tmp_path: Path) -> None:
    old = torch.hub.get_dir()
    torch.hub.set_dir(str(tmp_path / "empty-hub"))
    try:
        with pytest.raises(DataError, match="efficientnet_b0_rwightman-7f5810bc.pth"):
            run(ws, "imagenet", replace(CONFIG, weights="imagenet"))
    finally:
        torch.hub.set_dir(old)
    assert not (ws.runs_dir / "imagenet" / "config.json").exists()
    assert not (ws.cache_dir / "tilepacks").exists()


def test_tile_index_without_run_tiles_is_a_data_error(reference, ws: Workspace) -> None:
    _, ref_dir = reference
    run_dir = ws.runs_dir / "moved"
    run_dir.mkdir(parents=True)
    for name in ("config.json", "split.json"):
        (run_dir / name).write_text((ref_dir / name).read_text())
    index = make_tile_index()
    index["x"] += 1  # a rebuilt index with other tiles
    with pytest.raises(DataError, match="tile index lacks"):
        train_run(run_dir, None, index, ws, read_tile=fake_read_tile, pack_workers=1)


def test_tilepack_is_reused_rebuilt_when_corrupt_and_equal_in_a_pool(ws: Workspace) -> None:
    tiles = training_tiles(make_tile_index()).head(40)
    pack = build_tilepack(tiles, 24, ws, fake_read_tile, workers=1)
    assert pack.images.shape == (40, 24, 24, 3) and isinstance(pack.images, np.memmap)
    assert np.array_equal(pack.images[3], fake_read_tile(tiles.iloc[3], 24))

    def must_not_read(row, out_size=None):
        raise AssertionError("a valid pack was rebuilt")

    again = build_tilepack(tiles, 24, ws, must_not_read, workers=1)
    assert again.path == pack.path
    first = np.array(pack.images)
    with pack.path.open("r+b") as handle:
        handle.truncate(os.path.getsize(pack.path) // 2)
    pooled = build_tilepack(tiles, 24, ws, fake_read_tile, workers=2)
    assert np.array_equal(np.asarray(pooled.images), first)
    assert build_tilepack(tiles, 32, ws, fake_read_tile, workers=1).path != pack.path


def test_tilepack_names_the_slide_of_an_unreadable_tile(ws: Workspace) -> None:
    def broken(row, out_size=None):
        return np.zeros((4, 4), dtype=np.uint8)

    with pytest.raises(DataError, match="/nowhere/.*cannot read tile"):
        build_tilepack(training_tiles(make_tile_index()).head(3), 16, ws, broken, workers=1)


def test_list_runs_and_delete_refuses_a_running_run(reference, ws: Workspace) -> None:
    _, ref_dir = reference
    run_dir = runs.new_run_dir(ws)
    (run_dir / "config.json").write_text((ref_dir / "config.json").read_text())
    (run_dir / "summary.json").write_text(json.dumps({"status": "running", "pid": os.getpid(), "epochs_done": 1}))
    listing = runs.list_runs(ws)
    assert listing.set_index("run_id").loc[run_dir.name, "status"] == "running"
    with pytest.raises(DataError, match="training now"):
        runs.delete_run(ws, run_dir.name)
    (run_dir / "summary.json").write_text(json.dumps({"status": "cancelled", "epochs_done": 1}))
    runs.delete_run(ws, run_dir.name)
    assert not run_dir.exists()
    with pytest.raises(DataError, match="no such run"):
        runs.delete_run(ws, "../cache")


def _symlink_cohort(root: Path, slide: Path) -> Path:
    """2 donors x 2 tissues, every slide a link to the real SVS (never copied)."""
    (root / "slides").mkdir(parents=True)
    lines = ["Tissue Sample ID,Tissue,Subject ID,Sex,Age Bracket,Hardy Scale,Pathology Categories,Pathology Notes"]
    for donor in ("GTEX-AA1", "GTEX-BB2"):
        for code, tissue in (("0001", "Lung"), ("0002", "Liver")):
            (root / "slides" / f"{donor}-{code}.svs").symlink_to(slide)
            lines.append(f"{donor}-{code},{tissue},{donor},male,60-69,,,")
    (root / "histology.csv").write_text("\n".join(lines) + "\n")
    return root


@pytest.mark.slow
def test_cli_run_killed_mid_training_resumes_to_planned_epochs(testdata: Path, ws: Workspace, tmp_path: Path) -> None:
    import signal
    import subprocess
    import sys
    import time

    data = _symlink_cohort(tmp_path / "cohort", testdata / "CMU-1-Small-Region.svs")
    base = [sys.executable, "-m", "core", "--workspace", str(ws.root), "train"]
    repo = Path(__file__).resolve().parents[1]
    proc = subprocess.Popen(
        [*base, "--data", str(data), "--epochs", "3", "--batch-size", "2", "--image-size", "64"],
        cwd=repo, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True,
    )
    deadline = time.monotonic() + 120
    while not list(ws.runs_dir.glob("*/checkpoints/epoch_001.pt")):
        assert proc.poll() is None, proc.stderr.read().decode()
        assert time.monotonic() < deadline, "no epoch finished in time"
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    run_dir = next(ws.runs_dir.glob("*/checkpoints/epoch_001.pt")).parents[1]
    assert latest_checkpoint(run_dir)[0] < 3, "the kill came too late to test a crash"
    listed = subprocess.run([*base[:-1], "runs", "--json"], cwd=repo, capture_output=True, text=True, check=True)
    assert json.loads(listed.stdout)[0]["status"] == "failed"  # the dead worker is not shown as running

    resumed = subprocess.run([*base, "--resume", run_dir.name], cwd=repo, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert resumed.stdout.strip().splitlines()[-1] == str(run_dir)
    _, epochs = runs.read_metrics(run_dir)
    assert epochs["epoch"].tolist() == [1, 2, 3]
    assert runs.list_runs(ws).iloc[0]["status"] == "done"
    assert runs.run_config(run_dir)["classes"] == ["Liver", "Lung"]


def test_a_run_stopped_before_training_restarts_from_its_request_in_its_folder(ws: Workspace, tmp_path: Path) -> None:
    from core import jobs
    from core.train.jobs import launch_training, resume_training

    missing = tmp_path / "gone"
    job = launch_training(ws, missing, replace(TrainConfig(), epochs=2))
    status = jobs.wait(job, timeout=120)
    assert status["state"] == "failed" and "dataset folder not found" in status["error"]
    assert not (job.dir / "config.json").exists()
    again = resume_training(ws, tmp_path, job.id)  # the request's dataset, not the page's, is used
    assert again.dir == job.dir
    status = jobs.wait(again, timeout=120)
    assert status["state"] == "failed" and str(missing) in status["error"]
    assert runs.list_runs(ws).set_index("run_id").loc[job.id, "epochs_planned"] == 2


def test_launch_training_refuses_a_bad_option_without_leaving_a_folder(ws: Workspace) -> None:
    from core.train.jobs import launch_training

    with pytest.raises(DataError, match="bad training option"):
        launch_training(ws, ws.root, replace(TrainConfig(), epochs=0))
    assert not any(ws.runs_dir.glob("*"))


def test_tilepack_of_the_same_tiles_in_another_order_is_reordered_not_read_again(ws: Workspace) -> None:
    tiles = training_tiles(make_tile_index()).head(30)
    first = build_tilepack(tiles, 24, ws, fake_read_tile, workers=1)

    def must_not_read(row, out_size=None):
        raise AssertionError("the same tiles were read again")

    shuffled = tiles.sample(frac=1.0, random_state=1)
    again = build_tilepack(shuffled, 24, ws, must_not_read, workers=1)
    assert again.path != first.path
    for i in (0, 7, 29):
        assert np.array_equal(again.images[i], fake_read_tile(shuffled.iloc[i], 24))
    other = pd.concat([tiles.head(29), training_tiles(make_tile_index()).iloc[[35]]])  # not the same tiles
    with pytest.raises(DataError, match="read again"):  # a pack of other tiles is read, not reordered
        build_tilepack(other, 24, ws, must_not_read, workers=1)
