"""GCT v1.2 expression: streaming parse into a float32 genes x samples matrix, cached as a memory map.

The GTEx v8 TPM file is ~2.6 GB of text; it is parsed once and stored under `cache_dir` as a raw
memory-mappable file keyed by the file's fingerprint and the kept samples, so reloads are instant.
`core.dataset` re-exports `Expression` and `read_gct` (the contract in ARCHITECTURE.md).
"""

from __future__ import annotations

import gzip
import hashlib
import json
import logging
import os
import shutil
from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import numpy as np

from core.cache import cache_key, file_fingerprint
from core.errors import DataError
from core.fileio import temp_path_for
from core.ids import emit as _emit
from core.ids import listing as _listing
from core.ids import normalize_id, tissue_sample_id

log = logging.getLogger(__name__)

_ROWS_PER_WRITE = 256
_CACHE_FORMAT = 1


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


@dataclass
class _GctHeader:
    genes_declared: int
    samples_declared: int
    samples: list[str]


def _open_text(path: Path) -> IO[str]:
    with path.open("rb") as probe:
        compressed = probe.read(2) == b"\x1f\x8b"  # gzip magic, whatever the file is called
    if compressed:
        return gzip.open(path, "rt", encoding="utf-8", newline="")
    return path.open("r", encoding="utf-8", newline="")


def _read_gct_header(path: Path, handle: IO[str]) -> _GctHeader:
    version = handle.readline()
    if not version:
        raise DataError(path, "empty file; expected a GCT v1.2 file starting with '#1.2'")
    if version.strip() != "#1.2":
        raise DataError(path, f"line 1: expected '#1.2' (GCT v1.2 header), found {version.strip()[:40]!r}")
    dims_line = handle.readline().strip()
    dims = dims_line.split()
    if len(dims) < 2 or not all(d.isdigit() for d in dims[:2]):
        raise DataError(path, f"line 2: expected the dimensions line '<genes>\\t<samples>', found {dims_line[:40]!r}")
    columns = handle.readline().rstrip("\r\n").split("\t")
    if columns[:2] != ["Name", "Description"]:
        raise DataError(
            path, f"line 3: expected the column header to start with 'Name<TAB>Description', found {columns[:2]!r}"
        )
    return _GctHeader(int(dims[0]), int(dims[1]), [normalize_id(name) for name in columns[2:]])


def _select_columns(
    path: Path, samples: list[str], keep: frozenset[str] | None, messages: list[str]
) -> tuple[np.ndarray, list[str]]:
    """Column positions to keep: first of each RNA ID; with `keep`, first RNA sample per tissue sample."""
    positions: list[int] = []
    seen_rna: set[str] = set()
    seen_tissue: set[str] = set()
    duplicate_rna: list[str] = []
    extra_rna: list[str] = []
    for position, rna in enumerate(samples):
        if rna in seen_rna:
            duplicate_rna.append(rna)
            continue
        seen_rna.add(rna)
        if keep is not None:
            tissue = tissue_sample_id(rna)
            if tissue not in keep:
                continue
            if tissue in seen_tissue:
                extra_rna.append(rna)
                continue
            seen_tissue.add(tissue)
        positions.append(position)
    if duplicate_rna:
        messages.append(
            f"{path}: {len(duplicate_rna)} duplicate RNA sample column(s), kept the first of each: "
            f"{_listing(duplicate_rna)}"
        )
    if extra_rna:
        messages.append(
            f"{path}: {len(extra_rna)} RNA sample(s) map to a tissue sample already kept; kept the first RNA "
            f"sample of each tissue sample, dropped: {_listing(extra_rna)}"
        )
    return np.asarray(positions, dtype=np.intp), [samples[p] for p in positions]


def _bad_cell_error(path: Path, line_no: int, gene: str, cells: list[str], samples: list[str]) -> DataError:
    for column, cell in enumerate(cells):
        try:
            float(cell)
        except ValueError:
            return DataError(
                path,
                f"line {line_no} (gene {gene}), column {column + 3} (sample {samples[column]}): "
                f"{cell[:30]!r} is not a number",
            )
    raise AssertionError("no bad cell")  # caller checked there is one


def _parse_values(path: Path, line_no: int, line: str, samples: list[str]) -> tuple[str, str, np.ndarray]:
    """One data line -> (gene id, symbol, float32 values); C-speed parse, Python only to explain errors."""
    n_fields = 2 + len(samples)
    parts = line.split("\t", 2)
    if not samples and len(parts) == 2:
        parts.append("")
    if len(parts) < 3 or line.count("\t") != n_fields - 1:
        found = line.count("\t") + 1
        raise DataError(
            path,
            f"line {line_no}: expected {n_fields} tab-separated fields (Name, Description and "
            f"{len(samples)} samples), found {found}",
        )
    name, symbol, rest = parts
    if not samples:
        return name, symbol, np.zeros(0, dtype=np.float32)
    values = None
    # fromstring skips blank cells and splits on spaces, so those lines take the strict path.
    if "\t\t" not in rest and " " not in rest and not rest.startswith("\t") and not rest.endswith("\t"):
        try:
            values = np.fromstring(rest, dtype=np.float32, sep="\t")
        except ValueError:
            values = None
        if values is not None and values.size != len(samples):
            values = None
    if values is None:
        cells = rest.split("\t")
        try:
            values = np.array([float(cell) for cell in cells], dtype=np.float32)
        except ValueError:
            raise _bad_cell_error(path, line_no, name, cells, samples) from None
    return name, symbol, values


