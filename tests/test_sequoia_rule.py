"""SEQUOIA's recovered-gene rule (issue 19 items 1 and 3): Williams' T2 against hand-computed values, the
rule's thresholds, and p-values that count donors, not slides."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from core.ranking.cv import CVResult
from core.ranking.metrics import williams_t2
from core.ranking.table import SEQUOIA_RULE, build_table, summarize

# Williams' T2 (SEQUOIA's evaluation/CorrelationStats.py, method 'steiger'), r1 = r(y, a), r2 = r(y, b),
# r12 = r(a, b):  T2 = (r1 - r2) sqrt((n - 1)(1 + r12) / (2 (n - 1)/(n - 3) |R| + rbar^2 (1 - r12)^3)),
# |R| = 1 - r1^2 - r2^2 - r12^2 + 2 r1 r2 r12, rbar = (r1 + r2)/2, one-tailed p on t with n - 3 df.
#
# Case 1: r1 = 0.5, r2 = 0.3, r12 = 0.6, n = 50.
#   |R| = 1 - 0.25 - 0.09 - 0.36 + 2(0.5)(0.3)(0.6) = 0.30 + 0.18 = 0.48
#   2 (n - 1)/(n - 3) |R| = (98/47)(0.48) = 1.00085106383
#   rbar^2 (1 - r12)^3 = 0.4^2 * 0.4^3 = 0.16 * 0.064 = 0.01024
#   denominator = 1.00085106383 + 0.01024 = 1.01109106383;  numerator (n - 1)(1 + r12) = 49 * 1.6 = 78.4
#   T2 = 0.2 * sqrt(78.4 / 1.01109106383) = 0.2 * sqrt(77.5399989) = 0.2 * 8.80568 = 1.761136, df 47
# Case 2: r1 = 0.7, r2 = 0.6, r12 = 0.8, n = 20.
#   |R| = 1 - 0.49 - 0.36 - 0.64 + 2(0.7)(0.6)(0.8) = -0.49 + 0.672 = 0.182
#   2 (n - 1)/(n - 3) |R| = (38/17)(0.182) = 0.40682352941
#   rbar^2 (1 - r12)^3 = 0.65^2 * 0.2^3 = 0.4225 * 0.008 = 0.00338
#   denominator = 0.41020352941;  numerator = 19 * 1.8 = 34.2
#   T2 = 0.1 * sqrt(34.2 / 0.41020352941) = 0.1 * sqrt(83.3732466) = 0.1 * 9.130895 = 0.9130895, df 17
WORKED_CASES = [  # (r1, r2, r12, n, T2 by hand, degrees of freedom)
    (0.5, 0.3, 0.6, 50, 0.2 * np.sqrt(78.4 / (98 / 47 * 0.48 + 0.16 * 0.064)), 47),
    (0.7, 0.6, 0.8, 20, 0.1 * np.sqrt(34.2 / (38 / 17 * 0.182 + 0.4225 * 0.008)), 17),
]


def _matches_worked_cases(test) -> bool:
    """Whether a (r1, r2, r12, n) -> (T2, p) function gives the hand-computed T2 and one-tailed p."""
    for r1, r2, r12, n, t2, df in WORKED_CASES:
        got_t, got_p = test(np.array([r1]), np.array([r2]), np.array([r12]), n)
        if not (np.isclose(got_t[0], t2, rtol=1e-9) and np.isclose(got_p[0], stats.t.sf(t2, df), rtol=1e-9)):
            return False
    return True


def test_williams_t2_matches_the_hand_computed_cases():
    assert WORKED_CASES[0][4] == pytest.approx(1.761136, abs=1e-6)
    assert WORKED_CASES[1][4] == pytest.approx(0.9130895, abs=1e-6)
    assert _matches_worked_cases(williams_t2)
    # One tail at |T2|, as SEQUOIA's code: swapping the two predictions flips T2's sign, not p.
    t2, p = williams_t2(np.array([0.3]), np.array([0.5]), np.array([0.6]), 50)
    assert t2[0] == pytest.approx(-WORKED_CASES[0][4]) and p[0] == pytest.approx(stats.t.sf(WORKED_CASES[0][4], 47))
    # Undefined (n - 3 = 0 degrees of freedom, or identical predictions: a singular correlation matrix): p = 1.
    assert williams_t2(np.array([0.5]), np.array([0.3]), np.array([0.6]), 3)[1][0] == 1.0
    assert williams_t2(np.array([0.5]), np.array([0.5]), np.array([1.0]), 50)[1][0] == 1.0


def test_a_t2_that_ignores_the_correlation_between_predictions_fails_the_worked_cases():
    def ignoring_r12(r1, r2, r12, n):  # the mutation: treat the two predictions as uncorrelated
        return williams_t2(r1, r2, np.zeros_like(r12), n)

    assert not _matches_worked_cases(ignoring_r12)


def test_the_rule_thresholds_are_sequoias():
    assert SEQUOIA_RULE == {"r_above": 0.0, "pearson_p_below": 0.05, "williams_p_below": 0.05,
                            "williams_fdr_below": 0.2}


def _predictions(n_donors: int, slides: int, genes: int = 120, seed: int = 3):
    """Observed values and two predictions per gene: the source's signal grows across genes, random
    weights share part of the source's error (so the two predictions correlate)."""
    rng = np.random.default_rng(seed)
    n = n_donors * slides
    y = rng.standard_normal((n, genes))
    shared = rng.standard_normal((n, genes))
    strength = np.linspace(0.0, 1.0, genes)
    emb = strength * y + shared + 0.5 * rng.standard_normal((n, genes))
    rand = 0.3 * strength * y + shared + 0.5 * rng.standard_normal((n, genes))
    subjects = np.repeat([f"D{d}" for d in range(n_donors)], slides)
    return y, emb, rand, subjects


