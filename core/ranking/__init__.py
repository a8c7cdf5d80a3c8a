"""Stage 6, ranking: per-gene image -> expression regression, ranked by cross-validated R².

In: slide embeddings of a feature source and its random-weights baseline, the filtered logTPM.
Per gene, donor-grouped folds: standardise + PCA + ridge (penalty chosen inside the training fold), on
embeddings alone and with tissue; baselines on the same folds (tissue mean, k-means, random weights,
a permutation null). Out: a ranking table (R², R² beyond tissue, p-values, FDR, the recovered-gene
rule), saved per source and parameters. `jobs` spells the `rank` command; `views` and `figures` are
what the Gene rankings page reads and draws.
"""

from core.base.lazy import lazy_exports

_EXPORTS = {
    "RankParams": "cv",
    "Ranking": "store",
    "SUMMARY_JSON": "store",
    "compare_sources": "table",
    "load_nonlinear": "nonlinear",
    "load_ranking": "store",
    "nonlinear_path": "nonlinear",
    "nonlinear_summary": "nonlinear",
    "saved_ranking_params": "saved",
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, globals(), _EXPORTS)
