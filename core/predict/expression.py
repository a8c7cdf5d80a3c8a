"""Steps 6-7: predicted expression of the recoverable genes, the coarser whole-transcriptome estimate, and
per-tile gene predictions.

The final model of each gene is the ranking's own pipeline refitted on ALL reference slides: standardize +
PCA(k) (core.ranking.fold_pca.fit_reducer), then ridge with each gene's penalty chosen by exact leave-one-out
(core.ranking.ridge.fit_ridge_cv), the same components, seed and criterion the ranking cross-validated. A
gene's cross-validated R² from the ranking is its reliability; only genes at or above the threshold are
predicted. The whole-transcriptome estimate is the ranking's cluster baseline refitted the same way: k-means
on the reference slides' PCA scores, the slide gets its nearest cluster's mean logTPM (coarser: one of k
profiles).

Every step from a tile embedding to a gene's prediction is affine (centre, scale, project, ridge), and a
slide's embedding is the mean of its tiles', so the model applied to each tile gives tile predictions whose
mean is the slide's prediction.
"""

from __future__ import annotations

import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from core.base.cache import cache_key
from core.base.config import Workspace
from core.base.fileio import atomic_path
from core.ranking.fold_pca import Reducer, fit_reducer
from core.ranking.params import RankParams
from core.ranking.ridge import fit_ridge_cv
from core.ranking.store import Ranking
from core.ranking.threads import one_thread

MODELS_VERSION = 1
REFERENCE_QUANTILES = (0.05, 0.5, 0.95)


@dataclass
class GeneModels:
    """Final per-gene models on all reference slides (genes in the ranking's gene_ids order)."""

    reducer: Reducer
    coef: np.ndarray  # (k, G) float64
    mean_z: np.ndarray  # (k,)
    mean_y: np.ndarray  # (G,)
    centers: np.ndarray  # (clusters, k) k-means centres in PCA space
    cluster_means: np.ndarray  # (clusters, G) float32 mean logTPM per cluster
    gene_ids: np.ndarray

    def scores(self, values: np.ndarray) -> np.ndarray:
        """PCA scores (n, k) of embeddings (float64)."""
        return self.reducer.transform(np.atleast_2d(values))

    def predict_scores(self, z: np.ndarray, columns: np.ndarray) -> np.ndarray:
        """(n, len(columns)) predictions from PCA scores."""
        return (np.atleast_2d(z) - self.mean_z) @ self.coef[:, columns] + self.mean_y[columns]


def _aligned_x(sample_ids: np.ndarray, values: np.ndarray, ids: list[str]) -> np.ndarray:
    """The reference embeddings of `ids`, in that order."""
    position = {s: i for i, s in enumerate(sample_ids.tolist())}
    missing = [s for s in ids if s not in position]
    if missing:
        raise ValueError(f"{len(missing)} ranked samples lack a reference embedding (e.g. {missing[0]})")
    return np.asarray(values, np.float32)[[position[s] for s in ids]]


def fit_gene_models(x: np.ndarray, y: np.ndarray, params: RankParams, gene_ids: np.ndarray) -> GeneModels:
    """The ranking's pipeline fitted on every reference slide (see the module docstring)."""
    from sklearn.cluster import KMeans

    from core.ranking.baselines import group_mean_predict

    reducer = fit_reducer(x, params.components, seed=params.seed)
    z = reducer.transform(x)
    y = np.asarray(y, np.float32)
    fit = fit_ridge_cv(z, y, criterion=params.criterion)
    k = int(max(1, min(params.clusters, len(z))))
    with warnings.catch_warnings(), one_thread():
        warnings.simplefilter("ignore")  # fewer distinct points than clusters: sklearn warns, result is fine
        kmeans = KMeans(n_clusters=k, n_init=4, random_state=params.seed).fit(z)
    labels = np.arange(k)
    cluster_means = group_mean_predict(y, kmeans.labels_, labels)  # an empty cluster gets the overall mean
    return GeneModels(reducer, fit.coef, fit.mean_z[0], fit.mean_y[0], kmeans.cluster_centers_, cluster_means,
                      np.asarray(gene_ids).astype(str))


def _models_path(ws: Workspace, ranking: Ranking, params: RankParams, excluded: tuple[str, ...]) -> Path:
    key = cache_key("predict-models", MODELS_VERSION, ranking.path.name, asdict(params),
                    *([sorted(excluded)] if excluded else [])).split(":", 1)[1]
    return ws.cache_dir / "predictions" / "models" / f"{key}.npz"


