"""The ranking table and its summaries: donor-aware p-values and FDR, SEQUOIA's recovered-gene rule
against random-weights features (and a stricter variant), the BrST-Net summary, and the gene-by-gene
comparison of two feature sources."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from core.ranking.cv import CVResult
from core.ranking.metrics import bh_fdr, pearson_columns, pearson_p, steiger_test, williams_t2

TOP_FIELDS = ("symbol", "gene_id", "r2", "r2_beyond_tissue", "r", "fdr")
R2_BINS = np.round(np.arange(-0.5, 1.0001, 0.05), 2)
ALPHA = 0.05  # significance level of the Pearson tests and the strict rule

# SEQUOIA's recovered-gene rule (gevaertlab/sequoia-pub, evaluation/evaluate_model.py), every comparison strict:
# r > 0, Pearson p < 0.05, RMSE and r better than random weights, Williams T2 one-tailed p < 0.05, its BH FDR < 0.2.
SEQUOIA_RULE: dict[str, float] = {"r_above": 0.0, "pearson_p_below": 0.05, "williams_p_below": 0.05,
                                  "williams_fdr_below": 0.2}
SEQUOIA_RULE_TEXT = ("SEQUOIA: r > 0, Pearson p < 0.05, lower RMSE and higher r than random weights, one-tailed "
                     "Williams T2 p < 0.05 and its BH FDR < 0.2; p-values with n = donors")
STRICT_RULE_TEXT = ("strict: r > 0, Pearson p < 0.05, lower RMSE and higher r than random weights, two-sided "
                    "Steiger Z BH FDR < 0.05; p-values with n = donors")


def _beats(frame: pd.DataFrame, a: str, b: str) -> pd.Series:
    """SEQUOIA's filters except the paired test: source `a` (column suffix) beats `b` on r, p, RMSE and r."""
    return ((frame[f"r_pooled{a}"] > SEQUOIA_RULE["r_above"]) & (frame[f"p{a}"] < SEQUOIA_RULE["pearson_p_below"])
            & (frame[f"rmse{a}"] < frame[f"rmse{b}"]) & (frame[f"r_pooled{a}"] > frame[f"r_pooled{b}"]))


def build_table(cv: CVResult, y: np.ndarray, gene_ids: np.ndarray, symbols: np.ndarray,
                subject_ids: np.ndarray) -> pd.DataFrame:
    """One row per gene, best R² first. `p`/`fdr` test the Pearson r of the repeat-averaged out-of-fold
    predictions (`r_pooled`); `r`/`rho` are medians over folds and repeats.

    Every p-value is donor-aware: a donor gives several slides that are not independent samples, so the
    closed forms (Pearson's t, Williams' T2, Steiger's Z) take n = the number of donors in `subject_ids`
    (one per row of y), not the number of slides.

    With random-weights predictions, `recovered` is SEQUOIA's rule exactly (SEQUOIA_RULE): r_pooled > 0,
    p < 0.05, lower RMSE and higher r_pooled than random weights, and Williams' T2 (`williams_p`, one tail)
    < 0.05 with its Benjamini-Hochberg FDR over genes (`williams_fdr`) < 0.2. `recovered_strict` keeps the
    older, stricter test instead of Williams': two-sided Steiger Z with FDR < 0.05 (`steiger_*`).
    `recovered_by_random` and `recovered_strict_by_random` are the rules with the roles swapped.
    """
    y = np.asarray(y, dtype=np.float64)
    n = int(pd.unique(np.asarray(subject_ids).astype(str)).size)
    if len(subject_ids) != len(y):
        raise ValueError(f"{len(subject_ids)} subject ids for {len(y)} samples")
    frame = pd.DataFrame({"gene_id": np.asarray(gene_ids).astype(str), "symbol": np.asarray(symbols).astype(str)})
    for name, values in cv.stats.items():
        frame[name] = values
    emb = cv.pred["emb"]
    frame["r_pooled"] = pearson_columns(y, emb)
    frame["p"] = pearson_p(frame["r_pooled"].fillna(0).to_numpy(), n)
    frame["fdr"] = bh_fdr(frame["p"].to_numpy())
    frame["rmse"] = np.sqrt(((y - emb) ** 2).mean(axis=0))
    frame["significant"] = (frame["r_pooled"] > 0) & (frame["p"] < ALPHA)
    if "random" in cv.pred:
        rand = cv.pred["random"]
        frame["r_pooled_random"] = pearson_columns(y, rand)
        frame["p_random"] = pearson_p(frame["r_pooled_random"].fillna(0).to_numpy(), n)
        frame["rmse_random"] = np.sqrt(((y - rand) ** 2).mean(axis=0))
        r_between = pearson_columns(emb, rand)
        constant = np.isnan(frame["r_pooled"]) | np.isnan(frame["r_pooled_random"]) | np.isnan(r_between)
        r_emb, r_rand = frame["r_pooled"].fillna(0).to_numpy(), frame["r_pooled_random"].fillna(0).to_numpy()
        t2, p_t2 = williams_t2(r_emb, r_rand, np.nan_to_num(r_between), n)
        p_t2 = np.where(constant, 1.0, p_t2)  # SEQUOIA: a constant column gets p = 1
        frame["williams_t2"], frame["williams_p"], frame["williams_fdr"] = t2, p_t2, bh_fdr(p_t2)
        z, p = steiger_test(r_emb, r_rand, np.nan_to_num(r_between), n)
        frame["steiger_z"], frame["steiger_p"], frame["steiger_fdr"] = z, p, bh_fdr(p)
        frame["significant_random"] = (frame["r_pooled_random"] > 0) & (frame["p_random"] < ALPHA)
        # The paired tests are symmetric (|T2|, two-sided Z), so one p-value serves both directions.
        williams = (frame["williams_p"] < SEQUOIA_RULE["williams_p_below"]) & (
            frame["williams_fdr"] < SEQUOIA_RULE["williams_fdr_below"])
        strict = frame["steiger_fdr"] < ALPHA
        frame["recovered"] = _beats(frame, "", "_random") & williams
        frame["recovered_by_random"] = _beats(frame, "_random", "") & williams
        frame["recovered_strict"] = _beats(frame, "", "_random") & strict
        frame["recovered_strict_by_random"] = _beats(frame, "_random", "") & strict
    if "p_beyond_tissue" in frame:  # what the images add beyond tissue identity, against a within-tissue null
        frame["fdr_beyond_tissue"] = bh_fdr(frame["p_beyond_tissue"].to_numpy())
        frame["significant_beyond_tissue"] = (frame["r2_beyond_tissue"] > 0) & (frame["fdr_beyond_tissue"] < ALPHA)
    frame = frame.sort_values("r2", ascending=False, na_position="last", kind="stable").reset_index(drop=True)
    frame.insert(0, "rank", np.arange(1, len(frame) + 1))
    return frame


