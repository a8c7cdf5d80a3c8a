"""Donor split: train / validation / test disjoint by donor as the user's data names them, seeded, saved."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from core.base.errors import DataError
from core.data.dataset import load_cohort
from core.train.split import donor_split, donors_by_split, read_split, save_split


def _samples(n_donors: int = 10, tissues: tuple[str, ...] = ("Lung", "Liver", "Skin")) -> pd.DataFrame:
    rows = [{"sample_id": f"GTEX-D{d}-{t:04d}", "subject_id": f"GTEX-D{d}", "tissue": tissue}
            for d in range(n_donors) for t, tissue in enumerate(tissues)]
    return pd.DataFrame(rows)


def test_donors_typed_two_ways_never_straddle_the_split(tmp_path: Path) -> None:
    # Every donor's samples are spelled two ways in the CSV (trailing or doubled spaces), as exports do.
    header = "Tissue Sample ID,Tissue,Subject ID"
    rows = []
    for d in range(8):
        for t, tissue in enumerate(("Lung", "Liver", "Skin", "Thyroid")):
            spelled = f"DONOR {d}" if t % 2 else f" DONOR  {d} "
            rows.append(f"S{d}-{t},{tissue},{spelled}")
    (tmp_path / "histology.csv").write_text("\n".join([header, *rows]) + "\n")
    raw = pd.read_csv(tmp_path / "histology.csv", dtype=str)
    # The user's donor: the one the raw text means (what a reviewer reads in the file).
    users_donor = dict(zip(raw["Tissue Sample ID"], raw["Subject ID"].str.split().str.join(" "), strict=True))
    with pytest.warns(UserWarning):
        samples = load_cohort(tmp_path).samples
    for seed in range(10):
        split = donor_split(samples, test_fraction=0.25, val_fraction=0.25, seed=seed)
        sides = split.assign(donor=split["sample_id"].map(users_donor)).groupby("donor")["split"].nunique()
        assert (sides == 1).all(), f"seed {seed}: a donor on two sides: {sides[sides > 1].index.tolist()}"
        assert set(split["split"]) == {"train", "validation", "test"}


def test_validation_is_drawn_from_training_donors_and_leaves_test_unchanged() -> None:
    samples = _samples(11)
    without = donor_split(samples, test_fraction=0.3, val_fraction=0.0, seed=4)
    split = donor_split(samples, test_fraction=0.3, val_fraction=0.2, seed=4)
    donors, before = donors_by_split(split), donors_by_split(without)
    assert donors["test"] == before["test"] and len(donors["test"]) == 3  # round(0.3 * 11)
    assert len(donors["validation"]) == 2 and set(donors["validation"]) <= set(before["train"])
    assert not set(donors["train"]) & set(donors["validation"])
    assert split.equals(donor_split(samples, 0.3, 0.2, seed=4))  # seeded
    others = {tuple(donors_by_split(donor_split(samples, 0.3, 0.2, seed=s))["validation"]) for s in range(8)}
    assert len(others) > 1  # the seed matters


def test_every_tissue_keeps_a_training_donor() -> None:
    # Skin has one donor only: it must train; Liver has two: at most one leaves training.
    samples = pd.DataFrame({
        "sample_id": ["a1", "a2", "b1", "c1", "c2", "d1", "e1"],
        "subject_id": ["A", "A", "B", "C", "C", "D", "E"],
        "tissue": ["Skin", "Lung", "Lung", "Lung", "Liver", "Lung", "Liver"],
    })
    for seed in range(10):
        split = donor_split(samples, test_fraction=0.3, val_fraction=0.3, seed=seed)
        train = split[split["split"] == "train"]
        assert set(train["tissue"]) == {"Skin", "Lung", "Liver"}
        assert "A" in set(train["subject_id"])
        assert {"validation", "test"} <= set(split["split"])


def test_split_is_saved_and_read_back(tmp_path: Path) -> None:
    split = donor_split(_samples(6), 0.34, 0.17, seed=1)
    path = save_split(tmp_path, split)
    assert path.name == "split.csv"
    again = read_split(path)
    assert list(again.columns) == ["sample_id", "subject_id", "split"]
    assert again.equals(split[["sample_id", "subject_id", "split"]])
    path.write_text("sample_id,subject_id,split\nx,y,holdout\n")
    with pytest.raises(DataError, match="split.csv: not a split"):
        read_split(path)
    with pytest.raises(DataError, match="no saved split"):
        read_split(tmp_path / "absent.csv")


def test_bad_fractions_and_missing_columns_are_refused() -> None:
    with pytest.raises(ValueError, match="sum to less than 1"):
        donor_split(_samples(), 0.6, 0.5)
    with pytest.raises(DataError, match="subject_id"):
        donor_split(_samples().drop(columns="subject_id"))
    one = donor_split(_samples(1), 0.3, 0.1)
    assert set(one["split"]) == {"train"}  # a single donor cannot be held out
