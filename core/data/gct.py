"""GCT v1.2 text -> float32 rows: blocks of whole lines parsed on every core, in file order.

Each block (~16 MB of text, whole lines) is cut into cells with numpy (positions of tabs and newlines)
and its numbers parsed by Arrow's string -> float32 cast over the text itself, both outside the GIL, so
threads scale and the matrix never goes through Python floats. A block the fast path cannot take (a bad cell, a ragged
line, spaces around numbers, blank lines) is re-read line by line, which either parses it the slow way
or names the line, gene and sample that are wrong. Values are checked here: NaN, +-inf and negative
TPM are counted and fixed (`fix_values`) so the cache never stores them silently.
"""

from __future__ import annotations

import gzip
import os
import zlib
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from core.base.errors import DataError
from core.base.types import Progress
from core.data.ids import listing, normalize_id, tissue_sample_id

BLOCK_BYTES = 16 << 20  # text per block: bounds memory at about 10x this per worker
FIRST_DATA_LINE = 4  # lines 1-3: version, dimensions, column header

# (done, total, message): bytes of the file read so far (compressed bytes for .gz) and its size.


@dataclass
class GctHeader:
    genes_declared: int
    samples_declared: int
    samples: list[str]


@dataclass
class ValueIssues:
    """Counts of NaN / infinite / negative values and where each kind first occurs (gene, sample)."""

    counts: dict[str, int] = field(default_factory=lambda: {"nan": 0, "inf": 0, "negative": 0})
    first: dict[str, tuple[str, str]] = field(default_factory=dict)

    def add(self, other: ValueIssues) -> None:
        for kind, count in other.counts.items():
            self.counts[kind] += count
            if kind in other.first and kind not in self.first:
                self.first[kind] = other.first[kind]

    def messages(self, path: Path) -> list[str]:
        what = {
            "nan": "NaN (missing) value(s); kept as missing, and genes with a missing value are left out "
                   "by the gene filter",
            "inf": "infinite value(s); set to missing (NaN), and genes with a missing value are left out "
                   "by the gene filter",
            "negative": "negative value(s), impossible for TPM; set to 0",
        }
        return [
            f"{path}: {self.counts[kind]:,} {text} (first: gene {self.first[kind][0]}, "
            f"sample {self.first[kind][1]})"
            for kind, text in what.items()
            if self.counts[kind]
        ]


@dataclass
class ParsedBlock:
    gene_ids: list[str]
    symbols: list[str]
    values: np.ndarray  # (lines, kept samples) float32, C-contiguous
    issues: ValueIssues


# ---------------------------------------------------------------- header and columns


def open_gct(path: Path) -> tuple[IO[bytes], IO[bytes]]:
    """(text handle, raw file): gzip is recognised by its magic bytes whatever the file is called;
    the raw file's position is the progress in bytes of the file itself."""
    raw = path.open("rb")
    compressed = raw.read(2) == b"\x1f\x8b"
    raw.seek(0)
    return (gzip.GzipFile(fileobj=raw, mode="rb") if compressed else raw), raw


def _header_line(path: Path, handle: IO[bytes], number: int) -> str:
    try:
        return handle.readline().decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DataError(path, f"line {number}: not UTF-8 text ({exc})") from exc


def read_header(path: Path, handle: IO[bytes]) -> GctHeader:
    version = _header_line(path, handle, 1)
    if not version:
        raise DataError(path, "empty file; expected a GCT v1.2 file starting with '#1.2'")
    if version.strip() != "#1.2":
        raise DataError(path, f"line 1: expected '#1.2' (GCT v1.2 header), found {version.strip()[:40]!r}")
    dims_line = _header_line(path, handle, 2).strip()
    dims = dims_line.split()
    if len(dims) < 2 or not all(d.isdigit() for d in dims[:2]):
        raise DataError(path, f"line 2: expected the dimensions line '<genes>\\t<samples>', found {dims_line[:40]!r}")
    columns = _header_line(path, handle, 3).rstrip("\r\n").split("\t")
    # GSEA writes "NAME"; the Broad's GCT spec and GTEx write "Name": the case carries no meaning.
    if [c.strip().casefold() for c in columns[:2]] != ["name", "description"]:
        raise DataError(
            path, f"line 3: expected the column header to start with 'Name<TAB>Description', found {columns[:2]!r}"
        )
    return GctHeader(int(dims[0]), int(dims[1]), [normalize_id(name) for name in columns[2:]])


def select_columns(
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
            f"{listing(duplicate_rna)}"
        )
    if extra_rna:
        messages.append(
            f"{path}: {len(extra_rna)} RNA sample(s) map to a tissue sample already kept; kept the first RNA "
            f"sample of each tissue sample, dropped: {listing(extra_rna)}"
        )
    return np.asarray(positions, dtype=np.intp), [samples[p] for p in positions]