def _median(values: pd.Series) -> float | None:
    value = values.median()
    return None if pd.isna(value) else round(float(value), 4)


def summarize(table: pd.DataFrame) -> dict[str, Any]:
    """BrST-Net style counts, baselines' medians, the R² histogram and the recovered counts."""
    r2 = table["r2"].to_numpy(dtype=float)
    counts, edges = np.histogram(np.clip(r2[~np.isnan(r2)], R2_BINS[0], R2_BINS[-1]), bins=R2_BINS)
    out: dict[str, Any] = {
        "positive_r": int((table["r"] > 0).sum()),
        "median_r_above_0_5": int((table["r"] > 0.5).sum()),
        "significant": int(table["significant"].sum()),
        "significant_fdr": int(((table["fdr"] < ALPHA) & (table["r_pooled"] > 0)).sum()),
        "median_r2": _median(table["r2"]),
        "median_r2_tissue": _median(table["r2_tissue"]),
        "median_r2_beyond_tissue": _median(table["r2_beyond_tissue"]),
        "median_r2_kmeans": _median(table["r2_kmeans"]),
        "r2_histogram": {"edges": edges.round(3).tolist(), "counts": counts.tolist()},
    }
    if "r2_null" in table:
        out["median_r2_null"] = _median(table["r2_null"])
    if "significant_beyond_tissue" in table:
        out["recovered_beyond_tissue"] = int(table["significant_beyond_tissue"].sum())
    if "recovered" in table:
        out["recovered"] = int(table["recovered"].sum())
        out["recovered_by_random"] = int(table["recovered_by_random"].sum())
        out["recovered_strict"] = int(table["recovered_strict"].sum())
        out["recovered_strict_by_random"] = int(table["recovered_strict_by_random"].sum())
        out["significant_random"] = int(table["significant_random"].sum())
        out["median_r2_random"] = _median(table["r2_random"])
    return out


def top_ranked_genes(table: pd.DataFrame, n: int = 20) -> list[dict[str, Any]]:
    """The best `n` rows by R², with the CLI's fields (floats rounded)."""
    rows = []
    for row in table.head(n).itertuples(index=False):
        entry: dict[str, Any] = {}
        for name in TOP_FIELDS:
            value = getattr(row, name)
            entry[name] = None if isinstance(value, float) and np.isnan(value) else (
                round(float(value), 6) if isinstance(value, float | np.floating) else value
            )
        rows.append(entry)
    return rows


def compare_sources(a: pd.DataFrame, b: pd.DataFrame, column: str = "r2") -> dict[str, Any]:
    """Gene-by-gene comparison of two rankings (A, then B): genes improved by B, paired Wilcoxon test."""
    joined = a[["gene_id", "symbol", column]].merge(b[["gene_id", column]], on="gene_id", suffixes=("_a", "_b"))
    joined = joined.dropna(subset=[f"{column}_a", f"{column}_b"])
    diff = joined[f"{column}_b"] - joined[f"{column}_a"]
    p = None
    if (diff != 0).any():
        p = float(stats.wilcoxon(joined[f"{column}_b"], joined[f"{column}_a"]).pvalue)
    return {
        "genes": len(joined),
        "improved": int((diff > 0).sum()),
        "worse": int((diff < 0).sum()),
        "median_difference": None if joined.empty else round(float(diff.median()), 4),
        "wilcoxon_p": p,
        "pairs": joined,
    }
