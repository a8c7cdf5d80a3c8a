"""diskcache under the workspace; keys from content fingerprints, parameters and the code version."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import sqlite3
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import diskcache

from core.base.config import CODE_VERSION, Workspace

log = logging.getLogger(__name__)
T = TypeVar("T")

# Files up to this size are hashed whole; larger ones by sampled blocks. Every fingerprint also holds
# the file's size, mtime_ns and inode, so an in-place edit anywhere in a 2.6 GB GCT changes it even
# where no block was sampled.
_FULL_HASH_LIMIT = 1024 * 1024
_SAMPLE_BLOCK = 64 * 1024
_SAMPLES = 8
# Fingerprints by (path, size, mtime_ns, ctime_ns, inode, device): a file whose stat has not changed is
# never read again in this process, so a page rerun costs one stat per file.
_MEMO: OrderedDict[tuple, str] = OrderedDict()
_MEMO_KEPT = 200_000
_MEMO_GUARD = threading.Lock()

CACHE_DB = "cache.db"


def _stat_key(path: Path) -> tuple[tuple, os.stat_result]:
    stat = path.stat()
    return (str(path.absolute()), stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns, stat.st_ino, stat.st_dev), stat


def _content_fingerprint(path: Path, stat: os.stat_result) -> str:
    digest = hashlib.blake2b(digest_size=16)
    digest.update(f"{stat.st_size}:{stat.st_mtime_ns}:{stat.st_ino}".encode())
    with path.open("rb") as handle:
        if stat.st_size <= _FULL_HASH_LIMIT:
            digest.update(handle.read())
        else:
            step = (stat.st_size - _SAMPLE_BLOCK) // (_SAMPLES - 1)
            for i in range(_SAMPLES):
                handle.seek(i * step)
                digest.update(handle.read(_SAMPLE_BLOCK))
    return digest.hexdigest()


def file_fingerprint(path: str | Path) -> str:
    """Identity of a file's current content: size, mtime_ns and inode plus a content sample.

    Any edit (which moves mtime) gives a new fingerprint; an untouched file is stat'ed, never re-read,
    within a process. A copy of a file has a new mtime and inode, so it counts as a new file.
    """
    path = Path(path)
    key, stat = _stat_key(path)
    with _MEMO_GUARD:
        known = _MEMO.get(key)
        if known is not None:
            _MEMO.move_to_end(key)
            return known
    fingerprint = _content_fingerprint(path, stat)
    with _MEMO_GUARD:
        _MEMO[key] = fingerprint
        while len(_MEMO) > _MEMO_KEPT:
            _MEMO.popitem(last=False)
    return fingerprint


def _open(ws: Workspace) -> diskcache.Cache:
    return diskcache.Cache(str(ws.cache_dir), size_limit=2**34, eviction_policy="least-recently-used")


def open_cache(ws: Workspace) -> diskcache.Cache:
    """A process-safe diskcache (SQLite with WAL), shared by the UI and workers.

    A damaged database (a crash mid-write on a bad disk, a truncated copy) is moved aside with its
    write-ahead log and a fresh one is started: cached results are recomputed, never fatal.
    """
    try:
        return _open(ws)
    except sqlite3.DatabaseError as exc:
        stamp = time.strftime("%Y%m%d-%H%M%S")
        for name in (CACHE_DB, f"{CACHE_DB}-wal", f"{CACHE_DB}-shm"):
            damaged = ws.cache_dir / name
            if damaged.exists():
                os.replace(damaged, ws.cache_dir / f"{name}.damaged-{stamp}-{os.getpid()}")
        log.warning("cache database in %s was damaged (%s); moved aside and started afresh", ws.cache_dir, exc)
        return _open(ws)


def cache_key(name: str, *parts: Any) -> str:
    """A key from a step name, JSON-able parameters/fingerprints and CODE_VERSION."""
    payload = json.dumps([name, CODE_VERSION, *parts], sort_keys=True, default=str)
    return f"{name}:{hashlib.blake2b(payload.encode(), digest_size=16).hexdigest()}"


def cached(cache: diskcache.Cache, key: str, compute: Callable[[], T]) -> T:
    """Return the cached value for `key`, computing and storing it when missing or unreadable."""
    try:
        value = cache.get(key, default=_MISSING)
    except Exception as exc:  # corrupt entry: recompute, never fatal
        log.warning("cache entry %s unreadable (%s); recomputing", key, exc)
        value = _MISSING
    if value is _MISSING:
        value = compute()
        try:
            cache.set(key, value)
        except Exception as exc:  # a full disk or a locked DB must not lose the result
            log.warning("could not store cache entry %s: %s", key, exc)
    return value


class _Missing:
    pass


_MISSING = _Missing()