# ---------------------------------------------------------------- one block of lines


@dataclass(frozen=True)
class _Layout:
    path: Path
    samples: list[str]  # every sample column of the file, in order
    positions: np.ndarray  # kept columns
    kept: list[str]  # their sample IDs
    take_all: bool


def fix_values(values: np.ndarray, gene_ids: list[str], kept: list[str]) -> ValueIssues:
    """Count NaN, infinite and negative values (first of each: gene, sample) and fix them in place:
    infinite -> NaN (missing), negative -> 0 (TPM cannot be negative); NaN stays missing."""
    issues = ValueIssues()
    finite = np.isfinite(values)
    bad = {}
    if not finite.all():
        nan = np.isnan(values)
        bad["nan"] = nan
        bad["inf"] = ~finite & ~nan
    with np.errstate(invalid="ignore"):
        negative = values < 0
    if "inf" in bad:
        negative &= finite  # -inf is counted (and fixed) as infinite
    if negative.any():
        bad["negative"] = negative
    for kind, mask in bad.items():
        count = int(np.count_nonzero(mask))
        if count:
            row, column = divmod(int(np.argmax(mask)), values.shape[1])
            issues.counts[kind] = count
            issues.first[kind] = (gene_ids[row], kept[column])
    if "inf" in bad:
        values[bad["inf"]] = np.nan
    if "negative" in bad:
        values[bad["negative"]] = 0.0
    return issues


def _cell_ends(block: bytes, n_lines: int, n_fields: int) -> np.ndarray | None:
    """Positions of the tab or newline ending each cell, when every line has exactly `n_fields` cells;
    None otherwise (the slow path then says which line is wrong)."""
    text = np.frombuffer(block, dtype=np.uint8)
    ends = np.flatnonzero(text < 11)  # one compare: tab 9, newline 10 (other control bytes checked below)
    if len(ends) != n_lines * n_fields:
        return None
    delimiters = text[ends]
    if (delimiters < 9).any() or not (delimiters[n_fields - 1 :: n_fields] == 10).all():
        return None
    return ends


def _fast_block(block: bytes, n_lines: int, layout: _Layout) -> ParsedBlock | None:
    n_fields = 2 + len(layout.samples)
    ends = _cell_ends(block, n_lines, n_fields)
    if ends is None:
        return None
    # One Arrow string array over the block itself (no copy of the text): strings alternate cell,
    # delimiter, cell, ... (offsets 0, end0, end0+1, end1, ...), delimiters and Name/Description null.
    offsets = np.empty(2 * len(ends) + 1, dtype=np.int32)
    offsets[0] = 0
    offsets[1::2] = ends
    offsets[2::2] = ends + 1
    numeric = np.zeros((n_lines, n_fields, 2), dtype=bool)
    numeric[:, 2:, 0] = True
    validity = np.packbits(numeric.ravel(), bitorder="little")
    cells = pa.Array.from_buffers(
        pa.string(), len(offsets) - 1, [pa.py_buffer(validity), pa.py_buffer(offsets), pa.py_buffer(block)]
    )
    try:
        parsed = pc.cast(cells, pa.float32())
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return None  # a cell that is not a number (or not UTF-8): the slow path names it
    floats = np.frombuffer(parsed.buffers()[1], dtype=np.float32, count=len(parsed) + parsed.offset)
    grid = floats[parsed.offset :].reshape(n_lines, 2 * n_fields)[:, 4::2]
    values = np.ascontiguousarray(grid if layout.take_all else grid[:, layout.positions])
    gene_ids, symbols = [], []
    try:
        for first in range(0, n_lines * n_fields, n_fields):
            start = ends[first - 1] + 1 if first else 0
            gene_ids.append(block[start : ends[first]].decode("utf-8"))
            symbols.append(block[ends[first] + 1 : ends[first + 1]].decode("utf-8"))
    except UnicodeDecodeError:
        return None
    return ParsedBlock(gene_ids, symbols, values, ValueIssues())


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


def parse_line(path: Path, line_no: int, line: str, samples: list[str]) -> tuple[str, str, np.ndarray]:
    """One data line -> (gene id, symbol, float32 values), with an error naming what is wrong."""
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
    cells = rest.split("\t")
    try:
        values = np.array([float(cell) for cell in cells], dtype=np.float32)
    except ValueError:
        raise _bad_cell_error(path, line_no, name, cells, samples) from None
    return name, symbol, values


