"""core.ranking math on plain arrays: folds, ridge, leakage, metrics, baselines, null, recovered rule."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats
from sklearn.linear_model import RidgeCV

from core.ranking import cv as cv_module
from core.ranking.baselines import group_mean_predict, kmeans_predict
from core.ranking.cv import RankParams, cross_validate
from core.ranking.fold_pca import fit_reducer
from core.ranking.folds import donor_folds
from core.ranking.metrics import (
    bh_fdr,
    pearson_columns,
    pearson_p,
    spearman_columns,
    steiger_test,
)
from core.ranking.ridge import fit_ridge_cv
from core.ranking.table import build_table, compare_sources, summarize


def _cohort(seed: int = 0, donors: int = 12, tissues: int = 5, dim: int = 60, genes: int = 80):
    """Donor x tissue samples; a hidden factor drives genes 0-9 and shows in the embedding; genes
    10-19 are tissue-specific only; the rest are noise."""
    rng = np.random.default_rng(seed)
    donor = np.repeat(np.arange(donors), tissues)
    tissue = np.tile(np.arange(tissues), donors)
    n = len(donor)
    factor = rng.standard_normal(n)
    onehot = np.eye(tissues)[tissue]
    x = rng.standard_normal((n, dim)) + np.outer(factor, rng.standard_normal(dim))
    x += onehot @ rng.normal(0, 2, (tissues, dim))
    y = rng.standard_normal((n, genes))
    y[:, :10] += 2.0 * factor[:, None]
    y[:, 10:20] += onehot @ rng.normal(0, 3, (tissues, 10))
    return x, y, np.array([f"D{d}" for d in donor]), np.array([f"T{t}" for t in tissue])


def test_folds_never_put_a_donor_on_both_sides():
    subjects = np.array([f"D{i % 7}" for i in range(50)])
    folds = donor_folds(subjects, n_folds=5, repeats=3, seed=1)
    assert len(folds) == 15
    for fold in folds:
        assert not set(subjects[fold.train]) & set(subjects[fold.test])
    for repeat in range(3):
        tested = np.concatenate([f.test for f in folds if f.repeat == repeat])
        assert sorted(tested) == list(range(50))  # every sample tested exactly once per repeat
    first = [tuple(f.test) for f in folds if f.repeat == 0]
    second = [tuple(f.test) for f in folds if f.repeat == 1]
    assert set(first) != set(second)  # repeats reshuffle donors


def test_folds_refuse_fewer_donors_than_folds():
    with pytest.raises(ValueError, match="donors"):
        donor_folds(np.array(["a", "b", "a"]), n_folds=3)


@pytest.mark.parametrize("with_groups", [False, True])
def test_closed_form_ridge_equals_sklearn_and_brute_force(with_groups):
    rng = np.random.default_rng(3)
    n, k, genes = 90, 12, 40
    z = rng.standard_normal((n, k)) * np.linspace(3, 0.2, k)
    y = z @ rng.standard_normal((k, genes)) * rng.uniform(0, 1, genes) + rng.standard_normal((n, genes)) * 2
    z_test = rng.standard_normal((15, k))
    if not with_groups:
        fit = fit_ridge_cv(z, y)
        ref = RidgeCV(alphas=fit.alphas, alpha_per_target=True).fit(z, y)
        np.testing.assert_allclose(fit.alpha, ref.alpha_)
        np.testing.assert_allclose(fit.predict(z_test), ref.predict(z_test), atol=1e-9)
        return
    groups = rng.integers(0, 3, n)
    fit = fit_ridge_cv(z, y, groups=groups)
    onehot = np.eye(3)[groups]
    design = np.hstack([z, onehot])
    for gene in (0, 7):  # explicit leave-one-out refits with unpenalized group intercepts
        losses = []
        for alpha in fit.alphas:
            penalty = np.diag([alpha] * k + [0.0] * 3)
            errors = []
            for i in range(n):
                keep = np.arange(n) != i
                beta = np.linalg.solve(design[keep].T @ design[keep] + penalty, design[keep].T @ y[keep, gene])
                errors.append(y[i, gene] - design[i] @ beta)
            losses.append(np.mean(np.square(errors)))
        assert fit.alpha[gene] == fit.alphas[int(np.argmin(losses))]
        alpha = fit.alpha[gene]
        beta = np.linalg.solve(design.T @ design + np.diag([alpha] * k + [0.0] * 3), design.T @ y[:, gene])
        np.testing.assert_allclose(fit.predict(z[:5], groups[:5])[:, gene], design[:5] @ beta, atol=1e-8)


@pytest.mark.parametrize("with_groups", [False, True])
def test_low_rank_loo_term_is_exact_through_its_bound(monkeypatch, with_groups):
    """The cross term through a rank-q basis of the LOO weights picks the same penalties as the full term
    for any q: genes the truncation bound cannot settle are recomputed (q = 1 forces many of them)."""
    from core.ranking import ridge as ridge_module

    x, y, _, tissues = _cohort(seed=6, genes=120)
    z = fit_reducer(x, 15).transform(x)
    groups = tissues if with_groups else None
    monkeypatch.setattr(ridge_module, "_EPS_RANK", 13)
    full = fit_ridge_cv(z, y, groups=groups)
    for rank in (1, 2, 6):
        monkeypatch.setattr(ridge_module, "_EPS_RANK", rank)
        np.testing.assert_array_equal(fit_ridge_cv(z, y, groups=groups).alpha, full.alpha)


def test_gcv_criterion_picks_penalties_close_to_loo():
    x, y, _, _ = _cohort()
    loo = fit_ridge_cv(x[:, :10], y, criterion="loo")
    gcv = fit_ridge_cv(x[:, :10], y, criterion="gcv")
    assert np.mean(np.abs(np.log10(loo.alpha) - np.log10(gcv.alpha)) <= 1) > 0.8


def test_reducer_is_fitted_on_the_rows_it_is_given():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((40, 30))
    v = np.sign(rng.standard_normal(30)) / np.sqrt(30)
    x[:20] += 20.0 * v  # the first half sits apart along v: fitted with them, v is the first axis
    reducer = fit_reducer(x[20:], 3)
    np.testing.assert_allclose(reducer.mean, x[20:].mean(axis=0))
    assert abs(reducer.components[0] @ v) < 0.8
    assert abs(fit_reducer(x, 3).components[0] @ v) > 0.99


def _spy_fits(monkeypatch) -> dict[str, list[np.ndarray]]:
    """What each fitted step of cross_validate receives: the reducer's rows, and the training targets of the
    ridge fits, the k-means baseline and the tissue-mean baseline, by step."""
    seen: dict[str, list[np.ndarray]] = {"reducer": [], "ridge": [], "kmeans": [], "means": []}
    real_reducer, real_ridge = cv_module.fit_reducer, cv_module.fit_ridge_cv
    real_kmeans, real_means = cv_module.kmeans_predict, cv_module.group_mean_predict

    def spy_reducer(rows, k, seed=0):
        seen["reducer"].append(np.asarray(rows))
        return real_reducer(rows, k, seed=seed)

    def spy_ridge(z, targets, groups=None, **kwargs):
        seen["ridge"].append(np.asarray(targets))
        return real_ridge(z, targets, groups=groups, **kwargs)

    def spy_kmeans(z_train, y_train, z_test, clusters, seed=0):
        seen["kmeans"].append(np.asarray(y_train))
        return real_kmeans(z_train, y_train, z_test, clusters, seed)

    def spy_means(y_train, train_groups, test_groups):
        seen["means"].append(np.asarray(y_train))
        return real_means(y_train, train_groups, test_groups)

    monkeypatch.setattr(cv_module, "fit_reducer", spy_reducer)
    monkeypatch.setattr(cv_module, "fit_ridge_cv", spy_ridge)
    monkeypatch.setattr(cv_module, "kmeans_predict", spy_kmeans)
    monkeypatch.setattr(cv_module, "group_mean_predict", spy_means)
    return seen


def test_pca_scaling_and_ridge_see_training_rows_only(monkeypatch):
    """Leakage test: every fitted step of every fold receives exactly the fold's training rows."""
    x, y, subjects, tissues = _cohort(donors=8)
    seen = _spy_fits(monkeypatch)
    params = RankParams(components=5, folds=4, repeats=1, permutation_null=False)
    cross_validate(x, y, subjects, tissues, params)
    folds = donor_folds(subjects, 4, 1, 0)
    train_x = [x[f.train] for f in folds]
    train_y = [y[f.train].astype(np.float32) for f in folds]  # the pipeline's logTPM is float32
    reducers, ridges = seen["reducer"], seen["ridge"]
    # One reducer per fold (shared by the embedding and embedding + tissue models), two ridge fits.
    assert len(reducers) == len(folds) and len(ridges) == 2 * len(folds)
    for rows in reducers:
        assert any(rows.shape == t.shape and np.array_equal(rows, t) for t in train_x)
    for rows in ridges:
        assert any(rows.shape == t.shape and np.array_equal(rows, t) for t in train_y)


