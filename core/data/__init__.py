"""Stage 1, data: a dataset folder -> a Cohort (samples, expression, slide paths) and the gene filter.

In: a folder with the GTEx Portal histology CSV, a GCT of expression (TPM or reads; gzip or not) and
`slides/` (SVS, or any format slideio opens). Slide `Tissue Sample ID` = the first three fields of the
RNA sample ID. Out: `Cohort` (one row per histology sample, `has_slide`, `has_expression`, donor
column), `GeneFilterParams` + the filter (expressed, variable genes with unique symbols).
Bad input raises DataError naming the file. `views` holds what the Overview reads; `jobs` spells the
`load` command (a large GCT is parsed by a worker, not the page).
"""

from core.base.lazy import lazy_exports

_EXPORTS = {
    "Cohort": "dataset",
    "GeneFilterParams": "genes",
    "expression_ready": "dataset",
    "load_cohort": "dataset",
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, globals(), _EXPORTS)
