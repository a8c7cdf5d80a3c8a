"""SlidePrediction: everything one prediction found, saved as a folder under the cache and read back."""

from __future__ import annotations

import csv
import io
import json
import math
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from core.base.fileio import temp_path_for

META_JSON = "prediction.json"  # written last: its presence marks a complete entry


@dataclass
class SlidePrediction:
    file_sha256: str
    slide_name: str
    info: dict[str, Any]
    thumbnail: np.ndarray
    thumb_scale: float
    tissue_mask: np.ndarray
    tiles: pd.DataFrame
    tile_summary: dict[str, Any]
    tissue: str
    top3: list[dict[str, Any]]
    warnings: list[str]
    genes: pd.DataFrame
    transcriptome: pd.DataFrame
    map: dict[str, Any]
    neighbours: pd.DataFrame
    seconds: dict[str, float]
    cached: bool = False
    request: dict[str, Any] = field(default_factory=dict)
    run: str = ""
    epoch: int = 0
    classes: list[str] = field(default_factory=list)
    notes: dict[str, str] = field(default_factory=dict)  # epoch choice, ranking used, QC bar
    # Whether the reference left the slide's donor out: excludes_donor (True, False, or None: no donor known),
    # subject_id, sample_id, slides_left_out, note (how the donor was found, or why nothing was left out).
    reference_donor: dict[str, Any] = field(default_factory=dict)
    # For tile gene maps: per kept tile its PCA scores; per listed gene its ridge coefficients and intercept.
    tile_scores: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))
    gene_coef: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))
    gene_mean_y: np.ndarray = field(default_factory=lambda: np.zeros(0))
    mean_z: np.ndarray = field(default_factory=lambda: np.zeros(0))
    folder: Path | None = None

    # ------------------------------------------------------------------ tile gene maps

    def _gene_column(self, gene_id: str) -> int:
        ids = self.genes["gene_id"].astype(str).tolist()
        symbols = self.genes["symbol"].astype(str).tolist()
        if gene_id in ids:
            return ids.index(gene_id)
        if gene_id in symbols:
            return symbols.index(gene_id)
        raise KeyError(f"{gene_id} is not among the predicted genes (R² under the threshold, or not ranked)")

    def tile_gene_predictions(self, gene_id: str) -> np.ndarray:
        """The gene's model applied to each kept tile (tiles[tiles.passed_qc] order); their mean is the
        slide's prediction for the gene."""
        column = self._gene_column(gene_id)
        return (self.tile_scores - self.mean_z) @ self.gene_coef[:, column] + self.gene_mean_y[column]

    def tile_gene_map(self, gene_id: str) -> np.ndarray:
        """One value per `tiles` row: the tile's prediction, NaN for tiles that failed QC (for a heatmap)."""
        out = np.full(len(self.tiles), np.nan)
        out[self.tiles["passed_qc"].to_numpy(bool)] = self.tile_gene_predictions(gene_id)
        return out

    # ------------------------------------------------------------------ reports

    def to_json(self) -> dict[str, Any]:
        """The CLI report: the issue's fields first, then where it came from."""
        return {
            "tissue": self.tissue,
            "top3": [{"tissue": t["tissue"], "probability": _num(t["probability"])} for t in self.top3],
            "tiles": {"considered": int(self.tile_summary["considered"]), "kept": int(self.tile_summary["kept"]),
                      "rejected": {k: int(v) for k, v in self.tile_summary["rejected"].items()}},
            "genes": [{"symbol": str(r.symbol), "predicted": _num(r.predicted), "r2": _num(r.r2)}
                      for r in self.genes.itertuples(index=False)],
            "neighbours": [{"sample_id": str(r.sample_id), "tissue": str(r.tissue), "distance": _num(r.distance)}
                           for r in self.neighbours.itertuples(index=False)],
            "warnings": list(self.warnings),
            "seconds": {k: round(float(v), 3) for k, v in self.seconds.items()},
            "cached": bool(self.cached),
            "slide": self.slide_name,
            "file_sha256": self.file_sha256,
            "run": self.run,
            "epoch": int(self.epoch),
            "magnification": self.info.get("magnification"),
            "magnification_assumed": bool(self.info.get("magnification_assumed")),
            "map": {"method": self.map.get("method"), "placement": self.map.get("placement", ""),
                    "point": list(self.map.get("point", ())), "note": self.map.get("note", "")},
            "notes": dict(self.notes),
            "reference_excludes_donor": self.reference_donor.get("excludes_donor"),
            "reference_donor": dict(self.reference_donor),
            "folder": str(self.folder) if self.folder else None,
        }

    def to_csv(self) -> str:
        """One table, a row per fact: section, item, value, then r2 and the reference range for genes and the
        tissue for neighbours (summary, top 3, tiles, genes, neighbours, warnings, transcriptome)."""
        out = io.StringIO()
        writer = csv.writer(out)
        writer.writerow(["section", "item", "value", "r2", "ref_low", "ref_median", "ref_high", "tissue"])

        def row(section: str, item: Any, value: Any = "", r2: Any = "", low: Any = "", median: Any = "",
                high: Any = "", tissue: Any = "") -> None:
            writer.writerow([section, item, value, r2, low, median, high, tissue])

        row("slide", self.slide_name, self.file_sha256)
        row("run", self.run, self.epoch)
        row("tissue", self.tissue, tissue=self.tissue)
        for entry in self.top3:
            row("top3", entry["tissue"], _num(entry["probability"]), tissue=entry["tissue"])
        summary = self.tile_summary
        row("tiles", "considered", summary["considered"])
        row("tiles", "kept", summary["kept"])
        for reason, count in summary["rejected"].items():
            row("tiles", f"rejected {reason}", count)
        for gene in self.genes.itertuples(index=False):
            row("gene", gene.symbol, _num(gene.predicted), _num(gene.r2), _num(gene.ref_low), _num(gene.ref_median),
                _num(gene.ref_high), gene.ref_tissue)
        for neighbour in self.neighbours.itertuples(index=False):
            row("neighbour", neighbour.sample_id, _num(neighbour.distance), tissue=neighbour.tissue)
        for note in self.warnings:
            row("warning", note)
        for gene in self.transcriptome.itertuples(index=False):
            row("transcriptome (cluster average)", gene.symbol or gene.gene_id, _num(gene.predicted))
        return out.getvalue()


