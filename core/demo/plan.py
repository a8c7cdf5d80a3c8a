"""The cohort plan (donors, samples, factors, artifacts) and the Portal-style histology CSV it yields."""

from __future__ import annotations

import csv
import io
from typing import Any

import numpy as np
import pandas as pd

from core.demo.spec import (
    ARTIFACT_KINDS,
    DEFAULT_DONORS,
    DEFAULT_SLIDE_SIZE,
    FACTORS,
    HISTOLOGY_HEADER,
    RNA_ONLY_TISSUES,
    TISSUES,
)

_ID_CHARS = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"
_HARDY = (
    ("Ventilator case", 0.6),
    ("Slow death", 0.15),
    ("Fast death - natural causes", 0.12),
    ("Intermediate death", 0.08),
    ("Fast death - violent", 0.05),
)
_AGES = ("20-29", "30-39", "40-49", "50-59", "60-69", "70-79")
_NOTES = (
    "2 pieces, {a}x{b} mm; well preserved",
    "{a}x{b} mm; {fat}% fat, rest is {main}",
    "1 piece, {a}x{b} mm; mild autolysis",
    "2 pieces; {main}, good quality",
    "{main} ~{keep}% of specimen, {fat}% adipose",
)
_MAIN = {
    "Adipose - Subcutaneous": "adipose with thin fibrous septa",
    "Breast - Mammary Tissue": "fibrous stroma with scattered lobules",
    "Esophagus - Mucosa": "squamous mucosa and submucosa",
    "Esophagus - Gastroesophageal Junction": "mucosa, glands and muscularis",
    "Skin - Sun Exposed (Lower leg)": "epidermis and dermis",
    "Skin - Not Sun Exposed (Suprapubic)": "epidermis and dermis",
    "Lung": "alveolar parenchyma",
    "Liver": "hepatic parenchyma",
    "Muscle - Skeletal": "skeletal muscle",
    "Thyroid": "thyroid follicles",
}


def _random_code(rng: np.random.Generator, n: int, first: str | None = None) -> str:
    chars = [_ID_CHARS[i] for i in rng.integers(0, len(_ID_CHARS), n)]
    if first:
        chars[0] = first
    return "".join(chars)


def _beta22_cdf(b: float) -> float:
    return b * b * (3.0 - 2.0 * b)


def _plan_artifacts(rng: np.random.Generator, width: int, height: int) -> list[dict[str, Any]]:
    """Artifacts for one slide (often none), with level-0 boxes (x, y, w, h)."""
    if rng.random() >= 0.35:
        return []
    kinds = rng.choice(ARTIFACT_KINDS, size=int(rng.integers(1, 3)), replace=False)
    arts = []
    side = min(width, height)
    for kind in sorted(kinds.tolist()):
        if kind == "pen":
            w, h = int(width * rng.uniform(0.3, 0.55)), int(height * rng.uniform(0.08, 0.3))
            extra = {"color": str(rng.choice(("green", "blue", "black"))), "width_um": float(rng.uniform(60, 110))}
        elif kind == "blur":
            w = h = int(side * rng.uniform(0.3, 0.45))
            extra = {"sigma_um": float(rng.uniform(1.8, 3.0))}  # out of focus, structure still visible
        elif kind == "dust":
            w, h = int(side * rng.uniform(0.22, 0.32)), int(side * rng.uniform(0.22, 0.32))
            grey = int(rng.integers(120, 175))
            extra = {"grey": [grey, grey - 3, grey - 6]}
        else:  # fold
            w, h = int(width * rng.uniform(0.35, 0.6)), int(height * rng.uniform(0.1, 0.35))
            extra = {"width_um": float(rng.uniform(80, 160))}
        x = int(rng.uniform(0.2, 0.8) * width - w / 2)
        y = int(rng.uniform(0.2, 0.8) * height - h / 2)
        x, y = max(0, min(x, width - w)), max(0, min(y, height - h))
        arts.append({"kind": kind, "x": x, "y": y, "w": w, "h": h, **extra})
    return arts