def gene_models(ws: Workspace, ranking: Ranking, params: RankParams, sample_ids: np.ndarray,
                values: np.ndarray, excluded: tuple[str, ...] = ()) -> GeneModels:
    """The final models for a ranking, fitted once and kept under the cache (keyed by the ranking's folder,
    which is itself a content key of its inputs, and the samples left out). `excluded`: ranked samples the
    fit leaves out (the predicted slide's donor's: its own expression must not predict it)."""
    excluded = tuple(sorted(set(excluded)))
    path = _models_path(ws, ranking, params, excluded)
    if path.is_file():
        try:
            with np.load(path, allow_pickle=False) as data:
                return GeneModels(Reducer(data["mean"], data["scale"], data["components"]), data["coef"],
                                  data["mean_z"], data["mean_y"], data["centers"], data["cluster_means"],
                                  data["gene_ids"].astype(str))
        except Exception:  # a damaged entry is refitted, never fatal
            pass
    ids = ranking.samples["sample_id"].astype(str).tolist()
    keep = ~np.isin(ids, excluded)
    x = _aligned_x(np.asarray(sample_ids).astype(str), values, [s for s, k in zip(ids, keep, strict=True) if k])
    models = fit_gene_models(x, np.asarray(ranking.arrays["observed"])[keep], params, ranking.gene_ids)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp, open(tmp, "wb") as out:
        np.savez(out, mean=models.reducer.mean, scale=models.reducer.scale, components=models.reducer.components,
                 coef=models.coef, mean_z=models.mean_z, mean_y=models.mean_y, centers=models.centers,
                 cluster_means=models.cluster_means, gene_ids=models.gene_ids)
    return models


@dataclass
class ExpressionResult:
    genes: pd.DataFrame  # gene_id, symbol, predicted, r2, ref_tissue, ref_low, ref_median, ref_high
    transcriptome: pd.DataFrame  # gene_id, symbol, predicted
    tile_scores: np.ndarray  # (kept tiles, k) PCA scores of each tile
    gene_coef: np.ndarray  # (k, genes) ridge coefficients of the genes listed
    gene_mean_y: np.ndarray  # (genes,)
    mean_z: np.ndarray  # (k,)
    cluster: int


def predict_expression(models: GeneModels, ranking: Ranking, tile_values: np.ndarray, tissue: str,
                       threshold: float, excluded: tuple[str, ...] = ()) -> ExpressionResult:
    """Genes with cross-validated R² >= threshold: prediction, R², the predicted tissue's reference range
    (without the `excluded` samples, as the models)."""
    table = ranking.table
    chosen = table[table["r2"].astype(float) >= threshold]
    column = {g: i for i, g in enumerate(models.gene_ids.tolist())}
    columns = np.array([column[g] for g in chosen["gene_id"].astype(str)], dtype=np.int64)
    tile_scores = models.scores(tile_values)
    slide_scores = models.scores(np.asarray(tile_values, np.float64).mean(axis=0, keepdims=True))
    predicted = models.predict_scores(slide_scores, columns)[0]
    in_tissue = ((ranking.samples["tissue"].astype(str) == tissue).to_numpy()
                 & ~ranking.samples["sample_id"].astype(str).isin(excluded).to_numpy())
    observed = np.asarray(ranking.arrays["observed"])
    if in_tissue.any() and len(columns):
        low, median, high = np.quantile(observed[in_tissue][:, columns].astype(np.float64), REFERENCE_QUANTILES, axis=0)
        ref_tissue = tissue
    else:
        low = median = high = np.full(len(columns), np.nan)
        ref_tissue = ""
    genes = pd.DataFrame({
        "gene_id": chosen["gene_id"].astype(str).to_numpy(), "symbol": chosen["symbol"].astype(str).to_numpy(),
        "predicted": predicted, "r2": chosen["r2"].astype(float).to_numpy(), "ref_tissue": ref_tissue,
        "ref_low": low, "ref_median": median, "ref_high": high,
    })
    distances = np.linalg.norm(models.centers - slide_scores, axis=1)
    cluster = int(np.argmin(distances))
    symbols = dict(zip(table["gene_id"].astype(str), table["symbol"].astype(str), strict=False))
    transcriptome = pd.DataFrame({
        "gene_id": models.gene_ids, "symbol": [symbols.get(g, "") for g in models.gene_ids],
        "predicted": models.cluster_means[cluster].astype(np.float64),
    })
    return ExpressionResult(genes, transcriptome, tile_scores, models.coef[:, columns], models.mean_y[columns],
                            models.mean_z, cluster)