def _slow_block(block: bytes, first_line: int, layout: _Layout) -> ParsedBlock:
    gene_ids, symbols, rows = [], [], []
    for line_no, raw_line in enumerate(block.split(b"\n"), start=first_line):
        try:
            line = raw_line.decode("utf-8").rstrip("\r")
        except UnicodeDecodeError as exc:
            raise DataError(layout.path, f"line {line_no}: not UTF-8 text ({exc})") from exc
        if not line.strip():
            continue  # blank lines (a trailing one is common) are harmless
        name, symbol, values = parse_line(layout.path, line_no, line, layout.samples)
        gene_ids.append(name)
        symbols.append(symbol)
        rows.append(values if layout.take_all else values[layout.positions])
    values = np.stack(rows) if rows else np.zeros((0, len(layout.kept)), dtype=np.float32)
    return ParsedBlock(gene_ids, symbols, np.ascontiguousarray(values, dtype=np.float32), ValueIssues())


def parse_block(block: bytes, first_line: int, n_lines: int, layout: _Layout) -> ParsedBlock:
    """`n_lines` whole lines of text (each ending in a newline) -> their genes and float32 values, fixed
    and checked (the caller counted the lines already: each pass over the text costs)."""
    if b"\r" in block:
        block = block.replace(b"\r\n", b"\n")
    parsed = _fast_block(block, n_lines, layout) if layout.samples and n_lines else None
    if parsed is None:
        parsed = _slow_block(block, first_line, layout)
    parsed.issues = fix_values(parsed.values, parsed.gene_ids, layout.kept)
    return parsed


# ---------------------------------------------------------------- the whole file


def _blocks(handle: IO[bytes], block_bytes: int) -> Iterator[bytes]:
    """Consecutive runs of whole lines, each ending in a newline (one is added to a last line without)."""
    carry = b""
    while True:
        chunk = handle.read(block_bytes)
        if not chunk:
            if carry:
                yield carry + b"\n"
            return
        data = carry + chunk
        cut = data.rfind(b"\n") + 1
        if cut == 0:  # one line longer than a block: keep reading
            carry = data
            continue
        carry = data[cut:]
        yield data[:cut]


def default_workers() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # macOS
        return max(1, os.cpu_count() or 1)


@dataclass
class GctContents:
    gene_ids: list[str]
    symbols: list[str]
    sample_ids: list[str]
    matrix: np.ndarray | None  # None when the rows went to a sink
    messages: list[str]


def parse_gct(
    path: Path,
    keep: frozenset[str] | None,
    sink: Callable[[np.ndarray], None] | None = None,
    progress: Progress | None = None,
    workers: int | None = None,
    block_bytes: int = BLOCK_BYTES,
) -> GctContents:
    """Parse the GCT; each block's rows go to `sink` in file order, or are returned as one matrix.

    `progress(done_bytes, total_bytes, message)` is called after each block, from this thread (it may
    raise, e.g. to cancel: the pool is then shut down without finishing the queued blocks).
    """
    messages: list[str] = []
    gene_ids: list[str] = []
    symbols: list[str] = []
    kept_blocks: list[np.ndarray] = []
    issues = ValueIssues()
    total = path.stat().st_size
    workers = workers or default_workers()
    line_no = FIRST_DATA_LINE - 1

    def take(parsed: ParsedBlock) -> None:
        gene_ids.extend(parsed.gene_ids)
        symbols.extend(parsed.symbols)
        issues.add(parsed.issues)
        if sink is not None:
            sink(parsed.values)
        else:
            kept_blocks.append(parsed.values)

    try:
        handle, raw = open_gct(path)
        with raw, handle, ThreadPoolExecutor(max_workers=workers, thread_name_prefix="gct") as pool:
            header = read_header(path, handle)
            positions, sample_ids = select_columns(path, header.samples, keep, messages)
            layout = _Layout(path, header.samples, positions, sample_ids, len(positions) == len(header.samples))
            in_flight: deque[Future[ParsedBlock]] = deque()
            try:
                for block in _blocks(handle, block_bytes):
                    n_lines = block.count(b"\n")
                    in_flight.append(pool.submit(parse_block, block, line_no + 1, n_lines, layout))
                    line_no += n_lines
                    while len(in_flight) > workers or (in_flight and in_flight[0].done()):
                        take(in_flight.popleft().result())
                    if progress is not None:
                        progress(raw.tell(), total, f"{len(gene_ids):,} genes read")
                while in_flight:
                    take(in_flight.popleft().result())
            finally:
                for future in in_flight:
                    future.cancel()
    except (OSError, EOFError, zlib.error) as exc:  # truncated gzip, unreadable file
        raise DataError(path, f"cannot read the file: {exc}") from exc

    if header.genes_declared != len(gene_ids) or header.samples_declared != len(header.samples):
        messages.append(
            f"{path}: the dimensions line says {header.genes_declared} genes x {header.samples_declared} samples "
            f"but the file has {len(gene_ids)} gene rows x {len(header.samples)} sample columns; using the rows"
        )
    messages.extend(issues.messages(path))
    matrix = None
    if sink is None:
        matrix = np.concatenate(kept_blocks) if kept_blocks else np.zeros((0, len(sample_ids)), dtype=np.float32)
    return GctContents(gene_ids, symbols, sample_ids, matrix, messages)
