"""GTEx dataset folder: histology CSV + GCT expression + slide files, joined into a Cohort.

The GCT reader streams line by line (the GTEx v8 TPM file is ~2.6 GB of text) and stores the
parsed float32 matrix once under `cache_dir` as a raw memory-mappable file, so reloads are instant.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import json
import logging
import os
import re
import shutil
import warnings
from collections import OrderedDict
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import IO

import numpy as np
import pandas as pd

from core.cache import cache_key, file_fingerprint
from core.config import Workspace
from core.errors import DataError, DataWarning
from core.fileio import temp_path_for
from core.settings import load_dataset_settings

log = logging.getLogger(__name__)

HISTOLOGY_COLUMNS: dict[str, str] = {
    "Tissue Sample ID": "sample_id",
    "Tissue": "tissue",
    "Subject ID": "subject_id",
    "Sex": "sex",
    "Age Bracket": "age_bracket",
    "Hardy Scale": "hardy_scale",
    "Pathology Categories": "pathology_categories",
    "Pathology Notes": "pathology_notes",
}
# Without these a CSV cannot be joined; the others are filled with "" (Subject ID from the sample ID).
REQUIRED_HISTOLOGY_COLUMNS: tuple[str, ...] = ("Tissue Sample ID", "Tissue")

# Longest first so "x.ome.tiff" loses ".ome.tiff", not just ".tiff".
SLIDE_EXTENSIONS: tuple[str, ...] = (
    ".ome.tiff",
    ".ome.tif",
    ".svs",
    ".ndpi",
    ".scn",
    ".czi",
    ".tiff",
    ".tif",
    ".jpeg",
    ".png",
    ".jpg",
)
UNKNOWN_TISSUE = "Unknown"
SAMPLE_COLUMNS: tuple[str, ...] = (
    *HISTOLOGY_COLUMNS.values(),
    "slide_path",
    "has_slide",
    "has_expression",
    "joined",
    "has_histology",
)

_GTEX_ID = re.compile(r"^GTEX-[A-Z0-9]+-[A-Z0-9]+", re.IGNORECASE)
_SPACES = re.compile(r"\s+")
DEFAULT_DONOR_COLUMN = "Subject ID"
_LISTED = 10  # IDs named in one warning before "... and N more"
_ROWS_PER_WRITE = 256
_CACHE_FORMAT = 1


# ---------------------------------------------------------------- small helpers


def _emit(messages: Iterable[str]) -> None:
    for message in messages:
        warnings.warn(message, DataWarning, stacklevel=3)


def _listing(ids: list[str]) -> str:
    shown = ", ".join(ids[:_LISTED])
    return shown + (f" ... and {len(ids) - _LISTED} more" if len(ids) > _LISTED else "")


def tissue_sample_id(rna_sample_id: str) -> str:
    """GTEX-1117F-0226-SM-5GZZ7 -> GTEX-1117F-0226 (the ID the histology table and slides use)."""
    return "-".join(rna_sample_id.split("-")[:3])


def subject_from_sample_id(sample_id: str) -> str:
    """GTEX-1117F-0226 -> GTEX-1117F; a non-GTEx ID is its own subject."""
    return "-".join(sample_id.split("-")[:2]) if _GTEX_ID.match(sample_id) else sample_id


def is_gtex_sample_id(sample_id: str) -> bool:
    """True when the donor can be read from the ID (GTEX-XXXX-YYYY...)."""
    return bool(_GTEX_ID.match(sample_id))


def normalize_id(value: str) -> str:
    """The one spelling of an ID: ends stripped, inner runs of whitespace collapsed to one space.

    Every ID column goes through here, so "GTEX-D0 " and "GTEX-D0" are one donor, never two.
    """
    return _SPACES.sub(" ", str(value)).strip()


def _normalize_ids(values: pd.Series) -> pd.Series:
    return values.astype(str).map(normalize_id)


def near_duplicate_ids(ids: Iterable[str]) -> list[list[str]]:
    """Groups of distinct IDs that differ only by letter case or spaces (likely one ID typed twice)."""
    groups: dict[str, set[str]] = {}
    for value in ids:
        if value:
            groups.setdefault(_SPACES.sub("", value).casefold(), set()).add(value)
    return [sorted(group) for group in groups.values() if len(group) > 1]


def _near_duplicate_messages(where: str, column: str, ids: Iterable[str]) -> list[str]:
    groups = near_duplicate_ids(ids)
    if not groups:
        return []
    shown = _listing([" / ".join(repr(v) for v in group) for group in groups])
    return [f"{where}: {len(groups)} {column} value(s) differ only by letter case or spaces and are kept as "
            f"different IDs; check they are not one ID spelled twice: {shown}"]


# ---------------------------------------------------------------- histology CSV


def _read_histology(path: Path, messages: list[str], donor_column: str | None = None) -> pd.DataFrame:
    """The CSV as snake_case columns; `donor_column` (a header of the CSV) fills subject_id.

    `attrs["columns"]` lists the CSV's headers, `attrs["own_donor"]` the samples that could not be
    given a donor (no donor value, not a GTEx ID) and so count as their own donor.
    """
    try:
        # utf-8-sig: Excel re-saves add a BOM that would hide the first column name.
        raw = pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8-sig")
    except FileNotFoundError as exc:
        raise DataError(path, "histology CSV not found") from exc
    except pd.errors.EmptyDataError as exc:
        raise DataError(path, "histology CSV is empty (expected a header line with the GTEx columns)") from exc
    except pd.errors.ParserError as exc:
        raise DataError(path, f"not a valid CSV: {exc}") from exc
    except UnicodeDecodeError as exc:
        raise DataError(path, f"not UTF-8 text: {exc}") from exc
    raw.columns = [str(name).strip() for name in raw.columns]
    missing = [name for name in REQUIRED_HISTOLOGY_COLUMNS if name not in raw.columns]
    if missing:
        raise DataError(
            path,
            f"missing required column(s) {', '.join(repr(m) for m in missing)}; "
            f"found {', '.join(repr(c) for c in raw.columns)}",
        )
    donor_column = DEFAULT_DONOR_COLUMN if donor_column is None else donor_column  # "": no column, IDs only
    if donor_column and donor_column not in raw.columns and donor_column != DEFAULT_DONOR_COLUMN:
        raise DataError(path, f"donor column {donor_column!r} not found; the columns are "
                              f"{', '.join(repr(c) for c in raw.columns)}")
    table = pd.DataFrame({snake: raw[name] if name in raw.columns else "" for name, snake in HISTOLOGY_COLUMNS.items()})
    table = table.fillna("").astype(str)
    if donor_column in raw.columns:
        table["subject_id"] = raw[donor_column].fillna("").astype(str)
    for column in ("sample_id", "subject_id", "tissue"):
        table[column] = _normalize_ids(table[column])

    blank = table["sample_id"] == ""
    if blank.any():
        lines = [str(i + 2) for i in np.flatnonzero(blank)]  # +2: header is line 1
        messages.append(f"{path}: skipped {len(lines)} row(s) with no Tissue Sample ID (line {_listing(lines)})")
        table = table[~blank]
    no_subject = table["subject_id"] == ""
    table.loc[no_subject, "subject_id"] = table.loc[no_subject, "sample_id"].map(subject_from_sample_id)
    table.loc[table["tissue"] == "", "tissue"] = UNKNOWN_TISSUE

    duplicated = table["sample_id"].duplicated(keep="first")
    if duplicated.any():
        ids = list(dict.fromkeys(table.loc[duplicated, "sample_id"]))
        messages.append(
            f"{path}: {len(ids)} duplicate Tissue Sample ID(s), kept the first row of each: {_listing(ids)}"
        )
        table = table[~duplicated]
        no_subject = no_subject[~duplicated]
    messages.extend(_near_duplicate_messages(str(path), "Tissue Sample ID", table["sample_id"].unique()))
    messages.extend(_near_duplicate_messages(str(path), "donor", table["subject_id"].unique()))
    own = no_subject & ~table["sample_id"].map(is_gtex_sample_id)
    table = table.reset_index(drop=True)
    table.attrs["columns"] = list(raw.columns)
    table.attrs["donor_column"] = donor_column if donor_column in raw.columns else ""
    table.attrs["own_donor"] = table.loc[own.to_numpy(), "sample_id"].tolist()
    return table


def read_histology_csv(path: str | Path, donor_column: str | None = None) -> pd.DataFrame:
    """The GTEx Portal histology table with snake_case columns, one row per sample_id.

    ID columns are normalized (`normalize_id`); `donor_column` names the CSV column that identifies the
    donor (default "Subject ID"; a blank donor is read from a GTEx sample ID). Odd rows (duplicate or
    blank IDs) are dropped with a DataWarning; the messages are also in `df.attrs["warnings"]`.
    """
    messages: list[str] = []
    table = _read_histology(Path(path), messages, donor_column)
    table.attrs["warnings"] = messages
    _emit(messages)
    return table


def _empty_histology() -> pd.DataFrame:
    return pd.DataFrame({snake: pd.Series(dtype=str) for snake in HISTOLOGY_COLUMNS.values()})


def _csv_header(path: Path) -> list[str]:
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:
            return [name.strip() for name in next(csv.reader(handle), [])]
    except (OSError, UnicodeDecodeError, csv.Error):
        return []


def _is_histology_csv(path: Path) -> bool:
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:
            header = next(csv.reader(handle), [])
    except (OSError, UnicodeDecodeError, csv.Error):
        return False
    names = {name.strip() for name in header}
    return all(name in names for name in REQUIRED_HISTOLOGY_COLUMNS)


# ---------------------------------------------------------------- GCT expression


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


def _rekey_to_tissue_samples(expression: Expression, messages: list[str]) -> Expression:
    """Columns named by tissue sample ID, keeping the first RNA sample of each."""
    tissue_ids = [tissue_sample_id(rna) for rna in expression.sample_ids]
    first = dict.fromkeys(tissue_ids)
    if len(first) == len(tissue_ids):
        return replace(expression, sample_ids=np.array(tissue_ids, dtype=str), warnings=list(expression.warnings))
    positions, seen, dropped = [], set(), []
    for position, (tissue, rna) in enumerate(zip(tissue_ids, expression.sample_ids, strict=True)):
        if tissue in seen:
            dropped.append(str(rna))
        else:
            seen.add(tissue)
            positions.append(position)
    message = (
        f"{len(dropped)} RNA sample(s) map to a tissue sample already kept; kept the first RNA sample of "
        f"each tissue sample, dropped: {_listing(dropped)}"
    )
    messages.append(message)
    return Expression(
        expression.gene_ids,
        expression.symbols,
        np.array([tissue_ids[p] for p in positions], dtype=str),
        np.asarray(expression.values)[:, positions],
        [*expression.warnings, message],
    )


# ---------------------------------------------------------------- dataset folder and slides


@dataclass
class DatasetFiles:
    root: Path
    slides_dir: Path | None
    histology_csv: Path | None
    expression_gct: Path | None
    warnings: list[str] = field(default_factory=list)


def _explicit_file(root: Path, given: str | Path, what: str) -> Path:
    path = Path(given).expanduser()
    if not path.is_absolute() and not path.exists() and (root / path).exists():
        path = root / path  # names relative to the dataset folder are fine too
    if not path.is_file():
        raise DataError(path, f"{what} not found")
    return path.absolute()


def _pick(candidates: list[Path], prefer: str, what: str, root: Path, messages: list[str]) -> Path | None:
    if not candidates:
        return None
    preferred = [c for c in candidates if prefer in c.name.lower()] or candidates
    chosen = preferred[0]
    if len(candidates) > 1:
        others = ", ".join(c.name for c in candidates if c != chosen)
        messages.append(f"{root}: several {what} files; using {chosen.name} (not {others})")
    return chosen


def find_dataset(
    root: str | Path, histology_csv: str | Path | None = None, expression_gct: str | Path | None = None
) -> DatasetFiles:
    """Locate slides/, the histology CSV (a *.csv with the GTEx columns) and the GCT in `root`.

    Files not given are found by pattern; a missing CSV or GCT is a warning, not an error.
    """
    root = Path(root).expanduser().resolve()
    if not root.is_dir():
        raise DataError(root, "dataset folder not found")
    messages: list[str] = []
    files = sorted(p for p in root.iterdir() if p.is_file() and not p.name.startswith("."))

    if histology_csv is not None:
        csv_path: Path | None = _explicit_file(root, histology_csv, "histology CSV")
    else:
        tables = [p for p in files if p.suffix.lower() == ".csv" and _is_histology_csv(p)]
        csv_path = _pick(tables, "histology", "histology CSV", root, messages)
        if csv_path is None:
            messages.append(
                f"{root}: no histology CSV (a *.csv with columns {', '.join(REQUIRED_HISTOLOGY_COLUMNS)}); "
                "samples come from slide file names only"
            )

    if expression_gct is not None:
        gct_path: Path | None = _explicit_file(root, expression_gct, "expression GCT")
    else:
        gcts = [p for p in files if p.name.lower().endswith((".gct", ".gct.gz"))]
        gct_path = _pick(gcts, "tpm", "GCT", root, messages)
        if gct_path is None:
            messages.append(f"{root}: no expression file (*.gct or *.gct.gz); samples have no expression")

    slides_dir: Path | None = root / "slides"
    if not slides_dir.is_dir():
        messages.append(f"{root}: no slides/ folder; no sample has a slide")
        slides_dir = None
    return DatasetFiles(root, slides_dir, csv_path, gct_path, messages)


def slide_sample_id(filename: str) -> str | None:
    """`GTEX-1117F-0226.SVS` -> `GTEX-1117F-0226`; None when the extension is not a slide format."""
    lower = filename.lower()
    for extension in SLIDE_EXTENSIONS:
        if lower.endswith(extension) and len(filename) > len(extension):
            return filename[: -len(extension)]
    return None


def _list_slides(slides_dir: Path | None, messages: list[str]) -> dict[str, Path]:
    if slides_dir is None or not slides_dir.is_dir():
        return {}
    slides: dict[str, Path] = {}
    duplicates: list[str] = []
    for path in sorted(slides_dir.iterdir()):
        if path.name.startswith(".") or not path.is_file():
            continue
        sample_id = slide_sample_id(path.name)
        if sample_id is None:
            continue  # notes, checksums and the like sit beside slides
        sample_id = normalize_id(sample_id)
        if sample_id in slides:
            duplicates.append(path.name)
            continue
        slides[sample_id] = path.absolute()  # not resolve(): a symlinked slide keeps its sample name
    if duplicates:
        messages.append(
            f"{slides_dir}: {len(duplicates)} more slide file(s) for a sample that already has one, "
            f"ignored: {_listing(duplicates)}"
        )
    return slides


def list_slides(slides_dir: str | Path) -> dict[str, Path]:
    """Slide files by sample ID (file stem without the slide extension), first file per sample."""
    messages: list[str] = []
    slides = _list_slides(Path(slides_dir), messages)
    _emit(messages)
    return slides


# ---------------------------------------------------------------- cohort


@dataclass
class Cohort:
    """`donor_column`: the CSV column subject_id came from ("" when none); `donor_note`: a loud message
    (also in `warnings`) when some samples have no donor and count as their own, else ""."""

    files: DatasetFiles
    samples: pd.DataFrame
    expression: Expression
    warnings: list[str] = field(default_factory=list)
    donor_column: str = ""
    donor_note: str = ""
    histology_columns: list[str] = field(default_factory=list)


def _donor_note(own_donor: list[str], total: int, donor_column: str) -> str:
    if not own_donor:
        return ""
    source = f"no {donor_column!r} value" if donor_column else "no donor column in the histology CSV"
    return (f"{len(own_donor)} of {total} sample(s) have no donor ID ({source}, and the sample ID is not a GTEx "
            f"ID to read it from), so each counts as its own donor: one patient's slides can then sit on both "
            f"sides of the train/test split. Name the column that identifies the donor (Overview page, or "
            f"--donor-column). Samples: {_listing(own_donor)}")


def _join_samples(
    histology: pd.DataFrame, slides: dict[str, Path], expressed: set[str], messages: list[str]
) -> pd.DataFrame:
    known = set(histology["sample_id"])
    slide_only = [sample_id for sample_id in slides if sample_id not in known]
    if slide_only:
        messages.append(
            f"{len(slide_only)} slide(s) have no histology row (tissue set to '{UNKNOWN_TISSUE}'): "
            f"{_listing(slide_only)}"
        )
    extra = pd.DataFrame({snake: [""] * len(slide_only) for snake in HISTOLOGY_COLUMNS.values()})
    extra["sample_id"] = slide_only
    extra["tissue"] = UNKNOWN_TISSUE
    extra["subject_id"] = [subject_from_sample_id(s) for s in slide_only]
    samples = pd.concat([histology.assign(has_histology=True), extra.assign(has_histology=False)], ignore_index=True)
    for snake in HISTOLOGY_COLUMNS.values():
        samples[snake] = samples[snake].astype(str)
    samples["has_histology"] = samples["has_histology"].astype(bool)
    samples["slide_path"] = pd.Series(
        [str(slides[s]) if s in slides else None for s in samples["sample_id"]], dtype=object
    )
    samples["has_slide"] = samples["slide_path"].notna()
    samples["has_expression"] = samples["sample_id"].isin(expressed)
    samples["joined"] = samples["has_histology"] & samples["has_slide"] & samples["has_expression"]
    return samples[list(SAMPLE_COLUMNS)]


def _stat_signature(path: Path | None) -> tuple | None:
    if path is None:
        return None
    stat = path.stat()
    return (str(path), stat.st_size, stat.st_mtime_ns)


# Parsed cohorts by file signature: UI reruns and repeated CLI calls in one process skip the joins.
_COHORTS: OrderedDict[tuple, Cohort] = OrderedDict()
_COHORTS_KEPT = 8


def load_cohort(
    root: str | Path,
    ws: Workspace | None = None,
    histology_csv: str | Path | None = None,
    expression_gct: str | Path | None = None,
    donor_column: str | None = None,
) -> Cohort:
    """Join the histology CSV, the GCT (re-keyed to tissue sample IDs) and the slide files in `root`.

    `samples` has one row per histology sample plus one per slide without a histology row
    (`has_histology` False, tissue "Unknown"). With `ws`, the parsed GCT is cached under `ws.cache_dir`.
    `donor_column` (a CSV header) names the donor ("" for none: donors come from GTEx sample IDs); when
    None, the dataset's saved `donor_column` setting (core.settings) if `ws` is given, else "Subject ID".
    A saved column the CSV no longer has is ignored with a warning; a given one is a DataError.
    """
    files = find_dataset(root, histology_csv, expression_gct)
    messages = list(files.warnings)
    if donor_column is None and ws is not None:
        donor_column = load_dataset_settings(ws, files.root).get("donor_column")
        if donor_column and files.histology_csv is not None and donor_column not in _csv_header(files.histology_csv):
            messages.append(f"{files.histology_csv}: the saved donor column {donor_column!r} is not in the CSV; "
                            f"using {DEFAULT_DONOR_COLUMN!r}")
            donor_column = None
    slides = _list_slides(files.slides_dir, messages)
    cache_dir = ws.cache_dir / "gct" if ws is not None else None
    signature = (
        _stat_signature(files.histology_csv),
        _stat_signature(files.expression_gct),
        tuple((s, str(p)) for s, p in slides.items()),
        str(cache_dir),
        donor_column,
        tuple(messages),  # files' warnings and a dropped saved donor column: a memo hit repeats them
    )
    if signature in _COHORTS:
        _COHORTS.move_to_end(signature)
        memo = _COHORTS[signature]
        _emit(memo.warnings)
        return replace(memo, samples=memo.samples.copy(), warnings=list(memo.warnings))

    if files.histology_csv is not None:
        histology = _read_histology(files.histology_csv, messages, donor_column)
        keep: frozenset[str] | None = frozenset(histology["sample_id"])
    else:
        histology, keep = _empty_histology(), None
    own_donor = list(histology.attrs.get("own_donor", []))
    if files.expression_gct is not None:
        raw = _read_gct(files.expression_gct, keep, cache_dir)
        messages.extend(raw.warnings)
        expression = _rekey_to_tissue_samples(raw, messages)
    else:
        expression = Expression.empty()
    samples = _join_samples(histology, slides, set(expression.sample_ids), messages)
    if files.histology_csv is not None and files.expression_gct is not None and len(histology):
        if not samples.loc[samples["has_histology"], "has_expression"].any():
            messages.append(
                f"{files.expression_gct}: no expression sample matches any histology sample in "
                f"{files.histology_csv.name} (RNA IDs such as GTEX-XXXX-YYYY-SM-ZZZZZ must start with a "
                "Tissue Sample ID); expression is empty"
            )

    slide_only = samples.loc[~samples["has_histology"], "sample_id"]
    own_donor += [s for s in slide_only if not is_gtex_sample_id(s)]
    used_column = str(histology.attrs.get("donor_column", ""))
    donor_note = _donor_note(own_donor, len(samples), used_column)
    if donor_note:
        messages.append(donor_note)
    cohort = Cohort(files, samples, expression, messages, used_column, donor_note,
                    list(histology.attrs.get("columns", [])))
    _COHORTS[signature] = cohort
    while len(_COHORTS) > _COHORTS_KEPT:
        _COHORTS.popitem(last=False)
    _emit(messages)
    return replace(cohort, samples=samples.copy(), warnings=list(messages))


def _counts(rows: pd.DataFrame) -> dict[str, int]:
    histology = rows[rows["has_histology"]]
    return {
        "samples": len(histology),
        "slides": int(rows["has_slide"].sum()),
        "samples_with_expression": int(histology["has_expression"].sum()),
        "joined": int(rows["joined"].sum()),
    }


def cohort_info(cohort: Cohort) -> dict:
    """JSON-able counts: whole cohort and per tissue (`samples` counts histology rows only)."""
    samples = cohort.samples
    overall = _counts(samples)
    return {
        "samples": overall["samples"],
        "slides": overall["slides"],
        "donors": int(samples["subject_id"].nunique()),
        "tissues": int(samples["tissue"].nunique()),
        "samples_with_expression": overall["samples_with_expression"],
        "joined": overall["joined"],
        "genes": len(cohort.expression.gene_ids),
        "per_tissue": {str(tissue): _counts(rows) for tissue, rows in samples.groupby("tissue", sort=True)},
    }
