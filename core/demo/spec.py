"""What every part of the demo generator agrees on: tissues, factors, artifact kinds, file names, sizes."""

from __future__ import annotations

GENERATOR_VERSION = "3"

TISSUES = (
    "Adipose - Subcutaneous",
    "Breast - Mammary Tissue",
    "Esophagus - Mucosa",
    "Esophagus - Gastroesophageal Junction",
    "Skin - Sun Exposed (Lower leg)",
    "Skin - Not Sun Exposed (Suprapubic)",
    "Lung",
    "Liver",
    "Muscle - Skeletal",
    "Thyroid",
)
# Pairs the GTEx image study found hardest to tell apart; here they share most of their drawing.
HARD_PAIRS = (
    ("Adipose - Subcutaneous", "Breast - Mammary Tissue"),
    ("Esophagus - Mucosa", "Esophagus - Gastroesophageal Junction"),
    ("Skin - Sun Exposed (Lower leg)", "Skin - Not Sun Exposed (Suprapubic)"),
)
FACTORS = ("nuclear_density", "adipocyte_fraction", "immune_infiltrate", "fibrosis")
ARTIFACT_KINDS = ("pen", "blur", "dust", "fold")
# RNA from these tissues has no slide, as GTEx whole blood has no histology.
RNA_ONLY_TISSUES = ("Whole Blood",)

HISTOLOGY_HEADER = (
    "Tissue Sample ID",
    "Tissue",
    "Subject ID",
    "Sex",
    "Age Bracket",
    "Hardy Scale",
    "Pathology Categories",
    "Pathology Notes",
)
HISTOLOGY_CSV = "GTEx_Portal_histology.csv"
EXPRESSION_GCT = "GTEx_demo_gene_tpm.gct.gz"
TRUTH_JSON = "truth.json"
SLIDES_DIR = "slides"
# Written last: its presence means the folder is complete.
COMPLETE_MARKER = ".demo_complete.json"
LOCK_NAME = "demo.lock"

MPP = 0.5  # level-0 microns per pixel ("20x")
APP_MAG = 20
# 20 donors on slides of 3072 x 2048 (a 6 x 4 grid of 448 px tiles): about as many pixels (and so tiles to
# train on, and generation time) as v2's 13 donors on 3584 x 2560, with 1.5x the samples to rank genes by.
DEFAULT_SLIDE_SIZE = (3072, 2048)  # level-0 width, height
DEFAULT_DONORS = 20
DEFAULT_GENES = 3000

