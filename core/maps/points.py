"""Point sets for the maps, one per level: tiles, slides, genes (samples by expression) and unified.

A PointSet is what core.maps.reduce maps plus what the page colours and links by: a float32 matrix, one
string id per point, per-point metadata (sample, tissue, donor, sex, age, Hardy scale, ...) and a
content key for the map cache. Built from the embeddings of core.embed.compute and the cohort of
core.data.dataset; nothing here runs a model.
"""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from core.base.cache import cache_key, file_fingerprint
from core.base.config import Workspace
from core.base.errors import DataError, DataWarning
from core.data.dataset import Cohort
from core.data.genes import GeneFilterParams, filter_genes, log_tpm
from core.embed.features import FeatureSource
from core.maps.reduce import array_key, pca, seeded_subset

LEVELS = ("tiles", "slides", "genes", "unified")
# Sample metadata carried to every point (when the histology table has it).
SAMPLE_COLUMNS = ("sample_id", "tissue", "subject_id", "sex", "age_bracket", "hardy_scale")
DETAIL_COLUMNS = ("pathology_categories", "pathology_notes", "slide_path")
# Tile-index QC metrics offered as colours at the tile level.
QC_COLOUR_COLUMNS = ("tissue_fraction", "jpeg_kb", "blur", "min_piece_std", "min_channel_std")
DEFAULT_UNIFIED_COMPONENTS = 20
_ENSEMBL_VERSION = re.compile(r"\.\d+$")


@dataclass
class PointSet:
    level: str
    ids: np.ndarray  # str, unique: tile id ("sample:x:y") or sample id
    values: np.ndarray  # float32 (n, d)
    meta: pd.DataFrame  # one row per point, same order; "id" and SAMPLE_COLUMNS at least
    key: str  # content identity of `values` (the map cache's input key)
    label: str = ""
    warnings: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.ids)

    def subset(self, limit: int | None, seed: int = 0) -> PointSet:
        """A seeded random subset of `limit` points (all when None), with its own key."""
        keep = seeded_subset(len(self), limit, seed)
        if len(keep) == len(self):
            return self
        return PointSet(self.level, self.ids[keep], np.asarray(self.values[keep]),
                        self.meta.iloc[keep].reset_index(drop=True),
                        cache_key("subset", self.key, int(limit or 0), seed), self.label, list(self.warnings))


def sample_metadata(samples: pd.DataFrame) -> pd.DataFrame:
    """Per sample_id: SAMPLE_COLUMNS (missing ones blank) plus pathology notes and slide path."""
    columns = [c for c in (*SAMPLE_COLUMNS, *DETAIL_COLUMNS) if c in samples.columns]
    meta = samples[columns].drop_duplicates("sample_id").copy()
    for column in (*SAMPLE_COLUMNS, *DETAIL_COLUMNS):
        if column not in meta:
            meta[column] = ""
    meta["sample_id"] = meta["sample_id"].astype(str)
    return meta.set_index("sample_id", drop=False)


def _point_meta(ids: np.ndarray, sample_ids: np.ndarray, samples: pd.DataFrame) -> pd.DataFrame:
    known = sample_metadata(samples)
    meta = known.reindex(pd.Index(np.asarray(sample_ids, dtype=str))).reset_index(drop=True)
    meta["sample_id"] = np.asarray(sample_ids, dtype=str)
    meta.insert(0, "id", np.asarray(ids, dtype=str))
    for column in SAMPLE_COLUMNS[1:]:
        meta[column] = meta[column].fillna("").astype(str)
    return meta


def genes_level(cohort: Cohort, params: GeneFilterParams = GeneFilterParams()) -> PointSet:
    """Samples as points: filtered log2(1 + TPM) of the joined samples (slide + expression)."""
    gct = cohort.files.expression_gct
    if gct is None or cohort.expression.values.size == 0:
        raise DataError(cohort.files.root, "no expression matrix: the genes level needs a GCT file")
    joined = cohort.samples.loc[cohort.samples["joined"].astype(bool), "sample_id"].astype(str)
    columns = pd.Index(np.asarray(cohort.expression.sample_ids, dtype=str))
    keep = columns.get_indexer(joined)
    keep = np.sort(keep[keep >= 0])
    if len(keep) < 2:
        raise DataError(gct, f"only {len(keep)} sample(s) have both a slide and expression; a map needs 2")
    expression = cohort.expression
    subset = type(expression)(expression.gene_ids, expression.symbols, columns[keep].to_numpy(),
                              np.asarray(expression.values[:, keep]), list(expression.warnings))
    filtered = filter_genes(subset, params).expression
    if len(filtered.gene_ids) == 0:
        raise DataError(gct, f"no gene passes the filters (logTPM > {params.min_log_tpm}, SD > {params.min_sd})")
    ids = np.asarray(filtered.sample_ids, dtype=str)
    key = cache_key("genes-level", file_fingerprint(gct), params.min_log_tpm, params.min_sd, ids.tolist())
    level = PointSet("genes", ids, np.ascontiguousarray(filtered.values.T, dtype=np.float32),
                     _point_meta(ids, ids, cohort.samples), key,
                     f"expression: {len(filtered.gene_ids):,} filtered genes")
    level.meta.attrs["genes"] = np.asarray(filtered.symbols, dtype=str)  # for the .h5ad layer's var names
    level.meta.attrs["gene_ids"] = np.asarray(filtered.gene_ids, dtype=str)
    return level


