"""GCT v1.2 expression: a float32 genes x samples matrix, parsed once and cached as a memory map.

The GTEx v8 TPM file is ~2.6 GB of text; it is parsed once (core/data/gct.py, in blocks on every core) and
stored under `cache_dir` as a raw memory-mappable file keyed by the file's fingerprint and the kept
samples, so reloads are instant. A page never parses: it asks `cached_gct` and leaves parsing to a
background `python -m core load` job (core/cli/load.py).
`core.data.dataset` re-exports `Expression` and `read_gct` (the contract is core/data/__init__.py's docstring).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from core.base.cache import cache_key, file_fingerprint
from core.base.errors import DataError
from core.base.fileio import temp_path_for
from core.base.types import Progress
from core.data.gct import parse_gct as _parse_gct  # a module global, so tests can see whether it runs
from core.data.ids import emit as _emit

log = logging.getLogger(__name__)

_CACHE_FORMAT = 2  # 2: infinite values stored as NaN, negative ones as 0


@dataclass
class Expression:
    """A genes x samples float32 matrix (possibly a copy-on-write memory map of the cache)."""

    gene_ids: np.ndarray
    symbols: np.ndarray
    sample_ids: np.ndarray
    values: np.ndarray
    warnings: list[str] = field(default_factory=list)

    @classmethod
    def empty(cls) -> Expression:
        none = np.array([], dtype=str)
        return cls(none, none.copy(), none.copy(), np.zeros((0, 0), dtype=np.float32))

    @property
    def shape(self) -> tuple[int, int]:
        return (len(self.gene_ids), len(self.sample_ids))


class _CacheWriteError(Exception):
    """Writing the GCT cache failed (full or read-only disk); the reader falls back to memory."""


def _load_gct_cache(entry: Path) -> Expression | None:
    """The cached matrix, or None when absent or damaged (the caller then rebuilds it)."""
    meta_path, values_path = entry / "meta.json", entry / "values.f32"
    if not meta_path.is_file():
        return None
    try:
        meta = json.loads(meta_path.read_text())
        genes, samples = (int(n) for n in meta["shape"])
        if meta["format"] != _CACHE_FORMAT or len(meta["gene_ids"]) != genes or len(meta["symbols"]) != genes:
            raise ValueError("metadata does not match its shape")
        if len(meta["sample_ids"]) != samples or values_path.stat().st_size != genes * samples * 4:
            raise ValueError("values file does not match the shape")
        if genes * samples:
            # Copy-on-write: callers may modify their matrix without touching the cache file.
            values = np.memmap(values_path, dtype=np.float32, mode="c", shape=(genes, samples))
        else:
            values = np.zeros((genes, samples), dtype=np.float32)
        return Expression(
            np.array(meta["gene_ids"], dtype=str),
            np.array(meta["symbols"], dtype=str),
            np.array(meta["sample_ids"], dtype=str),
            values,
            [str(m) for m in meta["warnings"]],
        )
    except (OSError, ValueError, KeyError, TypeError) as exc:
        log.warning("GCT cache %s is damaged (%s); rebuilding it", entry, exc)
        return None


def _build_gct_cache(path: Path, keep: frozenset[str] | None, entry: Path, progress: Progress | None) -> None:
    """Parse into a temp folder beside `entry`, then rename it into place (readers never see half)."""
    entry.parent.mkdir(parents=True, exist_ok=True)
    building = temp_path_for(entry)
    shutil.rmtree(building, ignore_errors=True)
    building.mkdir()
    try:
        with (building / "values.f32").open("wb") as values_out:

            def write(rows: np.ndarray) -> None:
                try:
                    values_out.write(memoryview(np.ascontiguousarray(rows)).cast("B"))
                except OSError as exc:  # the cache's disk, not the input: must not read as bad input
                    raise _CacheWriteError(str(exc)) from exc

            parsed = _parse_gct(path, keep, write, progress)
        meta = {
            "format": _CACHE_FORMAT,
            "source": str(path),
            "shape": [len(parsed.gene_ids), len(parsed.sample_ids)],
            "gene_ids": parsed.gene_ids,
            "symbols": parsed.symbols,
            "sample_ids": parsed.sample_ids,
            "warnings": parsed.messages,
        }
        (building / "meta.json").write_text(json.dumps(meta))
        shutil.rmtree(entry, ignore_errors=True)  # a damaged earlier entry
        try:
            os.replace(building, entry)
        except OSError:  # another process finished first; its entry is as good as ours
            pass
    finally:
        shutil.rmtree(building, ignore_errors=True)


def _gct_cache_entry(path: Path, keep: frozenset[str] | None, cache_dir: Path) -> Path:
    kept = "all" if keep is None else hashlib.blake2b("\n".join(sorted(keep)).encode(), digest_size=16).hexdigest()
    return Path(cache_dir) / cache_key("gct", _CACHE_FORMAT, file_fingerprint(path), kept).replace(":", "-")


def cached_gct(path: Path, keep: frozenset[str] | None, cache_dir: Path) -> Expression | None:
    """The cached matrix when one is ready, else None; never parses (what a page calls)."""
    try:
        return _load_gct_cache(_gct_cache_entry(path, keep, cache_dir)) if path.is_file() else None
    except OSError:
        return None


def gct_cache_ready(path: Path, keep: frozenset[str] | None, cache_dir: Path) -> bool:
    """Whether a cache entry for this GCT and these samples exists (a stat; the GCT is not read)."""
    try:
        return path.is_file() and (_gct_cache_entry(path, keep, cache_dir) / "meta.json").is_file()
    except OSError:
        return False


def _read_gct(
    path: Path, keep: frozenset[str] | None, cache_dir: Path | None, progress: Progress | None = None
) -> Expression:
    if not path.is_file():
        raise DataError(path, "expression GCT not found")
    if cache_dir is not None:
        try:
            entry = _gct_cache_entry(path, keep, cache_dir)
            cached = _load_gct_cache(entry)
            if cached is None:
                _build_gct_cache(path, keep, entry, progress)
                cached = _load_gct_cache(entry)
            if cached is not None:
                return cached
        except (OSError, _CacheWriteError) as exc:  # unwritable or full cache folder: parse into memory instead
            log.warning("cannot use the GCT cache in %s (%s); reading %s without it", cache_dir, exc, path)
    parsed = _parse_gct(path, keep, None, progress)
    assert parsed.matrix is not None
    return Expression(
        np.array(parsed.gene_ids, dtype=str),
        np.array(parsed.symbols, dtype=str),
        np.array(parsed.sample_ids, dtype=str),
        parsed.matrix,
        parsed.messages,
    )


def read_gct(
    path: str | Path,
    keep_samples: Collection[str] | None = None,
    cache_dir: Path | None = None,
    progress: Progress | None = None,
) -> Expression:
    """Read a GCT v1.2 file (plain or gzip) in parallel blocks, as float32 genes x RNA samples.

    `keep_samples`: tissue sample IDs (GTEX-XXXX-YYYY); only RNA columns whose first three dash
    fields are among them are kept (the first RNA sample of each). With `cache_dir` the parsed matrix is
    stored there once (keyed by file content, kept samples and CODE_VERSION) and memory-mapped after.
    NaN values stay missing, infinite ones become missing, negative ones 0, each with a warning
    (core.data.gct.fix_values). `progress(done_bytes, total_bytes, message)` follows a parse.
    """
    keep = None if keep_samples is None else frozenset(keep_samples)
    expression = _read_gct(Path(path), keep, cache_dir, progress)
    _emit(expression.warnings)
    return expression
