"""Fingerprints that see every edit but never re-read an untouched file; a damaged cache database is survived."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import core.base.cache as cache_module
from core.base.cache import cached, file_fingerprint, open_cache


def _big_file(path: Path, size: int = 8 * 1024 * 1024) -> Path:
    path.write_bytes(os.urandom(1024) * (size // 1024))
    return path


def test_an_in_place_edit_between_sampled_blocks_changes_the_fingerprint(tmp_path: Path) -> None:
    # Larger than any whole-file hashing limit, so only sampled blocks and the stat can see the edit.
    big = _big_file(tmp_path / "expression.gct", size=80 * 1024 * 1024)
    before = file_fingerprint(big)
    with big.open("r+b") as handle:  # one byte at 3 MB: no sampled block covers it
        handle.seek(3 * 1024 * 1024 + 17)
        byte = handle.read(1)
        handle.seek(-1, os.SEEK_CUR)
        handle.write(bytes([byte[0] ^ 0xFF]))
    assert big.stat().st_size == 80 * 1024 * 1024
    assert file_fingerprint(big) != before


def test_an_edit_that_restores_the_mtime_is_still_seen_through_the_content(tmp_path: Path) -> None:
    small = tmp_path / "histology.csv"
    small.write_text("Tissue Sample ID,Tissue\nGTEX-A-1,Lung\n")
    before = file_fingerprint(small)
    stat = small.stat()
    small.write_text("Tissue Sample ID,Tissue\nGTEX-A-1,Lunh\n")  # same size
    os.utime(small, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert file_fingerprint(small) != before


def test_an_untouched_file_is_never_read_again(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    big = _big_file(tmp_path / "slide.svs")
    first = file_fingerprint(big)
    monkeypatch.setattr(cache_module, "_content_fingerprint", lambda *a: pytest.fail("file read again"))
    assert file_fingerprint(big) == first
    assert file_fingerprint(str(big)) == first


def test_same_content_under_another_name_is_a_new_file(tmp_path: Path) -> None:
    a = tmp_path / "a.svs"
    a.write_bytes(b"x" * 100)
    b = tmp_path / "b.svs"
    b.write_bytes(b"x" * 100)
    assert file_fingerprint(a) != file_fingerprint(b)  # different inode: never mistaken for one another


def test_a_really_damaged_cache_database_is_moved_aside(ws) -> None:
    with open_cache(ws) as cache:
        cache.set("answer", 41)
    db = ws.cache_dir / "cache.db"
    damaged = bytearray(db.read_bytes())
    damaged[:100] = os.urandom(100)  # the SQLite header: the whole file no longer opens
    db.write_bytes(bytes(damaged))
    with open_cache(ws) as cache:
        assert cached(cache, "answer", lambda: 42) == 42  # recomputed, not fatal
        cache.set("other", 1)
    with open_cache(ws) as cache:
        assert cache.get("answer") == 42 and cache.get("other") == 1  # the fresh database works
    assert any(p.name.startswith("cache.db.damaged-") for p in ws.cache_dir.iterdir())
