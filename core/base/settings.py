"""Per-dataset choices a user makes once (which column names the donor, which tile index to use),
kept in the workspace so the pages, the CLI and workers all see the same ones.

Keys in use: `donor_column` (core.data.dataset), `tiling` (core.tiles.index: the parameters of the index the
dataset uses). Unknown keys are kept as they are.
"""

from __future__ import annotations

import fcntl
import hashlib
from pathlib import Path
from typing import Any

from core.base.config import Workspace
from core.base.fileio import atomic_write_json, read_json_object


def _dataset_key(data_dir: str | Path) -> str:
    return hashlib.blake2b(str(Path(data_dir).expanduser().resolve()).encode(), digest_size=8).hexdigest()


def dataset_settings_path(ws: Workspace, data_dir: str | Path) -> Path:
    return ws.datasets_dir / f"{_dataset_key(data_dir)}.json"


def load_dataset_settings(ws: Workspace, data_dir: str | Path) -> dict[str, Any]:
    """The saved choices for `data_dir` ({} when none, or when the file is unreadable)."""
    settings = read_json_object(dataset_settings_path(ws, data_dir)) or {}
    settings.pop("data_dir", None)
    return settings


def update_dataset_settings(ws: Workspace, data_dir: str | Path, **changes: Any) -> dict[str, Any]:
    """Merge `changes` into the dataset's settings (a value of None removes the key); returns them all.

    A lock file serialises writers, so two tabs changing different keys never lose one another's change.
    """
    path = dataset_settings_path(ws, data_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_suffix(".lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        settings = load_dataset_settings(ws, data_dir)
        for key, value in changes.items():
            if value is None:
                settings.pop(key, None)
            else:
                settings[key] = value
        atomic_write_json(path, {"data_dir": str(Path(data_dir).expanduser().resolve()), **settings})
    return settings
