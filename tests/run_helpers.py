"""A finished training run written straight to disk (no checkpoints): what the Training page draws from.
Shared by the page tests (AppTest) and the browser tests."""

from __future__ import annotations

import json
from pathlib import Path

from core.base.config import Workspace
from core.train import runs
from core.train.config import TrainConfig


def run_with_epochs(ws: Workspace, epoch_lines: list[dict]) -> Path:
    """A finished run folder (no checkpoints) whose metrics.jsonl holds these epoch lines (classes A and B)."""
    run_dir = runs.new_run_dir(ws)
    (run_dir / "config.json").write_text(json.dumps({**TrainConfig(epochs=len(epoch_lines)).to_dict(),
                                                     "classes": ["A", "B"]}))
    (run_dir / "summary.json").write_text(json.dumps({"status": "done", "epochs_done": len(epoch_lines)}))
    lines = [{"type": "epoch", "epoch": i + 1, "train_loss": 1.0 / (i + 1), "train_acc": 0.5, "val_loss": 1.0,
              "val_acc": 0.5 + 0.1 * i, "test_loss": 1.0, "test_acc": 0.5, **line}
             for i, line in enumerate(epoch_lines)]
    (run_dir / "metrics.jsonl").write_text("\n".join(json.dumps(line) for line in lines) + "\n")
    return run_dir
