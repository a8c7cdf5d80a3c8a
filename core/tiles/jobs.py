"""Tiling as a background job: the `tiles` command line the Overview page starts (`python -m core tiles`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from core import jobs
from core.base.config import Workspace

KIND = "tiles"


def tiles_argv(data_dir: str | Path) -> list[str]:
    """The `tiles` command line for a dataset, with the tiling the dataset records (core.cli.tiles parses it)."""
    return ["tiles", "--data", str(data_dir)]


def launch_tiles(ws: Workspace, data_dir: str | Path) -> jobs.Job:
    """Start tiling `data_dir` as the workspace's one background job; JobBusyError names the running job."""
    return jobs.launch(ws, KIND, tiles_argv(data_dir))


def last_attempt(ws: Workspace, data_dir: str | Path) -> dict[str, Any] | None:
    """The newest tiling of `data_dir` when it failed or was cancelled (its status and log tail), else None."""
    return jobs.last_failure(ws, KIND, tiles_argv(data_dir))
