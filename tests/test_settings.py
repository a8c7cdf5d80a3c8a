"""Per-dataset settings: saved per folder, merged key by key, survive a damaged file."""

from __future__ import annotations

from pathlib import Path

from core.base.settings import dataset_settings_path, load_dataset_settings, update_dataset_settings


def test_settings_are_per_dataset_and_merge_key_by_key(ws, tmp_path: Path) -> None:
    a, b = tmp_path / "cohort-a", tmp_path / "cohort-b"
    a.mkdir(), b.mkdir()
    assert load_dataset_settings(ws, a) == {}
    update_dataset_settings(ws, a, donor_column="Patient")
    update_dataset_settings(ws, a, tiling={"tile_size": 224})
    assert load_dataset_settings(ws, a) == {"donor_column": "Patient", "tiling": {"tile_size": 224}}
    assert load_dataset_settings(ws, b) == {}
    # The same folder named another way is the same dataset.
    assert load_dataset_settings(ws, tmp_path / "cohort-b" / ".." / "cohort-a") == load_dataset_settings(ws, a)
    update_dataset_settings(ws, a, donor_column=None)
    assert load_dataset_settings(ws, a) == {"tiling": {"tile_size": 224}}


def test_a_damaged_settings_file_reads_as_no_settings(ws, tmp_path: Path) -> None:
    update_dataset_settings(ws, tmp_path, donor_column="Patient")
    dataset_settings_path(ws, tmp_path).write_text('{"donor_col')
    assert load_dataset_settings(ws, tmp_path) == {}
    assert update_dataset_settings(ws, tmp_path, donor_column="Donor") == {"donor_column": "Donor"}
