"""Shared fixtures: the real test files and a throw-away workspace."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from core.base.config import Workspace, workspace

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


@pytest.fixture(scope="session")
def predict_workspace(tmp_path_factory: pytest.TempPathFactory):
    """(workspace, run folder, request) of tests/predict_helpers, built once per test session (~30 s on 2 shared
    cores): a tiny demo cohort, a finished run with random-weight checkpoints and its gene ranking. Tests that
    change it (extra runs, tiling settings) put it back."""
    from tests.predict_helpers import make_predict_workspace

    return make_predict_workspace(tmp_path_factory.mktemp("predict-shared") / "workspace")
