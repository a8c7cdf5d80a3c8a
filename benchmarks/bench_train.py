"""Training throughput: the worker's loop (train_run on a tile pack) vs a bare forward/backward loop.

Same model, batch and image size, same machine, one run. The bare loop trains on random tensors
already in memory, so the ratio is what data loading (memory-mapped pack), augmentation, metrics
lines, progress and cancel checks cost. Goal: the worker keeps at least 90% of the bare rate.

    .venv/bin/python benchmarks/bench_train.py [--tiles 256 --batch-size 32 --image-size 96 --arch efficientnet_b0]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.record import record, start_load  # noqa: E402
from core.base.config import workspace  # noqa: E402
from core.tiles.pack import build_tilepack  # noqa: E402
from core.train.config import TrainConfig  # noqa: E402
from core.train.loop import train_run, training_tiles  # noqa: E402
from core.train.models import build_model, pick_device  # noqa: E402
from core.train.runs import read_metrics  # noqa: E402

TISSUES = ("Lung", "Liver", "Skin", "Colon")


def random_tile(row: pd.Series, out_size: int | None = None) -> np.ndarray:
    rng = np.random.default_rng(int(row["x"]))
    return rng.integers(0, 256, size=(out_size, out_size, 3), dtype=np.uint8)


def tile_index(n_tiles: int) -> pd.DataFrame:
    return pd.DataFrame({
        "sample_id": [f"GTEX-D{i % 8}-{i % 4:04d}" for i in range(n_tiles)],
        "tissue": [TISSUES[i % 4] for i in range(n_tiles)],
        "subject_id": [f"GTEX-D{i % 8}" for i in range(n_tiles)],
        "slide_path": "/bench/none.svs", "level": 0, "x": np.arange(n_tiles) * 448, "y": 0,
        "read_size": 448, "tile_size": 448, "passed_qc": True, "selected": True,
    })


def bare_loop(config: TrainConfig, n_tiles: int, device: torch.device) -> float:
    """Tiles/s of forward/backward/step on random tensors already on the device."""
    torch.manual_seed(0)
    model = build_model(config.arch, len(TISSUES)).to(device, memory_format=torch.channels_last).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr)
    amp = device.type == "cuda"
    scaler = torch.amp.GradScaler("cuda", enabled=amp)
    loss_fn = torch.nn.CrossEntropyLoss()
    x = torch.randn(config.batch_size, 3, config.image_size, config.image_size, device=device)
    x = x.contiguous(memory_format=torch.channels_last)  # the worker's layout on every device
    y = torch.randint(0, len(TISSUES), (config.batch_size,), device=device)
    steps = n_tiles // config.batch_size

    def step() -> None:
        with torch.autocast(device_type=device.type, dtype=torch.float16, enabled=amp):
            loss = loss_fn(model(x).float(), y)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()

    for _ in range(3):  # warm-up (allocator, oneDNN primitives); the worker skips its first batch likewise
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(steps - 1):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return (steps - 1) * config.batch_size / (time.perf_counter() - start)


def worker_loop(config: TrainConfig, n_tiles: int) -> tuple[float, float]:
    """(tiles/s of the worker's training batches after the first, wall seconds of train_run incl. checkpoint)."""
    with tempfile.TemporaryDirectory() as tmp:
        ws = workspace(Path(tmp) / "workspace")
        index = tile_index(n_tiles)
        build_tilepack(training_tiles(index), config.image_size, ws, random_tile, workers=1)  # pack built once
        start = time.perf_counter()
        train_run(ws.runs_dir / "bench", config, index, ws, read_tile=random_tile, pack_workers=1)
        wall = time.perf_counter() - start
        batches, _ = read_metrics(ws.runs_dir / "bench")
    # Skip the first batch (warm-up), like the bare loop: rate over batches 2..N from their elapsed stamps.
    first, last = batches.iloc[0], batches.iloc[-1]
    tiles = (len(batches) - 1) * config.batch_size
    return tiles / (last["elapsed"] - first["elapsed"]), wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tiles", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=TrainConfig.batch_size)
    parser.add_argument("--image-size", type=int, default=TrainConfig.image_size)
    parser.add_argument("--arch", default=TrainConfig.arch)
    args = parser.parse_args()
    load_start = start_load()
    n_tiles = args.tiles - args.tiles % args.batch_size  # whole batches only, in both loops
    config = TrainConfig(arch=args.arch, epochs=1, batch_size=args.batch_size, image_size=args.image_size,
                         test_fraction=0.0)
    device = pick_device()
    torch.set_num_threads(config.threads or torch.get_num_threads())
    print(f"device {device}, {torch.get_num_threads()} threads, {config.arch}, batch {config.batch_size}, "
          f"{config.image_size} px, {n_tiles} tiles")
    bare = bare_loop(config, n_tiles, device)
    worker, wall = worker_loop(config, n_tiles)
    print(f"bare forward/backward (baseline): {bare:8.1f} tiles/s")
    print(f"worker loop (train_run on pack):  {worker:8.1f} tiles/s   ratio {worker / bare:.2f} (goal >= 0.90)")
    print(f"train_run wall incl. setup, eval-free epoch, checkpoint: {wall:.1f} s "
          f"= {n_tiles / wall:.1f} tiles/s overall")
    record("bench_train", f"{worker:.1f} tiles/s ({config.arch}, {config.image_size} px, batch {config.batch_size}, "
           f"{device})", f"plain torch loop on in-memory tensors: {bare:.1f} tiles/s", worker / bare, load_start,
           {"tiles_per_s": worker, "bare_tiles_per_s": bare, "goal_ratio": 0.9, "tiles": n_tiles,
            "train_run_wall_s": wall})


if __name__ == "__main__":
    main()
