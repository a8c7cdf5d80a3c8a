"""core.predict.upload: an uploaded slide streamed to a private temp file (extension kept, name never a path), hashed as
written, size-limited, deleted or kept; and the app's upload limit in .streamlit/config.toml."""

from __future__ import annotations

import hashlib
import io
import os
import stat
import time
import tomllib
from pathlib import Path

import pytest

from core.base.config import Workspace
from core.base.errors import DataError
from core.predict import upload

REPO_ROOT = Path(__file__).resolve().parents[1]


class CountingStream(io.BytesIO):
    """Records the size of every read, to show the copy goes in chunks."""

    def __init__(self, data: bytes) -> None:
        super().__init__(data)
        self.reads: list[int] = []

    def read(self, size: int | None = -1) -> bytes:
        self.reads.append(size)
        return super().read(size)


def test_saved_in_chunks_with_its_hash_and_extension(ws: Workspace, testdata: Path):
    data = (testdata / "CMU-1-Small-Region.svs").read_bytes()
    stream = CountingStream(data)
    saved = upload.save_upload(ws, stream, "CMU-1-Small-Region.SVS", limit_bytes=10 * 2**20, chunk_bytes=2**18)
    assert saved.sha256 == hashlib.sha256(data).hexdigest()
    assert saved.size == len(data)
    assert saved.name == "CMU-1-Small-Region.SVS"
    assert saved.path.suffix == ".svs" and saved.path.read_bytes() == data
    assert saved.path.parent == ws.root / "uploads"
    assert "CMU" not in saved.path.name  # the user's name is never part of the path
    assert max(stream.reads) == 2**18 and len(stream.reads) > len(data) // 2**18
    assert stat.S_IMODE(saved.path.stat().st_mode) == 0o600
    assert stat.S_IMODE(saved.path.parent.stat().st_mode) == 0o700


@pytest.mark.parametrize("name", ["../../etc/passwd.svs", "/tmp/evil.svs", "a\\b..\\c.svs"])
def test_a_name_with_a_path_lands_in_the_upload_folder(ws: Workspace, name: str):
    saved = upload.save_upload(ws, io.BytesIO(b"x" * 10), name, limit_bytes=100)
    assert saved.path.parent == ws.root / "uploads"
    assert saved.path.name.startswith("upload-") and saved.path.suffix == ".svs"


@pytest.mark.parametrize(("name", "extension"), [("slide.ome.tiff", ".ome.tiff"), ("x.OME.TIF", ".ome.tif"),
                                                 ("scan.ndpi", ".ndpi"), ("photo.JPG", ".jpg"), ("a.czi", ".czi")])
def test_extension_kept(ws: Workspace, name: str, extension: str):
    saved = upload.save_upload(ws, io.BytesIO(b"abc"), name, limit_bytes=100)
    assert saved.path.name.endswith(extension)


@pytest.mark.parametrize("name", ["notes.txt", "slide.svs.exe", "svs", ".svs", "archive.zip"])
def test_other_extensions_refused_before_writing(ws: Workspace, name: str):
    with pytest.raises(DataError, match="not a slide file") as error:
        upload.save_upload(ws, io.BytesIO(b"abc"), name, limit_bytes=100)
    assert error.value.path == name
    assert list(upload.uploads_dir(ws).iterdir()) == []


def test_over_the_limit_refused_by_its_announced_size(ws: Workspace):
    stream = CountingStream(b"x" * 10)
    with pytest.raises(DataError, match="over the upload limit of 1.0 KB") as error:
        upload.save_upload(ws, stream, "big.svs", limit_bytes=1024, size=5000)
    assert error.value.path == "big.svs" and stream.reads == []


def test_over_the_limit_stopped_while_streaming_and_partial_file_removed(ws: Workspace):
    stream = CountingStream(b"x" * 5000)
    with pytest.raises(DataError, match="over the upload limit"):
        upload.save_upload(ws, stream, "big.tiff", limit_bytes=1024, chunk_bytes=512)
    assert len(stream.reads) == 3  # stopped at the first chunk past the limit, not after reading it all
    assert list(upload.uploads_dir(ws).iterdir()) == []


def test_empty_file_refused(ws: Workspace):
    with pytest.raises(DataError, match="the file is empty"):
        upload.save_upload(ws, io.BytesIO(b""), "empty.png", limit_bytes=100)
    assert list(upload.uploads_dir(ws).iterdir()) == []


def test_delete_only_touches_uploads(ws: Workspace, tmp_path: Path):
    saved = upload.save_upload(ws, io.BytesIO(b"abc"), "a.png", limit_bytes=100)
    other = tmp_path / "dataset-slide.svs"
    other.write_bytes(b"slide")
    assert upload.delete_upload(ws, other) is False and other.exists()
    assert upload.delete_upload(ws, saved.path) is True and not saved.path.exists()


def test_keep_moves_to_kept_by_hash_and_is_not_stale(ws: Workspace):
    first = upload.save_upload(ws, io.BytesIO(b"same"), "a.svs", limit_bytes=100)
    second = upload.save_upload(ws, io.BytesIO(b"same"), "b.svs", limit_bytes=100)
    kept = upload.keep_upload(ws, first)
    assert kept.path == ws.root / "uploads" / "kept" / f"{first.sha256}.svs" and kept.path.read_bytes() == b"same"
    assert upload.keep_upload(ws, second).path == kept.path and not second.path.exists()
    assert upload.delete_upload(ws, kept.path) is False and kept.path.exists()
    old = time.time() - 3 * 24 * 3600
    os.utime(kept.path, (old, old))
    assert upload.remove_stale_uploads(ws) == 0 and kept.path.exists()


def test_stale_uploads_removed_recent_ones_stay(ws: Workspace):
    old = upload.save_upload(ws, io.BytesIO(b"old"), "old.svs", limit_bytes=100)
    new = upload.save_upload(ws, io.BytesIO(b"new"), "new.svs", limit_bytes=100)
    stamp = time.time() - 2 * upload.STALE_AFTER_S
    os.utime(old.path, (stamp, stamp))
    assert upload.remove_stale_uploads(ws) == 1
    assert not old.path.exists() and new.path.exists()


def test_upload_limit_in_config_is_at_least_one_gigabyte():
    config = tomllib.loads((REPO_ROOT / ".streamlit" / "config.toml").read_text())
    assert config["server"]["maxUploadSize"] >= 1024  # megabytes: GTEx slides are hundreds of MB
