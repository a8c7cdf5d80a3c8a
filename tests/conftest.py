"""Shared fixtures: the real test files and a throw-away workspace."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from core.config import Workspace, workspace

REPO_ROOT = Path(__file__).resolve().parents[1]
# No numba warm-up process per app start in tests (AppTest runs app.py once per test; 2 shared cores).
os.environ.setdefault("HISTOGENE_WARMUP", "0")
TESTDATA = REPO_ROOT.parent / "shared" / "testdata"


@pytest.fixture(scope="session")
def testdata() -> Path:
    """../shared/testdata from the repo root: the real SVS, GTEx CSV and GCT."""
    if not TESTDATA.is_dir():
        pytest.skip(f"real test files not found at {TESTDATA} (../shared/testdata is absent)")
    return TESTDATA


@pytest.fixture
def ws(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Workspace:
    """A fresh workspace in a temp folder, also exported for child processes."""
    monkeypatch.setenv("HISTOGENE_WORKSPACE", str(tmp_path / "workspace"))
    return workspace(tmp_path / "workspace")
