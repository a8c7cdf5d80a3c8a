"""Stage 6, ranking: per-gene image -> expression regression, ranked by cross-validated R².

In: slide embeddings of a feature source and its random-weights baseline, the filtered logTPM.
Per gene, donor-grouped folds: standardise + PCA + ridge (penalty chosen inside the training fold), on
embeddings alone and with tissue; baselines on the same folds (tissue mean, k-means, random weights,
a permutation null). Out: a ranking table (R², R² beyond tissue, p-values, FDR, the recovered-gene
rule), saved per source and parameters. `jobs` spells the `rank` command; `views` and `figures` are
what the Gene rankings page reads and draws.

Contract:
- `api.rank_genes(ws, data_dir, source, params=RankParams(), ...) -> store.Ranking`: the one call the
  CLI and the page's job end in. It embeds `source` and `jobs.baseline_source(source)` (random weights of
  the same architecture and input size, seed 0; none for random or timm sources) when missing.
- `RankParams(components=40, folds=5, repeats=3, seed=0, clusters=8, criterion="loo",
  permutation_null=True)`; folds grouped by donor (`folds.donor_folds`).
- Cache: `ws.cache_dir/rankings/<ranking_key>/`, the key a content hash of the aligned inputs, the
  parameters, `RANKING_VERSION` (bump it whenever the numbers change for the same inputs) and
  CODE_VERSION. `jobs.cached_ranking_for(...)` builds the same inputs and key without computing
  (pages); `missing` says what a job would have to make first.
- `table.build_table`: one row per gene, best R² first; every p-value with n = donors; `recovered` is
  SEQUOIA's rule exactly (`table.SEQUOIA_RULE`, Williams' T2), `recovered_strict` the stricter
  two-sided Steiger rule (docs/methods.md). `truth.truth_report` reads the
  demo's truth.json, which the ranking itself never reads.
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