def test_random_weights_kmeans_and_both_nulls_see_training_rows_only(monkeypatch):
    """Leakage test, every path: the random-weights features, the k-means and tissue-mean baselines, the
    shuffled null and the within-tissue nulls are each fitted on exactly one fold's training rows."""
    x, y, subjects, tissues = _cohort(donors=8)
    x_random = np.random.default_rng(9).normal(size=x.shape)
    seen = _spy_fits(monkeypatch)
    params = RankParams(components=5, folds=4, repeats=1, clusters=2, beyond_permutations=3)
    cross_validate(x, y, subjects, tissues, params, x_random=x_random, workers=1)
    folds = donor_folds(subjects, 4, 1, 0)
    shuffled = x[np.random.default_rng([params.seed, 99]).permutation(len(x))]
    moved = [x[order] for order in cv_module.within_tissue_permutations(subjects, tissues, 3, params.seed)]
    allowed_x = [m[f.train] for m in (x, x_random, shuffled, *moved) for f in folds]
    allowed_y = [y[f.train].astype(np.float32) for f in folds]
    reducers = seen["reducer"]
    targets = seen["ridge"] + seen["kmeans"] + seen["means"]
    # Per fold: the embedding's and random weights' reducers, one for the shuffled null and one per moved copy.
    assert len(reducers) == len(folds) * (2 + 1 + 3)
    for rows in reducers:
        assert any(rows.shape == t.shape and np.array_equal(rows, t) for t in allowed_x)
    for rows in targets:
        assert any(rows.shape == t.shape and np.array_equal(rows, t) for t in allowed_y)
    assert sum(rows.shape[0] == len(y) for rows in targets) == 0  # no fit ever sees every sample


