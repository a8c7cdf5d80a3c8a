"""HistoGene Explorer's core library: plain Python, no Streamlit. One package per stage, in data-flow order:

    demo     a synthetic GTEx-like cohort in the real formats (SVS, Portal CSV, GCT), with its planted truth
    data     a dataset folder -> Cohort (samples, expression, slide paths); the gene filter
    tiles    slides -> a quality-checked, balanced tile index; the training tile pack
    train    the tissue classifier on donor-split tiles; runs on disk; the epoch selected on validation
    embed    feature sources -> tile and slide embeddings; tissue separation on held-out donors
    maps     PCA / UMAP / t-SNE point sets of tiles, slides, genes and the unified view; exports
    ranking  per-gene cross-validated R² from slide embeddings, with baselines and significance rules
    predict  one slide end to end
    tour     every stage on the demo cohort as one background job

Under them: base (workspace, cache, errors, file writes, types, plot style) and jobs (one worker per
workspace, job state on disk). cli has one module per command of `python -m core`. Each stage's contract
is its package docstring. This module imports nothing.
"""

__version__ = "0.1.0"
