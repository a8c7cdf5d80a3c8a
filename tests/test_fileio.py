"""Atomic writes and the JSON-object reader every module shares."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from core.base.fileio import atomic_path, atomic_write_json, read_json_object, temp_path_for


def test_temp_names_differ_within_one_process(tmp_path: Path) -> None:
    # Two writers in one process (threads) or a forked child with a reused pid must not share a temp file.
    target = tmp_path / "status.json"
    names = {temp_path_for(target) for _ in range(50)}
    assert len(names) == 50
    assert all(name.parent == tmp_path and name.name.startswith(".status.json.") for name in names)


def test_atomic_path_replaces_only_on_success(tmp_path: Path) -> None:
    target = tmp_path / "data.bin"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_bytes(b"half of the new")
        raise RuntimeError("killed mid-write")
    assert target.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["data.bin"]  # no temp file left behind
    with atomic_path(target) as tmp:
        tmp.write_bytes(b"new")
    assert target.read_bytes() == b"new"
    assert os.listdir(tmp_path) == ["data.bin"]


def test_atomic_path_cleans_a_temp_folder(tmp_path: Path) -> None:
    with pytest.raises(ValueError), atomic_path(tmp_path / "entry") as tmp:
        tmp.mkdir()
        (tmp / "part").write_text("x")
        raise ValueError("disk full")
    assert os.listdir(tmp_path) == []


def test_read_json_object_contract(tmp_path: Path) -> None:
    good = tmp_path / "good.json"
    atomic_write_json(good, {"state": "done", "n": 3})
    assert read_json_object(good) == {"state": "done", "n": 3}
    (tmp_path / "list.json").write_text(json.dumps([1, 2]))
    (tmp_path / "half.json").write_text('{"state": "runn')
    assert read_json_object(tmp_path / "list.json") is None  # valid JSON, not an object
    assert read_json_object(tmp_path / "half.json") is None
    assert read_json_object(tmp_path / "missing.json") is None
    assert read_json_object(tmp_path) is None  # a folder