def test_metrics_match_scipy_and_fdr_matches_a_direct_bh():
    rng = np.random.default_rng(1)
    a, b = rng.standard_normal((30, 4)), rng.standard_normal((30, 4))
    b[:, 0] += a[:, 0]
    for j in range(4):
        assert pearson_columns(a, b)[j] == pytest.approx(stats.pearsonr(a[:, j], b[:, j])[0])
        assert spearman_columns(a, b)[j] == pytest.approx(stats.spearmanr(a[:, j], b[:, j])[0])
        assert pearson_p(pearson_columns(a, b), 30)[j] == pytest.approx(stats.pearsonr(a[:, j], b[:, j])[1])
    tied = np.round(a * 2) / 2  # many ties, incl. -0.0 against 0.0
    tied[:5, 1] = -0.0
    for j in range(4):
        assert spearman_columns(tied, b)[j] == pytest.approx(stats.spearmanr(tied[:, j], b[:, j])[0])
    p = np.array([0.01, 0.04, 0.03, 0.2, np.nan, 0.001])
    q = bh_fdr(p)
    assert np.isnan(q[4])
    np.testing.assert_allclose(q[[5, 0, 2, 1, 3]], [0.005, 0.025, 0.04 * 5 / 4, 0.04 * 5 / 4, 0.2])
    assert np.all(q[~np.isnan(q)] >= p[~np.isnan(p)])


def test_steiger_detects_the_better_of_two_dependent_correlations():
    rng = np.random.default_rng(2)
    y = rng.standard_normal(200)
    good, bad = y + 0.5 * rng.standard_normal(200), y + 3 * rng.standard_normal(200)
    r = lambda u, v: float(np.corrcoef(u, v)[0, 1])  # noqa: E731
    z, p = steiger_test(np.array([r(y, good)]), np.array([r(y, bad)]), np.array([r(good, bad)]), 200)
    assert z[0] > 0 and p[0] < 1e-6
    z, p = steiger_test(np.array([0.3]), np.array([0.3]), np.array([0.5]), 200)
    assert z[0] == 0 and p[0] == 1.0


def test_baselines_tissue_mean_and_kmeans():
    y = np.array([[1.0], [3.0], [10.0], [12.0]])
    pred = group_mean_predict(y, np.array(["a", "a", "b", "b"]), np.array(["b", "a", "c"]))
    np.testing.assert_allclose(pred[:, 0], [11.0, 2.0, 6.5])  # unseen tissue: overall training mean
    z = np.array([[0.0], [0.1], [10.0], [10.1]])
    np.testing.assert_allclose(kmeans_predict(z, y, np.array([[9.0], [0.2]]), clusters=2)[:, 0], [11.0, 2.0])
    rng = np.random.default_rng(4)
    values, labels = rng.normal(5, 2, (30, 3)).astype(np.float32), rng.integers(0, 4, 30)
    total, within = cv_module._sums_of_squares(values, labels)
    wide = values.astype(np.float64)
    np.testing.assert_allclose(total, ((wide - wide.mean(axis=0)) ** 2).sum(axis=0), rtol=1e-12)
    direct = sum(((wide[labels == g] - wide[labels == g].mean(axis=0)) ** 2).sum(axis=0) for g in range(4))
    np.testing.assert_allclose(within, direct, rtol=1e-12)


