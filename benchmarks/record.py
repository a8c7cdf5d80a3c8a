"""One benchmark run's figures, saved as benchmarks/results/<name>.json for benchmarks/results.py to render.

A benchmark calls `start_load()` before it measures and `record(...)` at its end. The record keeps the date
(UTC), the core count, the load average at start and end (the machine may be shared), the git revision and
the command that made it, so RESULTS.md never holds a figure that was typed in.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
RESULTS_DIR = REPO / "benchmarks" / "results"


def start_load() -> tuple[float, float, float]:
    """The load average now: pass it to `record` as `load_start`."""
    return os.getloadavg()


def command_line(argv: list[str] | None = None) -> str:
    """This process's command as a user types it from the repo root (paths inside the repo made relative)."""
    words = list(sys.argv if argv is None else argv)
    script = Path(words[0]).resolve()
    words[0] = script.relative_to(REPO).as_posix() if script.is_relative_to(REPO) else script.name
    for i, word in enumerate(words[1:], start=1):
        path = Path(word)
        if path.is_absolute() and path.resolve().is_relative_to(REPO):
            words[i] = path.resolve().relative_to(REPO).as_posix()
    return " ".join([".venv/bin/python", *words])


def git_revision() -> str:
    """Short hash of HEAD, with "+changes" when the measured code (core/, benchmarks/*.py) differs from it."""
    def git(*args: str) -> str:
        done = subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True, check=False)
        return done.stdout.strip() if done.returncode == 0 else ""

    head = git("rev-parse", "--short", "HEAD") or "unknown"
    changed = git("status", "--porcelain", "--", "core", "benchmarks/*.py")
    return f"{head}+changes" if changed else head


def record(name: str, figure: str, baseline: str, ratio: float | None, load_start: tuple[float, ...],
           figures: dict[str, Any] | None = None, command: str | None = None,
           results_dir: Path = RESULTS_DIR) -> Path:
    """Write the record of benchmark `name` (its script's stem): `figure` is the headline as a reader sees
    it ("95.2 tiles/s"), `baseline` what it is compared with, `ratio` figure / baseline (None when the
    script has no baseline), `figures` every number worth keeping. Returns the file written."""
    entry = {
        "name": name,
        "figure": figure,
        "baseline": baseline,
        "ratio": None if ratio is None else round(float(ratio), 3),
        "command": command or command_line(),
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "cores": os.cpu_count(),
        "load_start": [round(x, 2) for x in load_start],
        "load_end": [round(x, 2) for x in os.getloadavg()],
        "revision": git_revision(),
        "figures": figures or {},
    }
    results_dir.mkdir(parents=True, exist_ok=True)
    path = results_dir / f"{name}.json"
    path.write_text(json.dumps(entry, indent=2, sort_keys=False) + "\n")
    print(f"recorded {path.relative_to(REPO) if path.is_relative_to(REPO) else path}", file=sys.stderr)
    return path
