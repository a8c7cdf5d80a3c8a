"""Stage 1, data: a dataset folder -> a Cohort (samples, expression, slide paths) and the gene filter.

In: a folder with the GTEx Portal histology CSV, a GCT of expression (TPM or reads; gzip or not) and
`slides/` (SVS, or any format slideio opens). Slide `Tissue Sample ID` = the first three fields of the
RNA sample ID. Out: `Cohort` (one row per histology sample, `has_slide`, `has_expression`, donor
column), `GeneFilterParams` + the filter (expressed, variable genes with unique symbols).
Bad input raises DataError naming the file. `views` holds what the Overview reads; `jobs` spells the
`load` command (a large GCT is parsed by a worker, not the page).

Contract:
- `load_cohort(root, ws=None, histology_csv=None, expression_gct=None, donor_column=None,
  gct_parse_limit=None, progress=None) -> Cohort`: `samples` has the histology columns in snake_case
  (`sample_id, tissue, subject_id, sex, age_bracket, hardy_scale, pathology_categories,
  pathology_notes`) plus `slide_path`, `has_slide`, `has_expression`, `joined`; `expression` is keyed by
  tissue sample ID. With `gct_parse_limit` (pages: 32 MB) a bigger GCT is only read from the cache;
  until the `load` job has parsed it, `expression_pending` is True. A folder with only slides still loads.
- GCT values: NaN kept as missing (such genes never pass the gene filter), +-inf -> NaN, negative -> 0,
  each kind a warning with its count and first gene and sample; header `Name` or `NAME`.
- Donor identity: IDs go through `ids.normalize_id` (ends stripped, inner spaces collapsed); the donor
  column is `donor_column`, else the dataset's saved setting, else `Subject ID`; a blank donor is taken
  from a GTEx sample ID, else the sample is its own donor and `Cohort.donor_note` warns loudly.
- `slides.open_slide(path)` is the one slide reader: `read_region` in level-0 coordinates (a smaller
  output is read from the nearest level at or above it and area-reduced), `read_tiles`, `thumbnail`.
  Missing magnification or MPP: 20x / 0.5 µm per px, flagged as assumed.
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