def slides_level(embeddings: Any, samples: pd.DataFrame, label: str = "") -> PointSet:
    """Slides as points from a core.embed.compute.SlideEmbeddings (sample_ids, values, source_key, tile_counts)."""
    ids = np.asarray(embeddings.sample_ids, dtype=str)
    values = np.asarray(embeddings.values, dtype=np.float32)
    meta = _point_meta(ids, ids, samples)
    counts = getattr(embeddings, "tile_counts", None)
    if counts is not None:
        meta["tiles"] = np.asarray(counts, dtype=int)
    _fill_from_embeddings(meta, embeddings)
    return PointSet("slides", ids, values, meta, cache_key("slides-level", embeddings.source_key, array_key(values)),
                    label)


def _fill_from_embeddings(meta: pd.DataFrame, embeddings: Any) -> None:
    # Slides without a histology row still have the tissue and donor the tile index gave them.
    for column, attr in (("tissue", "tissues"), ("subject_id", "subject_ids")):
        given = getattr(embeddings, attr, None)
        if given is not None:
            blank = meta[column] == ""
            meta.loc[blank, column] = np.asarray(given, dtype=str)[blank.to_numpy()]


def tiles_level(embeddings: Any, samples: pd.DataFrame, tile_index: pd.DataFrame | None = None,
                limit: int | None = None, seed: int = 0, label: str = "") -> PointSet:
    """Tiles as points from a core.embed.compute.TileEmbeddings; QC metrics joined from `tile_index` when given.
    `limit` draws a seeded random subset (200,000 tiles map fine, but a quick look needs fewer)."""
    keep = seeded_subset(len(embeddings.tile_keys), limit, seed)
    ids = np.asarray(embeddings.tile_keys, dtype=str)[keep]
    sample_ids = np.asarray(embeddings.sample_ids, dtype=str)[keep]
    values = np.asarray(embeddings.values[keep], dtype=np.float32)
    meta = _point_meta(ids, sample_ids, samples)
    tiles = getattr(embeddings, "tiles", None)
    if tiles is not None:
        picked = tiles.iloc[keep].reset_index(drop=True)
        for column in ("x", "y"):
            meta[column] = picked[column].to_numpy()
        for column, given in (("tissue", "tissue"), ("subject_id", "subject_id")):
            blank = meta[column] == ""
            if given in picked:
                meta.loc[blank, column] = picked.loc[blank.to_numpy(), given].astype(str).to_numpy()
    if tile_index is not None and {"x", "y"} <= set(meta.columns):
        qc = [c for c in ("read_size", *QC_COLOUR_COLUMNS) if c in tile_index.columns]
        joined = meta[["sample_id", "x", "y"]].merge(
            tile_index[["sample_id", "x", "y", *qc]].drop_duplicates(["sample_id", "x", "y"]),
            on=["sample_id", "x", "y"], how="left")
        for column in qc:
            meta[column] = joined[column].to_numpy()
    source = str(getattr(embeddings, "path", "") or "")
    identity = Path(source).parent.name if source else array_key(values)
    key = cache_key("tiles-level", embeddings.source_key, identity, len(embeddings.tile_keys),
                    int(limit or 0), seed)
    return PointSet("tiles", ids, values, meta, key, label)


def _unit_block(values: np.ndarray, n_components: int) -> np.ndarray:
    """PCA scores scaled to total variance 1: a block's weight then does not depend on its dimension
    or units (1280 CNN features vs 3,000 genes in log2 TPM)."""
    scores = pca(values, n_components).components.astype(np.float64)
    total = float(scores.var(axis=0).sum())
    return scores / np.sqrt(total) if total > 0 else scores


def unified_level(slides: PointSet, genes: PointSet, weight: float = 0.5,
                  n_components: int = DEFAULT_UNIFIED_COMPONENTS) -> PointSet:
    """Samples with both an image and expression: PCA of the slide embeddings next to PCA of the
    expression, each block scaled to unit total variance, then weighted: `weight` of the total variance
    comes from the image block and 1 - weight from expression (0.5: equal say)."""
    if not 0.0 <= weight <= 1.0:
        raise DataError(None, f"unified weight must be between 0 (expression only) and 1 (image only), got {weight}")
    common = pd.Index(slides.ids).intersection(pd.Index(genes.ids), sort=False)
    if len(common) < 2:
        raise DataError(None, f"only {len(common)} sample(s) have both a slide embedding and expression")
    image_rows = pd.Index(slides.ids).get_indexer(common)
    gene_rows = pd.Index(genes.ids).get_indexer(common)
    image = _unit_block(slides.values[image_rows], n_components)
    expression = _unit_block(genes.values[gene_rows], n_components)
    values = np.hstack([np.sqrt(weight) * image, np.sqrt(1.0 - weight) * expression]).astype(np.float32)
    meta = slides.meta.iloc[image_rows].reset_index(drop=True)
    key = cache_key("unified-level", slides.key, genes.key, weight, n_components)
    label = f"unified: image weight {weight:g}, {image.shape[1]} + {expression.shape[1]} components"
    return PointSet("unified", common.to_numpy(dtype=str), values, meta, key, label)