def _num(value: Any) -> float | None:
    value = float(value)
    return None if not math.isfinite(value) else round(value, 4)


_FRAMES = ("tiles", "genes", "transcriptome", "neighbours")
_ARRAYS = ("thumbnail", "tissue_mask", "tile_scores", "gene_coef", "gene_mean_y", "mean_z")
_SCALARS = ("file_sha256", "slide_name", "info", "thumb_scale", "tile_summary", "tissue", "top3", "warnings",
            "seconds", "request", "run", "epoch", "classes", "notes", "reference_donor")


def save_prediction(folder: Path, prediction: SlidePrediction) -> Path:
    """Write into a temporary sibling, then rename into place (a reader never sees half an entry)."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path_for(folder)
    tmp.mkdir()
    try:
        for name in _FRAMES:
            getattr(prediction, name).to_parquet(tmp / f"{name}.parquet", index=False)
        np.savez(tmp / "arrays.npz", **{name: getattr(prediction, name) for name in _ARRAYS})
        prediction.map["reference"].to_parquet(tmp / "map.parquet", index=False)
        meta = {name: getattr(prediction, name) for name in _SCALARS}
        meta["map"] = {k: v for k, v in prediction.map.items() if k != "reference"}
        (tmp / META_JSON).write_text(json.dumps(meta, indent=1, default=_json_default))
        if folder.exists():
            shutil.rmtree(folder, ignore_errors=True)
        tmp.rename(folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    prediction.folder = folder
    return folder


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (np.ndarray, tuple)):
        return list(value)
    return str(value)


def load_prediction(folder: str | Path) -> SlidePrediction | None:
    """The prediction saved in `folder` (cached=True), or None when absent or damaged."""
    folder = Path(folder)
    try:
        meta = json.loads((folder / META_JSON).read_text())
        frames = {name: pd.read_parquet(folder / f"{name}.parquet") for name in _FRAMES}
        with np.load(folder / "arrays.npz", allow_pickle=False) as data:
            arrays = {name: data[name] for name in _ARRAYS}
        reference = pd.read_parquet(folder / "map.parquet")
    except (OSError, ValueError, KeyError):
        return None
    place = dict(meta.pop("map"))
    place["point"] = tuple(place.get("point") or (0.0, 0.0))
    place["reference"] = reference
    return SlidePrediction(**meta, **frames, **arrays, map=place, cached=True, folder=folder)