def plan_cohort(
    seed: int = 0,
    n_donors: int = DEFAULT_DONORS,
    tissues: tuple[str, ...] = TISSUES,
    coverage: float = 0.8,
    slide_size: tuple[int, int] = DEFAULT_SLIDE_SIZE,
    missing_expression: float = 0.1,
) -> pd.DataFrame:
    """One row per tissue sample: IDs, donor facts, tissue, factors, artifacts, slide/expression flags.

    Each donor gives about `coverage` of the tissues, spread evenly so every tissue has donors on
    both sides of any donor split. About `missing_expression` of the slides get no RNA; RNA-only
    samples (a skipped tissue, or Whole Blood) have no slide and no histology row, as in GTEx.
    """
    unknown = [t for t in tissues if t not in TISSUES]
    if unknown:
        raise ValueError(f"unknown tissues {unknown}; known: {', '.join(TISSUES)}")
    if n_donors < 1 or not tissues:
        raise ValueError("n_donors >= 1 and at least one tissue are required")
    rng = np.random.default_rng([seed, 1])
    n_t = len(tissues)
    skips = min(n_t - 1, round(n_t * (1.0 - coverage)))
    order = rng.permutation(n_t)
    donors = set()
    rows = []
    for d in range(n_donors):
        donor = "GTEX-" + _random_code(rng, 5, first="1")
        while donor in donors:
            donor = "GTEX-" + _random_code(rng, 5, first="1")
        donors.add(donor)
        sex = str(rng.choice(("male", "female"), p=(0.6, 0.4)))
        age = str(rng.choice(_AGES, p=(0.08, 0.08, 0.14, 0.28, 0.36, 0.06)))
        hardy = str(rng.choice([h for h, _ in _HARDY], p=[p for _, p in _HARDY]))
        skipped = {int(order[(d * skips + k) % n_t]) for k in range(skips)}
        codes = rng.permutation(np.arange(1, 36))
        candidates = [(t, True) for t in range(n_t)] + [(-1, False)]
        for k, (t_index, _) in enumerate(candidates):
            tissue = tissues[t_index] if t_index >= 0 else RNA_ONLY_TISSUES[0]
            has_slide = t_index >= 0 and t_index not in skipped
            if t_index < 0 and rng.random() < 0.5:
                continue  # about half the donors have blood RNA
            if t_index >= 0 and not has_slide and rng.random() < 0.5:
                continue  # some skipped tissues still have RNA
            sample_id = f"{donor}-{codes[k]:02d}26"
            # Uniform on [0, 1]: a Beta(2, 2) draw through its own CDF (3b^2 - 2b^3), which keeps the random
            # stream (and so every ID) of the earlier Beta factors while widening their spread (SD 0.22 -> 0.29).
            factors = {name: float(np.round(_beta22_cdf(rng.beta(2.0, 2.0)), 4)) for name in FACTORS}
            has_expression = (not has_slide) or rng.random() >= missing_expression
            rows.append(
                {
                    "sample_id": sample_id,
                    "rna_sample_id": f"{sample_id}-SM-{_random_code(rng, 5)}",
                    "tissue": tissue,
                    "subject_id": donor,
                    "sex": sex,
                    "age_bracket": age,
                    "hardy_scale": hardy,
                    "has_slide": has_slide,
                    "has_expression": has_expression,
                    **factors,
                    "artifacts": _plan_artifacts(rng, *slide_size) if has_slide else [],
                }
            )
    plan = pd.DataFrame(rows).sort_values(["tissue", "sample_id"], kind="stable").reset_index(drop=True)
    plan["slide_seed"] = [[seed, 2, i] for i in range(len(plan))]
    return plan


def _pathology(rng: np.random.Generator, tissue: str, row: pd.Series) -> tuple[str, str]:
    """Portal-style Pathology Categories and Notes, echoing the strongest factors."""
    categories = []
    if row["fibrosis"] > 0.75:
        categories.append("fibrosis")
    if row["immune_infiltrate"] > 0.75:
        categories.append("inflammation")
    if tissue == "Liver" and row["adipocyte_fraction"] > 0.65:
        categories.append("steatosis")
    if not categories and rng.random() < 0.25:
        categories.append("clean_specimens")
    template = _NOTES[int(rng.integers(0, len(_NOTES)))]
    fat = (
        int(5 + 40 * row["adipocyte_fraction"])
        if tissue not in TISSUES[:2]
        else int(60 + 35 * row["adipocyte_fraction"])
    )
    note = template.format(
        a=int(rng.integers(5, 15)),
        b=int(rng.integers(4, 10)),
        fat=min(fat, 95),
        keep=100 - min(fat, 95),
        main=_MAIN.get(tissue, "tissue"),
    )
    return ", ".join(categories), note


def histology_csv(plan: pd.DataFrame, seed: int) -> bytes:
    rng = np.random.default_rng([seed, 3])
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(HISTOLOGY_HEADER)
    for _, row in plan[plan["has_slide"]].iterrows():
        categories, notes = _pathology(rng, row["tissue"], row)
        writer.writerow(
            [
                row["sample_id"],
                row["tissue"],
                row["subject_id"],
                row["sex"],
                row["age_bracket"],
                row["hardy_scale"],
                categories,
                notes,
            ]
        )
    return out.getvalue().encode()
