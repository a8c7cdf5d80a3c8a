"""GTEx dataset folder: histology CSV + GCT expression + slide files, joined into a Cohort.

The GCT reader lives in core/data/expression.py (re-exported here: `Expression`, `read_gct`).
"""

from __future__ import annotations

import csv
import logging
import re
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd

from core.base.config import Workspace
from core.base.errors import DataError
from core.base.settings import load_dataset_settings
from core.base.types import Progress
from core.data.expression import (  # noqa: F401  (read_gct: re-exported, the contract)
    Expression,
    _read_gct,
    cached_gct,
    gct_cache_ready,
    read_gct,
)
from core.data.ids import SPACES, normalize_id, tissue_sample_id
from core.data.ids import emit as _emit
from core.data.ids import listing as _listing
from core.data.slides import SLIDE_EXTENSIONS

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
DEFAULT_DONOR_COLUMN = "Subject ID"


# ---------------------------------------------------------------- small helpers


def subject_from_sample_id(sample_id: str) -> str:
    """GTEX-1117F-0226 -> GTEX-1117F; a non-GTEx ID is its own subject."""
    return "-".join(sample_id.split("-")[:2]) if _GTEX_ID.match(sample_id) else sample_id


def is_gtex_sample_id(sample_id: str) -> bool:
    """True when the donor can be read from the ID (GTEX-XXXX-YYYY...)."""
    return bool(_GTEX_ID.match(sample_id))


def _normalize_ids(values: pd.Series) -> pd.Series:
    return values.astype(str).map(normalize_id)


def near_duplicate_ids(ids: Iterable[str]) -> list[list[str]]:
    """Groups of distinct IDs that differ only by letter case or spaces (likely one ID typed twice)."""
    groups: dict[str, set[str]] = {}
    for value in ids:
        if value:
            groups.setdefault(SPACES.sub("", value).casefold(), set()).add(value)
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
    (also in `warnings`) when some samples have no donor and count as their own, else "";
    `expression_pending`: the GCT was too big to parse here and is not cached yet (expression empty
    meanwhile; `python -m core load` fills the cache, see `expression_ready`)."""

    files: DatasetFiles
    samples: pd.DataFrame
    expression: Expression
    warnings: list[str] = field(default_factory=list)
    donor_column: str = ""
    donor_note: str = ""
    histology_columns: list[str] = field(default_factory=list)
    expression_pending: bool = False


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


def _expression_or_none(
    path: Path, keep: frozenset[str] | None, cache_dir: Path | None, parse_limit: int | None,
    progress: Progress | None,
) -> Expression | None:
    """The GCT's matrix; None when it is over `parse_limit` bytes and not cached (never parsed here)."""
    if parse_limit is not None and cache_dir is not None and path.is_file() and path.stat().st_size > parse_limit:
        return cached_gct(path, keep, cache_dir)
    return _read_gct(path, keep, cache_dir, progress)


def _kept_samples(cohort: Cohort) -> frozenset[str] | None:
    """The tissue sample IDs load_cohort keeps from the GCT (the histology rows), None without a CSV."""
    if cohort.files.histology_csv is None:
        return None
    return frozenset(cohort.samples.loc[cohort.samples["has_histology"], "sample_id"])


def expression_ready(cohort: Cohort, ws: Workspace) -> bool:
    """True when the cohort's GCT is parsed and cached in `ws` (cheap: stats, no read of the GCT)."""
    gct = cohort.files.expression_gct
    return gct is None or gct_cache_ready(gct, _kept_samples(cohort), ws.cache_dir / "gct")


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
    gct_parse_limit: int | None = None,
    progress: Progress | None = None,
) -> Cohort:
    """Join the histology CSV, the GCT (re-keyed to tissue sample IDs) and the slide files in `root`.

    `samples` has one row per histology sample plus one per slide without a histology row
    (`has_histology` False, tissue "Unknown"). With `ws`, the parsed GCT is cached under `ws.cache_dir`.
    `donor_column` (a CSV header) names the donor ("" for none: donors come from GTEx sample IDs); when
    None, the dataset's saved `donor_column` setting (core.base.settings) if `ws` is given, else "Subject ID".
    A saved column the CSV no longer has is ignored with a warning; a given one is a DataError.
    `gct_parse_limit` (bytes; None: no limit): a bigger GCT is only taken from the cache (needs `ws`);
    when it is not cached yet the cohort comes back with `expression_pending` True and no expression,
    so a page never spends minutes parsing. `progress(done_bytes, total_bytes, message)` follows a parse.
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
    pending = False
    if files.expression_gct is not None:
        raw = _expression_or_none(files.expression_gct, keep, cache_dir, gct_parse_limit, progress)
        pending = raw is None
        if raw is None:
            expression = Expression.empty()
        else:
            messages.extend(raw.warnings)
            expression = _rekey_to_tissue_samples(raw, messages)
    else:
        expression = Expression.empty()
    samples = _join_samples(histology, slides, set(expression.sample_ids), messages)
    if files.histology_csv is not None and files.expression_gct is not None and len(histology) and not pending:
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
                    list(histology.attrs.get("columns", [])), pending)
    if pending:  # not memoized: the next call looks for the cache again
        _emit(messages)
        return cohort
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