def test_ranking_finds_image_genes_beyond_tissue_and_the_null_is_near_zero():
    x, y, subjects, tissues = _cohort()
    rng = np.random.default_rng(9)
    cv = cross_validate(x, y, subjects, tissues, RankParams(components=8, repeats=2),
                        x_random=rng.standard_normal(x.shape))
    table = build_table(cv, y, np.array([f"G{i}" for i in range(y.shape[1])]), np.array([f"S{i}" for i in range(80)]),
                        subjects)
    by_gene = table.set_index("gene_id")
    image, tissue_only, noise = (by_gene.loc[[f"G{i}" for i in r]] for r in (range(10), range(10, 20), range(20, 80)))
    assert image["r2"].min() > 0.5 and image["r2_beyond_tissue"].min() > 0.3
    assert tissue_only["r2_tissue"].median() > 0.5
    assert tissue_only["r2_beyond_tissue"].median() < 0.1 < image["r2_beyond_tissue"].min()
    assert abs(by_gene["r2_null"].median()) < 0.1  # shuffled embeddings explain nothing
    assert noise["r2"].median() < 0.05
    assert image["recovered"].all() and noise["recovered"].sum() <= 3
    assert int(table["recovered_by_random"].sum()) <= 3
    top10 = set(table.sort_values("r2_beyond_tissue", ascending=False).head(10)["gene_id"])
    assert len(top10 & set(image.index)) >= 9
    summary = summarize(table)
    assert summary["recovered"] == int(table["recovered"].sum()) >= 10
    assert sum(summary["r2_histogram"]["counts"]) == len(table)
    assert list(table["rank"]) == list(range(1, 81)) and table["r2"].is_monotonic_decreasing


def test_compare_sources_counts_improved_genes_and_tests_them():
    import pandas as pd

    a = pd.DataFrame({"gene_id": list("abcdefgh"), "symbol": list("ABCDEFGH"), "r2": np.linspace(0, 0.7, 8)})
    b = a.assign(r2=a["r2"] + np.array([0.1, 0.2, 0.1, 0.3, 0.1, 0.2, -0.05, 0.15]))
    out = compare_sources(a, b)
    assert out["genes"] == 8 and out["improved"] == 7 and out["worse"] == 1
    assert out["wilcoxon_p"] < 0.05
    assert compare_sources(a, a)["wilcoxon_p"] is None


def test_ridge_predicts_an_unseen_group_from_the_overall_means():
    rng = np.random.default_rng(5)
    z, y = rng.standard_normal((40, 4)), rng.standard_normal((40, 3))
    groups = np.repeat(["a", "b"], 20)
    fit = fit_ridge_cv(z, y, groups=groups)
    z_new = rng.standard_normal((3, 4))
    pred = fit.predict(z_new, np.array(["a", "zz", "b"]))
    np.testing.assert_allclose(pred[1], fit.overall_y + (z_new[1] - fit.overall_z) @ fit.coef)
    np.testing.assert_allclose(pred[[0, 2]], fit.predict(z_new[[0, 2]], np.array(["a", "b"])))


def test_results_do_not_depend_on_the_fold_threads_and_cancel_stops_the_folds(monkeypatch):
    from core.jobs import JobCancelled

    x, y, subjects, tissues = _cohort(seed=2, donors=10)
    params = RankParams(components=6, folds=4, repeats=2)
    one = cross_validate(x, y, subjects, tissues, params, workers=1)
    three = cross_validate(x, y, subjects, tissues, params, workers=3)
    for name, values in one.stats.items():
        np.testing.assert_array_equal(values, three.stats[name], err_msg=name)
    np.testing.assert_array_equal(one.pred["emb"], three.pred["emb"])
    fits: list[int] = []
    real_ridge = cv_module.fit_ridge_cv
    monkeypatch.setattr(cv_module, "fit_ridge_cv", lambda *a, **k: fits.append(1) or real_ridge(*a, **k))
    asked = iter([False, False])  # two folds start, then the job is cancelled

    with pytest.raises(JobCancelled):
        cross_validate(x, y, subjects, tissues, params, cancel=lambda: next(asked, True), workers=2)
    assert len(fits) == 2 * 2  # two ridge fits in each of the two folds that started, none after
