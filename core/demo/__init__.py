"""The synthetic GTEx-like demo cohort: real-format files (Aperio SVS, Portal CSV, GCT) made offline.

`make_demo_cohort(out_dir)` writes a dataset folder laid out like a GTEx download:

- `slides/<Tissue Sample ID>.svs`: pyramidal Aperio SVS (tiled JPEG level 0, a stripped thumbnail
  second, a 4x-downsampled tiled level, then label and macro pages) that slideio's SVS driver opens;
- `GTEx_Portal_histology.csv`: the Portal's histology table, same header and quoting;
- `GTEx_demo_gene_tpm.gct.gz`: GCT 1.2 of TPM values keyed by RNA sample IDs;
- `truth.json`: what was planted: per-slide morphology factors, the genes they drive, artifacts.

Slides are painted procedurally in optical-density space (haematoxylin + eosin, Beer-Lambert), so
colours mix like real stains. Four per-slide morphology factors, uniform on [0, 1], change what is
drawn AND shift the expression of a few genes, so image-to-gene models have something real to find;
each factor has one look shared by every tissue and linear in it (tissues.common_features), so a
linear read-out of slide features can follow it across tissues. `GENERATOR_VERSION` changes whenever
the output does, so a workspace's older cohort is regenerated.
Everything derives from one seed: the same arguments give byte-identical files.

Modules: `spec` (shared constants), `canvas` + `structures` + `tissues` + `painter` (drawing a slide),
`svs` (the Aperio writer), `plan` (donors, samples, artifacts, histology CSV), `expression` (TPM and
GCT), `cohort` (the folder, the process pool, the workspace lock). This package re-exports the
public names, so `from core.demo import ...` is the one import callers need.
"""

from core.demo.cohort import demo_is_ready, ensure_demo_cohort, make_demo_cohort
from core.demo.expression import SimulatedExpression, simulate_expression
from core.demo.painter import render_slide
from core.demo.plan import plan_cohort
from core.demo.spec import (
    APP_MAG,
    ARTIFACT_KINDS,
    COMPLETE_MARKER,
    DEFAULT_DONORS,
    DEFAULT_GENES,
    DEFAULT_SLIDE_SIZE,
    EXPRESSION_GCT,
    FACTORS,
    GENERATOR_VERSION,
    HARD_PAIRS,
    HISTOLOGY_CSV,
    HISTOLOGY_HEADER,
    LOCK_NAME,
    MPP,
    RNA_ONLY_TISSUES,
    SLIDES_DIR,
    TISSUES,
    TRUTH_JSON,
)
from core.demo.svs import write_aperio_svs

__all__ = [
    "APP_MAG",
    "ARTIFACT_KINDS",
    "COMPLETE_MARKER",
    "DEFAULT_DONORS",
    "DEFAULT_GENES",
    "DEFAULT_SLIDE_SIZE",
    "EXPRESSION_GCT",
    "FACTORS",
    "GENERATOR_VERSION",
    "HARD_PAIRS",
    "HISTOLOGY_CSV",
    "HISTOLOGY_HEADER",
    "LOCK_NAME",
    "MPP",
    "RNA_ONLY_TISSUES",
    "SLIDES_DIR",
    "TISSUES",
    "TRUTH_JSON",
    "SimulatedExpression",
    "demo_is_ready",
    "ensure_demo_cohort",
    "make_demo_cohort",
    "plan_cohort",
    "render_slide",
    "simulate_expression",
    "write_aperio_svs",
]
