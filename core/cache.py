"""diskcache under the workspace; keys from content hashes, parameters and the code version."""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import diskcache

from core.config import CODE_VERSION, Workspace

log = logging.getLogger(__name__)
T = TypeVar("T")

# Files up to this size are hashed whole; larger ones by size plus sampled blocks,
# so a 2.6 GB GCT is fingerprinted in milliseconds, not a minute.
_FULL_HASH_LIMIT = 64 * 1024 * 1024
_SAMPLE_BLOCK = 1024 * 1024
_SAMPLES = 16


def open_cache(ws: Workspace) -> diskcache.Cache:
    """A process-safe diskcache (SQLite with WAL), shared by the UI and workers."""
    return diskcache.Cache(str(ws.cache_dir), size_limit=2**34, eviction_policy="least-recently-used")


def file_fingerprint(path: str | Path) -> str:
    """Content hash of a file (sampled for big files), stable across copies and renames."""
    path = Path(path)
    size = path.stat().st_size
    digest = hashlib.blake2b(digest_size=16)
    digest.update(str(size).encode())
    with path.open("rb") as handle:
        if size <= _FULL_HASH_LIMIT:
            for block in iter(lambda: handle.read(_SAMPLE_BLOCK), b""):
                digest.update(block)
        else:
            step = (size - _SAMPLE_BLOCK) // (_SAMPLES - 1)
            for i in range(_SAMPLES):
                handle.seek(i * step)
                digest.update(handle.read(_SAMPLE_BLOCK))
    return digest.hexdigest()


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
