"""One error type for bad input, so every caller can show a clear message."""

from __future__ import annotations

from pathlib import Path


class DataError(Exception):
    """Bad input: names the file and the problem, never a raw traceback for users."""

    def __init__(self, path: str | Path | None, problem: str) -> None:
        self.path = str(path) if path is not None else None
        self.problem = problem
        super().__init__(f"{self.path}: {problem}" if self.path else problem)


class JobBusyError(Exception):
    """A second background job was refused because another one holds the worker lock."""


class DataWarning(UserWarning):
    """Input that was usable but odd (e.g. a GCT dimensions line that disagrees with its rows)."""