def _parse_gct(
    path: Path, keep: frozenset[str] | None, values_out: IO[bytes] | None, messages: list[str]
) -> tuple[list[str], list[str], list[str], np.ndarray | None]:
    """Stream the GCT; rows go to `values_out` (raw float32) or, without one, are returned in memory."""
    gene_ids: list[str] = []
    symbols: list[str] = []
    blocks: list[np.ndarray] = []
    pending: list[np.ndarray] = []
    line_no = 0

    def flush() -> None:
        if pending:
            block = np.stack(pending)
            if values_out is not None:
                try:
                    values_out.write(block.tobytes())
                except OSError as exc:  # the cache's disk, not the input: must not read as bad input
                    raise _CacheWriteError(str(exc)) from exc
            else:
                blocks.append(block)
            pending.clear()

    try:
        with _open_text(path) as handle:
            header = _read_gct_header(path, handle)
            positions, sample_ids = _select_columns(path, header.samples, keep, messages)
            take_all = len(positions) == len(header.samples)
            for line_no, line in enumerate(handle, start=4):
                line = line.rstrip("\r\n")
                if not line.strip():
                    continue  # trailing blank lines are harmless
                name, symbol, values = _parse_values(path, line_no, line, header.samples)
                gene_ids.append(name)
                symbols.append(symbol)
                pending.append(values if take_all else values[positions])
                if len(pending) >= _ROWS_PER_WRITE:
                    flush()
            flush()
    except (OSError, EOFError, UnicodeDecodeError) as exc:  # truncated gzip, binary junk, unreadable file
        where = f"line {line_no + 1}: " if line_no else ""
        raise DataError(path, f"{where}cannot read the file: {exc}") from exc

    if header.genes_declared != len(gene_ids) or header.samples_declared != len(header.samples):
        messages.append(
            f"{path}: the dimensions line says {header.genes_declared} genes x {header.samples_declared} samples "
            f"but the file has {len(gene_ids)} gene rows x {len(header.samples)} sample columns; using the rows"
        )
    if values_out is not None:
        return gene_ids, symbols, sample_ids, None
    matrix = np.concatenate(blocks) if blocks else np.zeros((0, len(sample_ids)), dtype=np.float32)
    return gene_ids, symbols, sample_ids, matrix


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


def _build_gct_cache(path: Path, keep: frozenset[str] | None, entry: Path) -> None:
    """Parse into a temp folder beside `entry`, then rename it into place (readers never see half)."""
    entry.parent.mkdir(parents=True, exist_ok=True)
    building = temp_path_for(entry)
    shutil.rmtree(building, ignore_errors=True)
    building.mkdir()
    try:
        messages: list[str] = []
        with (building / "values.f32").open("wb") as values_out:
            gene_ids, symbols, sample_ids, _ = _parse_gct(path, keep, values_out, messages)
        meta = {
            "format": _CACHE_FORMAT,
            "source": str(path),
            "shape": [len(gene_ids), len(sample_ids)],
            "gene_ids": gene_ids,
            "symbols": symbols,
            "sample_ids": sample_ids,
            "warnings": messages,
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
    return Path(cache_dir) / cache_key("gct", file_fingerprint(path), kept).replace(":", "-")


def _read_gct(path: Path, keep: frozenset[str] | None, cache_dir: Path | None) -> Expression:
    if not path.is_file():
        raise DataError(path, "expression GCT not found")
    if cache_dir is not None:
        try:
            entry = _gct_cache_entry(path, keep, cache_dir)
            cached = _load_gct_cache(entry)
            if cached is None:
                _build_gct_cache(path, keep, entry)
                cached = _load_gct_cache(entry)
            if cached is not None:
                return cached
        except (OSError, _CacheWriteError) as exc:  # unwritable or full cache folder: parse into memory instead
            log.warning("cannot use the GCT cache in %s (%s); reading %s without it", cache_dir, exc, path)
    messages: list[str] = []
    gene_ids, symbols, sample_ids, matrix = _parse_gct(path, keep, None, messages)
    assert matrix is not None
    return Expression(
        np.array(gene_ids, dtype=str), np.array(symbols, dtype=str), np.array(sample_ids, dtype=str), matrix, messages
    )


def read_gct(
    path: str | Path, keep_samples: Collection[str] | None = None, cache_dir: Path | None = None
) -> Expression:
    """Read a GCT v1.2 file (plain or gzip) streaming, as float32 genes x RNA samples.

    `keep_samples`: tissue sample IDs (GTEX-XXXX-YYYY); only RNA columns whose first three dash
    fields are among them are kept (the first RNA sample of each). With `cache_dir` the parsed matrix is
    stored there once (keyed by file content, kept samples and CODE_VERSION) and memory-mapped after.
    """
    keep = None if keep_samples is None else frozenset(keep_samples)
    expression = _read_gct(Path(path), keep, cache_dir)
    _emit(expression.warnings)
    return expression