def _table(y, emb, rand, subjects):
    cv = CVResult({"r2": np.zeros(y.shape[1])}, {"emb": emb.astype(np.float32), "random": rand.astype(np.float32)})
    ids = np.array([f"G{i}" for i in range(y.shape[1])])
    return build_table(cv, y, ids, ids, subjects).set_index("gene_id").loc[ids]


def test_recovered_is_sequoias_conjunction_and_the_strict_rule_is_kept_apart():
    table = _table(*_predictions(n_donors=60, slides=1))
    sequoia = ((table["r_pooled"] > 0) & (table["p"] < 0.05) & (table["rmse"] < table["rmse_random"])
               & (table["r_pooled"] > table["r_pooled_random"]) & (table["williams_p"] < 0.05)
               & (table["williams_fdr"] < 0.2))
    assert (table["recovered"] == sequoia).all() and 0 < sequoia.sum() < len(table)
    strict = ((table["r_pooled"] > 0) & (table["p"] < 0.05) & (table["rmse"] < table["rmse_random"])
              & (table["r_pooled"] > table["r_pooled_random"]) & (table["steiger_fdr"] < 0.05))
    assert (table["recovered_strict"] == strict).all()
    assert (table["recovered_strict"] & ~table["recovered"]).sum() == 0 < (table["recovered"] & ~strict).sum()
    summary = summarize(table.assign(r=table["r_pooled"], r2_tissue=0.0, r2_beyond_tissue=0.0, r2_kmeans=0.0,
                                     r2_random=0.0))
    assert summary["recovered"] == int(sequoia.sum()) and summary["recovered_strict"] == int(strict.sum())


def test_duplicating_every_slide_of_a_donor_makes_no_gene_more_significant():
    y, emb, rand, subjects = _predictions(n_donors=30, slides=2)
    original = _table(y, emb, rand, subjects)
    twice = _table(*(np.concatenate([a, a]) for a in (y, emb, rand, subjects)))  # same donors, slides doubled
    for column in ("p", "fdr", "p_random", "williams_p", "williams_fdr", "steiger_p", "steiger_fdr"):
        assert (twice[column].to_numpy() >= original[column].to_numpy() - 1e-12).all(), column
    assert twice["recovered"].sum() <= original["recovered"].sum()
    assert twice["significant"].sum() <= original["significant"].sum()
