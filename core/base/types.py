"""The call shapes stages report through: one Progress, one Cancel, one Reporter for every stage."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

Progress = Callable[[float, int, str], None]
"""`progress(done, total, message)`: units done of `total` (slides, tiles, bytes, genes...); `done` may be
fractional where a unit is under way (a slide half tiled)."""

StepProgress = Callable[[float, str, str], None]
"""`progress(share, message, step)`: share done in [0, 1] of a chain of named steps (a prediction)."""

Cancel = Callable[[], bool]
"""True once the user asked the job to stop; long loops poll it between units of work."""


class Reporter(Protocol):
    """What a long step reports to: core.jobs.JobReporter in a worker, a stand-in in tests."""

    def progress(self, done: float, total: float | None, message: str = "", **extra: Any) -> None: ...

    def cancel_requested(self) -> bool: ...
