"""core.ranking.views: per-tissue R² against scikit-learn, each gene's top tissue, search and the tissue filter."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.metrics import r2_score

from core.ranking import views as rank_views
from core.ranking.store import Ranking


def _ranking() -> Ranking:
    rng = np.random.default_rng(0)
    tissues = np.array(["Lung"] * 6 + ["Liver"] * 5 + ["Skin"] * 2)  # Skin: too few samples to score
    n, genes = len(tissues), 4
    observed = rng.normal(size=(n, genes)).astype(np.float32)
    observed[tissues == "Liver", 1] += 5  # gene 1 is most expressed in Liver, the others vary
    predicted = (observed + rng.normal(scale=0.5, size=(n, genes))).astype(np.float32)
    samples = pd.DataFrame({"sample_id": [f"S{i}" for i in range(n)], "subject_id": [f"D{i // 2}" for i in range(n)],
                            "tissue": tissues})
    gene_ids = np.array(["ENSG01.1", "ENSG02.3", "ENSG03.1", "ENSG04.2"])
    table = pd.DataFrame({"rank": [1, 2, 3, 4], "gene_id": gene_ids, "symbol": ["ALPHA", "BETA", "GAMMA", "ALPHA2"],
                          "r2": [0.5, 0.4, 0.3, 0.2], "recovered": [True, False, True, False]})
    arrays = {"observed": observed, "predicted": predicted, "predicted_tissue": predicted}
    return Ranking(Path("."), table, {}, samples, gene_ids, arrays)


def test_tissue_r2_matches_scikit_learn_within_each_tissue():
    ranking = _ranking()
    per_tissue = rank_views.tissue_r2(ranking)
    assert list(per_tissue.columns) == ["Liver", "Lung", "Skin"]
    tissues = ranking.samples["tissue"].to_numpy()
    for tissue in ("Liver", "Lung"):
        rows = tissues == tissue
        for g, gene in enumerate(ranking.gene_ids):
            expected = r2_score(ranking.arrays["observed"][rows, g], ranking.arrays["predicted"][rows, g])
            assert abs(per_tissue.at[gene, tissue] - expected) < 1e-5
    assert per_tissue["Skin"].isna().all()


def test_gene_tissue_table_agrees_with_the_all_gene_scores():
    ranking = _ranking()
    per_tissue = rank_views.tissue_r2(ranking)
    detail = rank_views.gene_tissue_table(ranking, "ENSG03.1").set_index("tissue")
    assert detail.loc["Lung", "samples"] == 6 and np.isnan(detail.loc["Skin", "r2"])
    assert abs(detail.loc["Lung", "r2"] - per_tissue.at["ENSG03.1", "Lung"]) < 1e-5


def test_top_tissue_search_and_filters():
    ranking = _ranking()
    tops = rank_views.top_tissue(ranking)
    assert tops["ENSG02.3"] == "Liver"
    table = ranking.table
    assert list(rank_views.search(table, "alpha")["symbol"]) == ["ALPHA", "ALPHA2"]
    assert list(rank_views.search(table, "ensg02")["symbol"]) == ["BETA"]
    assert len(rank_views.search(table, "  ")) == 4
    per_tissue = rank_views.tissue_r2(ranking)
    view = rank_views.view_table(table, tissue="Liver", per_tissue=per_tissue, tops=tops, only_top_tissue=True)
    assert list(view["gene_id"]) == ["ENSG02.3"] and "r2_in_Liver" in view
    view = rank_views.view_table(table, tissue="Lung", per_tissue=per_tissue, tops=tops)
    assert view["r2_in_Lung"].is_monotonic_decreasing  # sorted by the tissue's R²
    assert list(rank_views.view_table(table, recovered_only=True)["symbol"]) == ["ALPHA", "GAMMA"]
    shown = rank_views.display_frame(view)
    assert {"Symbol", "Ensembl ID", "R²", "R² in Lung", "Recovered"} <= set(shown.columns)
