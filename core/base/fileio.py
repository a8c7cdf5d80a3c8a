"""Small file helpers every module shares: atomic writes, a forgiving JSON-object reader, file locks."""

from __future__ import annotations

import errno
import fcntl
import json
import os
import secrets
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from core.base.errors import DataError


def temp_path_for(path: str | Path) -> Path:
    """A hidden sibling name unique to this process and call, so two writers (threads, processes,
    or a forked child with the same pid) never share a temp file."""
    path = Path(path)
    return path.with_name(f".{path.name}.{os.getpid()}-{secrets.token_hex(4)}.tmp")


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temp path to write; on success it replaces `path` in one rename, on error it is removed.

    Readers therefore see the old file or the whole new one, never half of it (files or folders).
    """
    path = Path(path)
    tmp = temp_path_for(path)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if tmp.is_dir() and not tmp.is_symlink():
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            tmp.unlink(missing_ok=True)


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def atomic_write_json(path: str | Path, obj: Any) -> None:
    atomic_write_bytes(path, json.dumps(obj, indent=2, default=str).encode())


def read_json_object(path: str | Path) -> dict[str, Any] | None:
    """The JSON object in `path`, or None when the file is missing, unreadable, not JSON or not an object."""
    try:
        value = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) else None


# errno values that mean "this filesystem cannot lock" (some NFS, SMB and FUSE mounts), not "someone holds it".
_NO_LOCK_SUPPORT = {errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS}


def flock(file: int | IO[Any], operation: int, workspace_root: str | Path) -> None:
    """`fcntl.flock`, with a filesystem that cannot lock turned into a DataError naming the workspace.

    BlockingIOError (held by someone else, with LOCK_NB) passes through unchanged for the caller.
    """
    try:
        fcntl.flock(file, operation)
    except BlockingIOError:
        raise
    except OSError as exc:
        if exc.errno not in _NO_LOCK_SUPPORT:
            raise
        raise DataError(
            workspace_root,
            f"the workspace's filesystem cannot lock files (flock: {os.strerror(exc.errno)}); the lock keeps "
            "two background jobs from writing at once. Put the workspace on a local disk: set "
            "HISTOGENE_WORKSPACE (or pass --workspace) to a local folder",
        ) from None
