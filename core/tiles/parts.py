"""Per-slide tiling results ("parts"), cached on disk so a cohort index grows slide by slide.

A part holds one slide's plan (its candidate cells in seeded order) and the QC of the first
`considered` of them, as columnar arrays (a few dozen bytes per cell, not a dict per tile). It is
keyed by the slide's content fingerprint, the parameters that change pixels or decisions, and the
code version; never by sample ID, subject or tissue name, which are joined when the cohort index
is assembled. So editing a Subject ID re-tiles nothing, adding a slide tiles that slide, and a
part saved after each batch lets a cancelled or crashed run resume where it stopped.

A slide that cannot be read (DataError, about the file) is cached as an error part; anything else
(memory, a killed worker, the disk) is never cached and is retried on the next run.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from core.base.cache import cache_key, file_fingerprint
from core.base.fileio import atomic_path
from core.tiles.plan import PLAN_COLUMNS, SlidePlan
from core.tiles.qc import METRIC_COLUMNS

PART_VERSION = 1  # bump when the layout or the tiling logic changes what a part holds
QC_COLUMNS = (*METRIC_COLUMNS, "reason")
# Parameters that only steer how many tiles are taken or which are chosen: a part serves every value.
_SAMPLING_PARAMS = ("tiles_per_slide", "tissue_target", "all_tiles", "jpeg_kb", "jpeg_kb_default")


@dataclass
class TilePart:
    plan: SlidePlan | None  # None for an error part
    qc: dict[str, np.ndarray] = field(default_factory=dict)  # QC_COLUMNS, the first `considered` cells
    error: str | None = None  # the DataError about the file, for an error part

    @property
    def considered(self) -> int:
        return int(self.qc["reason"].size) if self.qc else 0

    @property
    def candidates(self) -> int:
        return len(self.plan) if self.plan is not None else 0

    @property
    def exhausted(self) -> bool:
        return self.considered >= self.candidates

    @property
    def passed(self) -> np.ndarray:
        return self.qc["reason"] == "" if self.qc else np.zeros(0, bool)

    def extend(self, qc: dict[str, np.ndarray]) -> None:
        """Append the QC of the next cells in plan order."""
        if not self.qc:
            self.qc = {name: np.asarray(qc[name]) for name in QC_COLUMNS}
        else:
            self.qc = {name: np.concatenate([self.qc[name], np.asarray(qc[name])]) for name in QC_COLUMNS}


def empty_qc(n: int = 0) -> dict[str, np.ndarray]:
    """QC arrays for n cells (float32 metrics, reason as a short unicode array)."""
    return {**{name: np.zeros(n, np.float32) for name in METRIC_COLUMNS}, "reason": np.full(n, "", "<U16")}


def part_key(path: str, params: Any, tissue: str) -> str | None:
    """Cache key of a slide's part, or None when the file cannot be fingerprinted (then never cached).

    The tissue enters only through its JPEG-size bar, the one QC decision that depends on it.
    """
    try:
        fingerprint = file_fingerprint(path)
    except (OSError, TypeError):
        return None
    relevant = {name: value for name, value in asdict(params).items() if name not in _SAMPLING_PARAMS}
    return cache_key("tile_part", PART_VERSION, fingerprint, relevant, round(params.jpeg_kb_for(tissue), 6))


def part_path(parts_dir: Path, key: str) -> Path:
    return parts_dir / f"{key.split(':', 1)[1]}.npz"


def save_part(parts_dir: Path, key: str, part: TilePart) -> None:
    """Write a part atomically (a reader sees the old or the new one, never half)."""
    parts_dir.mkdir(parents=True, exist_ok=True)
    arrays: dict[str, np.ndarray] = {}
    meta: dict[str, Any] = {"error": part.error}
    if part.plan is not None:
        meta["facts"] = part.plan.facts
        arrays |= {f"plan_{name}": values for name, values in part.plan.arrays().items()}
        qc = part.qc or empty_qc()
        arrays |= {f"qc_{name}": qc[name] for name in QC_COLUMNS}
    arrays["meta"] = np.array(json.dumps(meta, default=str))
    with atomic_path(part_path(parts_dir, key)) as tmp, open(tmp, "wb") as handle:
        np.savez(handle, **arrays)


def load_part(parts_dir: Path, key: str) -> TilePart | None:
    """The saved part, or None when missing or damaged (a damaged part is re-tiled, never fatal)."""
    path = part_path(parts_dir, key)
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as data:
            meta = json.loads(str(data["meta"]))
            if meta.get("error"):
                return TilePart(plan=None, error=str(meta["error"]))
            plan = SlidePlan(**{name: data[f"plan_{name}"] for name in PLAN_COLUMNS}, facts=meta.get("facts") or {})
            qc = {name: data[f"qc_{name}"] for name in QC_COLUMNS}
    except Exception:
        return None
    return TilePart(plan=plan, qc=qc if qc["reason"].size else {})
