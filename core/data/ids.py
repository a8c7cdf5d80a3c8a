"""Sample-ID spelling shared by the histology CSV, the GCT and the slide files (one rule for all three)."""

from __future__ import annotations

import re
import warnings
from collections.abc import Iterable

from core.base.errors import DataWarning

SPACES = re.compile(r"\s+")
LISTED = 10  # IDs named in one warning before "... and N more"


def normalize_id(value: str) -> str:
    """The one spelling of an ID: ends stripped, inner runs of whitespace collapsed to one space.

    Every ID column goes through here, so "GTEX-D0 " and "GTEX-D0" are one donor, never two.
    """
    return SPACES.sub(" ", str(value)).strip()


def tissue_sample_id(rna_sample_id: str) -> str:
    """GTEX-1117F-0226-SM-5GZZ7 -> GTEX-1117F-0226 (the ID the histology table and slides use)."""
    return "-".join(rna_sample_id.split("-")[:3])


def listing(ids: list[str]) -> str:
    """The first LISTED IDs, then "... and N more"."""
    shown = ", ".join(ids[:LISTED])
    return shown + (f" ... and {len(ids) - LISTED} more" if len(ids) > LISTED else "")


def emit(messages: Iterable[str]) -> None:
    """Each message as a DataWarning (the same text is also kept on the returned object for the UI)."""
    for message in messages:
        warnings.warn(message, DataWarning, stacklevel=3)
