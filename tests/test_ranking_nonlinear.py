"""Kernel ridge beside the ridge for the top genes: equal to scikit-learn's KernelRidge at its chosen
settings, penalties chosen by exact leave-one-out, and better than the ridge where the link is nonlinear."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from core.ranking.cv import RankParams, cross_validate
from core.ranking.nonlinear import _squared_distances, fit_kernel_ridge, kernel_ridge_r2, top_genes_nonlinear


def _data(seed: int = 0, n: int = 60):
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(n, 3))
    y = np.column_stack([
        np.sin(2.0 * z[:, 0]) + 0.1 * rng.normal(size=n),  # nonlinear
        z[:, 1] + 0.1 * rng.normal(size=n),  # linear
        rng.normal(size=n),  # noise
    ])
    return z, y


def test_predictions_equal_sklearn_kernel_ridge_at_the_chosen_settings() -> None:
    from sklearn.kernel_ridge import KernelRidge

    z, y = _data()
    fit = fit_kernel_ridge(z[:45], y[:45], z[45:], gammas=(0.5,), alphas=(0.1,))
    d2 = _squared_distances(z[:45], z[:45])
    scale = float(np.median(d2[~np.eye(45, dtype=bool)]))
    eigen_mean = float(np.linalg.eigvalsh(np.exp(-0.5 * d2 / scale)).clip(0).mean())
    reference = KernelRidge(alpha=0.1 * eigen_mean, kernel="rbf", gamma=0.5 / scale)
    reference.fit(z[:45], y[:45] - y[:45].mean(axis=0))
    np.testing.assert_allclose(fit.pred, reference.predict(z[45:]) + y[:45].mean(axis=0), atol=1e-8)


def test_each_gene_gets_the_penalty_with_the_least_explicit_leave_one_out_error() -> None:
    z, y = _data(1, 40)
    gammas, alphas = (0.3, 3.0), (0.01, 0.3, 3.0)
    fit = fit_kernel_ridge(z, y, z[:2], gammas=gammas, alphas=alphas)
    for gene in range(y.shape[1]):
        errors = {}
        for gamma in gammas:
            for alpha in alphas:
                total = 0.0
                for i in range(len(z)):
                    keep = np.arange(len(z)) != i
                    # The leave-one-out shortcut keeps the full fold's kernel scale and centring: so does this.
                    d2 = _squared_distances(z, z)
                    scale = float(np.median(d2[~np.eye(len(z), dtype=bool)]))
                    kernel = np.exp(-gamma * d2 / scale)
                    penalty = alpha * float(np.linalg.eigvalsh(kernel).clip(0).mean())
                    yc = y[:, gene] - y[:, gene].mean()
                    dual = np.linalg.solve(kernel[np.ix_(keep, keep)] + penalty * np.eye(keep.sum()), yc[keep])
                    total += (yc[i] - kernel[i, keep] @ dual) ** 2
                errors[gamma, alpha] = total
        assert min(errors, key=errors.get) == (fit.gamma[gene], fit.alpha[gene])


def test_kernel_ridge_beats_the_ridge_on_a_nonlinear_gene_and_not_on_noise() -> None:
    rng = np.random.default_rng(3)
    n = 120
    z, y = _data(3, n)
    x = z @ rng.normal(size=(3, 8)) + 0.01 * rng.normal(size=(n, 8))  # embeddings: 8 mixtures of the 3 axes
    subjects = np.repeat([f"D{i}" for i in range(30)], 4)
    params = RankParams(components=4, folds=5, repeats=2, permutation_null=False)
    kernel = kernel_ridge_r2(x, y, subjects, params)["r2_kernel"]
    ridge = cross_validate(x, y, subjects, np.array(["t"] * n), params).stats["r2"]
    assert kernel[0] > 0.6 and kernel[0] > ridge[0] + 0.3  # sin(2z): the ridge cannot follow it
    assert kernel[1] > 0.8 and abs(kernel[1] - ridge[1]) < 0.1  # linear: both find it
    assert kernel[2] < 0.1  # noise stays near zero


def test_top_genes_table_lists_the_rankings_best_genes_beside_the_ridge() -> None:
    z, y = _data(4, 80)
    subjects = np.repeat([f"D{i}" for i in range(20)], 4)
    table = pd.DataFrame({"gene_id": ["g0", "g1", "g2"], "symbol": ["A", "B", "C"], "r2": [0.1, 0.9, -0.1]})
    out = top_genes_nonlinear(table, z, y, np.array(["g0", "g1", "g2"]), subjects,
                              RankParams(components=3, folds=4, repeats=1), top=2)
    assert list(out["gene_id"]) == ["g1", "g0"]
    assert out["kernel_minus_ridge"].to_numpy() == pytest.approx((out["r2_kernel"] - out["r2"]).to_numpy())
    assert out.loc[out["gene_id"] == "g0", "r2_kernel"].item() > 0.5
