"""Generating the demo cohort as a background job: what a page starts on the first start of a workspace."""

from __future__ import annotations

from typing import Any

from core import jobs
from core.base.config import Workspace

KIND = "demo"


def demo_argv() -> list[str]:
    """The `demo` command line: the demo cohort into the workspace, at its default size (core.cli.demo)."""
    return ["demo"]


def launch_demo(ws: Workspace) -> jobs.Job:
    """Start generating the demo cohort as the workspace's one background job; JobBusyError names the running one."""
    return jobs.launch(ws, KIND, demo_argv())


def last_attempt(ws: Workspace) -> dict[str, Any] | None:
    """The newest demo generation when it failed or was cancelled (its status and log tail), else None."""
    return jobs.last_failure(ws, KIND, demo_argv())
