"""Donor split: train / validation / test, so no donor has samples on two sides.

Test donors are held out for the final report only; validation donors (drawn from the donors left for
training) are what model selection looks at. A run saves its split as split.csv
(sample_id, subject_id, split), one row per sample.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from core.base.errors import DataError

SPLITS = ("train", "validation", "test")
SPLIT_COLUMNS = ("sample_id", "subject_id", "split")
SPLIT_NAME = "split.csv"
# Validation draws from its own stream, so adding it left the test donors of a seed unchanged.
_VALIDATION_STREAM = 1


def _draw(
    tissues_of: dict[str, set[str]], pool: set[str], target: int, cap: int, order: list[str]
) -> set[str]:
    """Donors taken out of `pool`: first one per tissue (rarest first, up to `cap`), then up to `target`;
    never a tissue's last donor left in the pool."""
    donors_of: dict[str, set[str]] = {}
    for donor in pool:
        for tissue in tissues_of[donor]:
            donors_of.setdefault(tissue, set()).add(donor)
    taken: set[str] = set()

    def keeps_coverage(donor: str) -> bool:
        return all(donors_of[t] - taken - {donor} for t in tissues_of[donor])

    for tissue in sorted(donors_of, key=lambda t: (len(donors_of[t]), t)):
        if len(taken) >= cap or donors_of[tissue] & taken:
            continue
        for donor in order:
            if donor in pool and donor not in taken and tissue in tissues_of[donor] and keeps_coverage(donor):
                taken.add(donor)
                break
    for donor in order:
        if len(taken) >= target:
            break
        if donor in pool and donor not in taken and keeps_coverage(donor):
            taken.add(donor)
    return taken


def donor_split(
    samples: pd.DataFrame, test_fraction: float = 0.3, val_fraction: float = 0.1, seed: int = 0
) -> pd.DataFrame:
    """One row per sample: sample_id, subject_id, tissue, split ("train", "validation" or "test").

    `samples` needs sample_id, subject_id and tissue (tiles work too: one row is kept per sample).
    Test donors: round(test_fraction * donors), first covering each tissue (rarest first) without taking
    a tissue's last training donor, in a seeded order. Validation donors: round(val_fraction * donors),
    at least one when asked for and possible, drawn the same way from the remaining donors, never
    leaving a tissue without a training donor. Same input and seed, same split.
    """
    missing = {"sample_id", "subject_id", "tissue"} - set(samples.columns)
    if missing:
        raise DataError(None, f"cannot split: the samples lack column(s) {sorted(missing)}")
    if not (0.0 <= test_fraction < 1.0 and 0.0 <= val_fraction < 1.0 and test_fraction + val_fraction < 1.0):
        raise ValueError("test_fraction and val_fraction must be in [0, 1) and sum to less than 1")
    table = samples[["sample_id", "subject_id", "tissue"]].astype(str).drop_duplicates("sample_id")
    tissues_of: dict[str, set[str]] = {}
    for donor, tissue in zip(table["subject_id"], table["tissue"], strict=True):
        tissues_of.setdefault(donor, set()).add(tissue)
    donors = sorted(tissues_of)
    n = len(donors)
    test: set[str] = set()
    validation: set[str] = set()
    if n >= 2 and test_fraction > 0:
        order = [str(d) for d in np.random.default_rng(seed).permutation(donors)]
        target = min(n - 1, max(1, round(test_fraction * n)))
        test = _draw(tissues_of, set(donors), target, max(target, n // 2), order)
    rest = set(donors) - test
    if len(rest) >= 2 and val_fraction > 0:
        order = [str(d) for d in np.random.default_rng([seed, _VALIDATION_STREAM]).permutation(sorted(rest))]
        target = min(len(rest) - 1, max(1, round(val_fraction * n)))
        validation = _draw(tissues_of, rest, target, target, order)
    split = np.where(table["subject_id"].isin(test), "test",
                     np.where(table["subject_id"].isin(validation), "validation", "train"))
    return table.assign(split=split).reset_index(drop=True)


def donors_by_split(split: pd.DataFrame) -> dict[str, list[str]]:
    """{"train": [...], "validation": [...], "test": [...]} sorted donor IDs."""
    return {name: sorted(set(split.loc[split["split"] == name, "subject_id"])) for name in SPLITS}


def save_split(run_dir: str | Path, split: pd.DataFrame) -> Path:
    """split.csv in the run folder (sample_id, subject_id, split), written atomically."""
    from core.base.fileio import atomic_write_bytes

    path = Path(run_dir) / SPLIT_NAME
    atomic_write_bytes(path, split[list(SPLIT_COLUMNS)].to_csv(index=False).encode())
    return path


def read_split(path: str | Path) -> pd.DataFrame:
    """A saved split.csv; DataError naming the file when it is missing or malformed."""
    path = Path(path)
    try:
        table = pd.read_csv(path, dtype=str, keep_default_na=False)
    except FileNotFoundError:
        raise DataError(path, "no saved split") from None
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise DataError(path, f"unreadable split ({exc})") from None
    if list(table.columns[:3]) != list(SPLIT_COLUMNS) or not table["split"].isin(SPLITS).all():
        raise DataError(path, f"not a split: expected columns {', '.join(SPLIT_COLUMNS)} with split in {SPLITS}")
    return table
