"""Workspace paths and settings; environment variables override the defaults."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

# Bump when a change alters cached results; it is part of every cache key.
CODE_VERSION = "1"

WORKSPACE_ENV = "HISTOGENE_WORKSPACE"
DATA_ENV = "HISTOGENE_DATA"


@dataclass(frozen=True)
class Workspace:
    """Folder holding the demo cohort, tile indexes, cache, jobs and runs."""

    root: Path

    @property
    def demo_dir(self) -> Path:
        return self.root / "demo"

    @property
    def cache_dir(self) -> Path:
        return self.root / "cache"

    @property
    def tiles_dir(self) -> Path:
        return self.root / "tiles"

    @property
    def runs_dir(self) -> Path:
        return self.root / "runs"

    @property
    def jobs_dir(self) -> Path:
        return self.root / "jobs"

    @property
    def datasets_dir(self) -> Path:
        """Per-dataset settings (core.base.settings)."""
        return self.root / "datasets"

    def ensure(self) -> Workspace:
        for folder in (self.root, self.cache_dir, self.tiles_dir, self.runs_dir, self.jobs_dir):
            folder.mkdir(parents=True, exist_ok=True)
        return self


def workspace(root: str | Path | None = None) -> Workspace:
    """The workspace: `root`, else $HISTOGENE_WORKSPACE, else ./workspace."""
    chosen = root or os.environ.get(WORKSPACE_ENV) or "workspace"
    return Workspace(Path(chosen).expanduser().resolve()).ensure()


def resolve_data_dir(ws: Workspace, given: str | Path | None = None) -> Path:
    """The dataset folder a command works on: `given`, else $HISTOGENE_DATA, else the workspace's demo
    cohort. Raises DataError when that folder does not exist (one message for every CLI command)."""
    from core.base.errors import DataError  # late: errors is tiny, but config must stay import-light

    data = Path(given).expanduser().resolve() if given else (configured_data_dir() or ws.demo_dir)
    if not data.is_dir():
        hint = "" if given else " (run `python -m core demo` to create the demo cohort, or pass --data)"
        raise DataError(data, f"dataset folder not found{hint}")
    return data


def configured_data_dir() -> Path | None:
    """The dataset folder from $HISTOGENE_DATA, or None (the app then uses the demo cohort)."""
    value = os.environ.get(DATA_ENV)
    return Path(value).expanduser().resolve() if value else None
