"""Issue 19 item 2: which genes' R² beyond tissue is significant, against embeddings moved between donors
within each tissue (a null that keeps tissue identity and donor blocks, and breaks only the image signal)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from core.ranking.cv import RankParams, beyond_tissue_p, cross_validate, within_tissue_permutations
from core.ranking.table import build_table, summarize


def test_permutations_keep_tissue_and_move_whole_donor_blocks():
    # donor d1 has two Lung slides; the rest one slide per tissue
    donors = np.array(["d1", "d1", "d2", "d3", "d1", "d2", "d3", "d4"])
    tissues = np.array(["Lung", "Lung", "Lung", "Lung", "Liver", "Liver", "Liver", "Liver"])
    orders = within_tissue_permutations(donors, tissues, 20, seed=3)
    assert len(orders) == 20 and any((o != np.arange(8)).any() for o in orders)
    for order in orders:
        assert sorted(order) == list(range(8))
        assert (tissues[order] == tissues).all()  # tissue never moves
        assert list(order[:2]) == [0, 1]  # d1's two Lung slides: the only block of two, it stays whole
        for rows in ([2, 3], [4, 5, 6, 7]):  # single-slide blocks of a tissue are exchanged among themselves
            assert set(order[rows]) == set(rows)


def test_pooled_permutation_p_by_hand():
    null = np.array([[0.0, 0.1], [0.2, -0.1]])  # four pooled null values: -0.1, 0.0, 0.1, 0.2
    p = beyond_tissue_p(np.array([0.15, 0.3, -0.5, np.nan]), null)
    # 0.15: one null value >= it -> (1 + 1) / (1 + 4); 0.3: none -> 1/5; -0.5: all four -> 5/5
    np.testing.assert_allclose(p[:3], [2 / 5, 1 / 5, 1.0])
    assert np.isnan(p[3])


def _cohort(seed: int = 0):
    """30 donors x 3 tissues; gene 0 follows an image feature beyond tissue, genes 1-2 are tissue-only,
    genes 3-42 are noise. The embedding carries tissue and the gene-0 feature."""
    rng = np.random.default_rng(seed)
    donors = np.repeat([f"d{i}" for i in range(30)], 3)
    tissues = np.tile(["A", "B", "C"], 30)
    tissue_code = pd.factorize(tissues)[0]
    signal = rng.normal(size=len(donors))
    x = np.column_stack([np.eye(3)[tissue_code] * 3, signal, rng.normal(size=(len(donors), 12))]).astype(np.float32)
    y = np.column_stack([
        2 * signal + tissue_code + rng.normal(0, 0.3, len(donors)),
        tissue_code * 2.0 + rng.normal(0, 0.3, len(donors)),
        (tissue_code == 1) * 3.0 + rng.normal(0, 0.3, len(donors)),
        rng.normal(size=(len(donors), 40)),
    ]).astype(np.float32)
    return x, y, donors, tissues


def test_only_the_gene_the_image_explains_beyond_tissue_is_significant():
    x, y, donors, tissues = _cohort()
    params = RankParams(components=8, folds=5, repeats=1, clusters=3)
    cv = cross_validate(x, y, donors, tissues, params, workers=1)
    genes = np.array([f"G{i}" for i in range(y.shape[1])])
    table = build_table(cv, y, genes, genes, donors).set_index("gene_id")
    assert table.loc["G0", "significant_beyond_tissue"]
    assert not table.drop(index="G0")["significant_beyond_tissue"].any()
    assert summarize(table.reset_index())["recovered_beyond_tissue"] == 1


def test_without_the_nulls_the_count_is_absent_not_zero():
    x, y, donors, tissues = _cohort(1)
    params = RankParams(components=8, folds=5, repeats=1, clusters=3, permutation_null=False)
    cv = cross_validate(x, y, donors, tissues, params, workers=1)
    assert "p_beyond_tissue" not in cv.stats
    genes = np.array([f"G{i}" for i in range(y.shape[1])])
    table = build_table(cv, y, genes, genes, donors)
    assert "recovered_beyond_tissue" not in summarize(table)


def test_the_truth_report_counts_planted_and_noise_genes_among_the_significant(tmp_path):
    import json

    from core.ranking.truth import truth_report

    (tmp_path / "truth.json").write_text(json.dumps({
        "image_genes": [{"gene_id": "P1"}, {"gene_id": "P2"}],
        "genes": [{"gene_id": "N1", "kind": "noise"}, {"gene_id": "N2", "kind": "noise"}]}))
    table = pd.DataFrame({"gene_id": ["P1", "P2", "N1", "N2"], "r2": [0.3, 0.2, 0.0, 0.1],
                          "r2_beyond_tissue": [0.2, 0.1, 0.0, 0.05],
                          "significant_beyond_tissue": [True, False, False, True]})
    report = truth_report(tmp_path, table)
    assert report["beyond_tissue_planted"] == 1 and report["beyond_tissue_noise"] == 1
    assert "beyond_tissue_planted" not in truth_report(tmp_path, table.drop(columns="significant_beyond_tissue"))