def split_by_sample(run_dir: str | Path, samples: pd.DataFrame) -> pd.Series:
    """train / validation / test per sample_id, from the run's saved split (runs.run_split: split.csv, one
    row per sample). A sample the table lacks gets its donor's side, so slides added to the cohort after the
    run are coloured by donor; DataError naming the file when the run saved no split."""
    from core.train import runs

    split = runs.run_split(run_dir)
    by_sample = split.drop_duplicates("sample_id").set_index("sample_id")["split"].astype(str)
    known = split[split["subject_id"].astype(str) != ""]
    by_donor = known.drop_duplicates("subject_id").set_index("subject_id")["split"].astype(str)
    table = samples.drop_duplicates("sample_id").set_index("sample_id")["subject_id"].astype(str)
    from_donor = table.map(by_donor).dropna()
    return by_sample.combine_first(from_donor)


def add_split(points: PointSet, run_dir: str | Path | None, samples: pd.DataFrame) -> PointSet:
    """Sets meta["split"] (train / validation / test, or "" for a sample outside the run)."""
    if run_dir is None:
        return points
    try:
        split = split_by_sample(run_dir, samples)
    except DataError as exc:  # a run without a saved split: the map still draws, without split colours
        warnings.warn(f"{exc}; no train / validation / test colouring", DataWarning, stacklevel=2)
        return points
    points.meta["split"] = points.meta["sample_id"].map(split).fillna("").astype(str).to_numpy()
    return points


def find_gene(cohort: Cohort, query: str) -> int:
    """Row of a gene in cohort.expression by symbol (any case) or Ensembl ID (with or without version)."""
    wanted = query.strip()
    if not wanted:
        raise DataError(None, "type a gene symbol or an Ensembl ID")
    symbols = pd.Series(np.asarray(cohort.expression.symbols, dtype=str))
    hits = np.flatnonzero(symbols.str.upper() == wanted.upper())
    if len(hits) == 0:
        bare = pd.Series(np.asarray(cohort.expression.gene_ids, dtype=str)).str.replace(_ENSEMBL_VERSION, "",
                                                                                     regex=True)
        hits = np.flatnonzero(bare.str.upper() == _ENSEMBL_VERSION.sub("", wanted).upper())
    if len(hits) == 0:
        raise DataError(cohort.files.expression_gct, f"no gene {wanted!r} (by symbol or Ensembl ID)")
    return int(hits[0])


def gene_expression(cohort: Cohort, query: str) -> tuple[str, pd.Series]:
    """(label "SYMBOL (ENSG...)", log2(1 + TPM) per sample_id) of one gene, for colouring points."""
    row = find_gene(cohort, query)
    expression = cohort.expression
    values = log_tpm(np.asarray(expression.values[row], dtype=np.float32))
    label = f"{expression.symbols[row]} ({expression.gene_ids[row]})"
    return label, pd.Series(values, index=np.asarray(expression.sample_ids, dtype=str), name=label)


def sample_top_genes(cohort: Cohort, sample_id: str, n: int = 10) -> pd.DataFrame:
    """The sample's n most expressed genes: symbol, gene_id, log2(1 + TPM)."""
    columns = pd.Index(np.asarray(cohort.expression.sample_ids, dtype=str))
    col = columns.get_indexer([sample_id])[0]
    if col < 0:
        return pd.DataFrame(columns=["symbol", "gene_id", "log2(1+TPM)"])
    values = log_tpm(np.asarray(cohort.expression.values[:, col], dtype=np.float32))
    order = np.argsort(values)[::-1][:n]
    return pd.DataFrame({"symbol": np.asarray(cohort.expression.symbols)[order],
                         "gene_id": np.asarray(cohort.expression.gene_ids)[order],
                         "log2(1+TPM)": np.round(values[order], 2)})


def slide_pca_points(ws: Workspace, data_dir: str | Path, cohort: Cohort, source: FeatureSource) -> pd.DataFrame | None:
    """One row per slide of `source`'s cached slide embeddings: id, sample_id, tissue and the first two principal
    components (x, y): the Gene rankings page's quick slide map. None before the embeddings are cached, or for
    fewer than 3 slides. Never embeds."""
    from core.embed import compute as embed

    slides = embed.cached_slide_embeddings(ws, data_dir, source)
    if slides is None or len(slides.sample_ids) < 3:
        return None
    scores = pca(np.asarray(slides.values, dtype=np.float32), 2).components
    tissue = cohort.samples.set_index("sample_id")["tissue"]
    ids = pd.Series(np.asarray(slides.sample_ids, dtype=str))
    return pd.DataFrame({"id": ids, "sample_id": ids, "tissue": ids.map(tissue).fillna("").astype(str),
                         "x": scores[:, 0], "y": scores[:, 1] if scores.shape[1] > 1 else 0.0})
