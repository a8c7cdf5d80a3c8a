"""An uploaded slide on disk: streamed in chunks to a private temporary file under the workspace, hashed as it
is written, size-limited; the user's file name only picks the (whitelisted) extension and is never a path.

The Predict page hands `save_upload` the upload's file object; the prediction worker deletes the file when it
ends unless the user keeps it (`keep_upload`), and `remove_stale_uploads` clears what an abandoned session left.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from core.base.config import Workspace
from core.base.errors import DataError
from core.data.slides import SLIDE_EXTENSIONS

CHUNK_BYTES = 8 * 1024 * 1024  # read and hash 8 MiB at a time: flat memory for a GB-size slide
STALE_AFTER_S = 24 * 3600  # an upload nobody predicted or kept for a day is an abandoned session's
UPLOADS = "uploads"
KEPT = "kept"
_PREFIX = "upload-"


@dataclass(frozen=True)
class Upload:
    """One saved upload: where it is, its content hash and size, and the name the user gave it (display only)."""

    path: Path
    sha256: str
    size: int
    name: str

    @property
    def extension(self) -> str:
        return upload_extension(self.path.name) or self.path.suffix


def uploads_dir(ws: Workspace) -> Path:
    """The workspace's private upload folder (owner-only permissions)."""
    folder = ws.root / UPLOADS
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(folder, 0o700)
    return folder


def upload_extension(filename: str) -> str | None:
    """The slide extension of `filename` (lower case, longest match: `.ome.tiff` before `.tiff`), or None when it
    is not one the app reads."""
    lower = filename.strip().lower()
    for extension in SLIDE_EXTENSIONS:
        if lower.endswith(extension) and len(lower) > len(extension):
            return extension
    return None


def describe_size(size: int) -> str:
    """Bytes as people read them: 1.9 MB, 4.0 GB."""
    for unit, scale in (("GB", 1024**3), ("MB", 1024**2), ("KB", 1024)):
        if size >= scale:
            return f"{size / scale:.1f} {unit}"
    return f"{size} bytes"


def check_upload_name(filename: str, size: int | None, limit_bytes: int) -> str:
    """The extension to save under; DataError naming the file when its type or (announced) size is refused."""
    extension = upload_extension(filename)
    if extension is None:
        kinds = ", ".join(sorted({e.lstrip(".").upper() for e in SLIDE_EXTENSIONS}))
        raise DataError(filename, f"not a slide file: its extension is not one the app reads ({kinds})")
    if size is not None and size > limit_bytes:
        raise DataError(filename, f"the file is {describe_size(size)}, over the upload limit of "
                                  f"{describe_size(limit_bytes)} (server.maxUploadSize in .streamlit/config.toml)")
    return extension


def save_upload(ws: Workspace, stream: BinaryIO, filename: str, limit_bytes: int,
                size: int | None = None, chunk_bytes: int = CHUNK_BYTES) -> Upload:
    """Copy `stream` to a new private file in `uploads_dir(ws)` that keeps the file's slide extension, hashing
    it (SHA-256) as it is written. Refused before writing when the name's extension is not a slide's or the
    announced `size` is over `limit_bytes`; stopped (and the partial file deleted) as soon as the bytes written
    pass the limit. An empty file is refused too. Every refusal is a DataError naming `filename`."""
    extension = check_upload_name(filename, size, limit_bytes)
    handle, temp = tempfile.mkstemp(prefix=_PREFIX, suffix=extension, dir=uploads_dir(ws))  # mode 0600
    path = Path(temp)
    digest = hashlib.sha256()
    written = 0
    try:
        with os.fdopen(handle, "wb") as out:
            while chunk := stream.read(chunk_bytes):
                written += len(chunk)
                if written > limit_bytes:
                    raise DataError(filename, f"the file is over the upload limit of {describe_size(limit_bytes)} "
                                              "(server.maxUploadSize in .streamlit/config.toml)")
                digest.update(chunk)
                out.write(chunk)
        if written == 0:
            raise DataError(filename, "the file is empty")
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    return Upload(path=path, sha256=digest.hexdigest(), size=written, name=Path(filename).name)


def is_upload(ws: Workspace, path: str | Path) -> bool:
    """Whether `path` is a temporary upload of this workspace (not a kept one, not a dataset slide)."""
    path = Path(path).resolve()
    return path.parent == uploads_dir(ws).resolve() and path.name.startswith(_PREFIX)


def delete_upload(ws: Workspace, path: str | Path) -> bool:
    """Delete a temporary upload (never anything else: a dataset slide or a kept upload is left alone)."""
    if not is_upload(ws, path):
        return False
    Path(path).unlink(missing_ok=True)
    return True


def keep_upload(ws: Workspace, upload: Upload) -> Upload:
    """Move an upload to `uploads/kept/<sha256><extension>` (no longer deleted); the same content kept twice is
    one file."""
    kept_dir = uploads_dir(ws) / KEPT
    kept_dir.mkdir(mode=0o700, exist_ok=True)
    target = kept_dir / f"{upload.sha256}{upload.extension}"
    if upload.path.resolve() == target.resolve():
        return upload
    if target.exists():
        delete_upload(ws, upload.path)
    else:
        os.replace(upload.path, target)
    return Upload(path=target, sha256=upload.sha256, size=upload.size, name=upload.name)


def remove_stale_uploads(ws: Workspace, older_than_s: float = STALE_AFTER_S) -> int:
    """Delete temporary uploads not touched for `older_than_s` (sessions that left before predicting); kept
    uploads stay. Returns how many were deleted."""
    cutoff = time.time() - older_than_s
    removed = 0
    for path in uploads_dir(ws).glob(f"{_PREFIX}*"):
        try:
            if path.is_file() and path.stat().st_mtime < cutoff:
                path.unlink()
                removed += 1
        except FileNotFoundError:
            continue
    return removed
