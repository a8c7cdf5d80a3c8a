"""core.ranking.truth on a hand-built ranking table whose answer is known (issue 19, item 7)."""

from __future__ import annotations

import json

import pandas as pd

from core.ranking.truth import truth_report


def test_recall_top_2k_and_the_noise_median_by_hand(tmp_path):
    planted = ["P1", "P2", "P3", "P4"]
    noise = ["N1", "N2", "N3"]
    (tmp_path / "truth.json").write_text(json.dumps({
        "image_genes": [{"gene_id": g} for g in planted],
        "genes": [{"gene_id": g, "kind": "noise"} for g in noise] + [{"gene_id": "T1", "kind": "tissue"}]}))
    # By R² beyond tissue: P1 0.9, N1 0.8, P2 0.7, T1 0.6, N2 0.5, P3 0.4, T2 0.3, N3 0.2 | P4 -0.1.
    # k = 4 planted, so the top 2k = 8 rows hold P1, P2, P3 (P4 ranks 9th): recall 3/4 = 0.75.
    table = pd.DataFrame({
        "gene_id": ["P1", "N1", "P2", "T1", "N2", "P3", "T2", "N3", "P4"],
        "r2_beyond_tissue": [0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2, -0.1],
        # noise R²: 0.1, -0.3, 0.05 -> median 0.05; planted R²: 0.5, 0.3, 0.2, 0.0 -> median 0.25
        "r2": [0.5, 0.1, 0.3, 0.6, -0.3, 0.2, 0.4, 0.05, 0.0],
    }).sample(frac=1.0, random_state=0)  # row order must not matter
    report = truth_report(tmp_path, table)
    assert report["planted"] == 4 and report["recall_top_2k"] == 0.75
    assert report["noise_genes"] == 3 and report["noise_median_r2"] == 0.05
    assert report["planted_median_r2"] == 0.25
    assert truth_report(tmp_path / "elsewhere", table) is None  # no truth file: no report
