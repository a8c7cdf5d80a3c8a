"""Processes: the children this process launched (reaped, never left as zombies) and whether a pid lives."""

from __future__ import annotations

import os
import subprocess
import threading
from pathlib import Path
from typing import Any

# Children launched by this process; polled so finished ones are reaped, not left as zombies.
_children: dict[int, subprocess.Popen] = {}
_children_guard = threading.Lock()


def track_child(proc: subprocess.Popen) -> None:
    """Remember a launched child so `reap_children` collects it once it ends."""
    with _children_guard:
        _children[proc.pid] = proc


def reap_children() -> None:
    """Collect the children that have ended."""
    with _children_guard:
        for pid, proc in list(_children.items()):
            if proc.poll() is not None:
                del _children[pid]


def pid_alive(pid: Any) -> bool:
    """True when `pid` runs and is not a zombie (a zombie still answers kill(pid, 0))."""
    if not isinstance(pid, int) or pid <= 0:
        return False
    reap_children()
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True  # no /proc (macOS): trust kill()
    return stat.rsplit(")", 1)[-1].split()[:1] != ["Z"]
