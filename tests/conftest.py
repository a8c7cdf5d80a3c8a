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

# With `--dist loadgroup` (make test / make check) xdist hands out one group at a time, in collection order. The
# longest groups go first so that both workers finish together (measured: each takes 1-4 minutes on 2 shared
# cores); the other groups keep their order. A stale entry only costs balance, never correctness.
LONGEST_FIRST = (
    "e2e-training", "tests/e2e/test_predict_upload.py", "tests/e2e/test_rankings.py",
    "tests/e2e/test_overview.py", "umap", "predict-workspace", "tests/test_embed.py", "tests/test_train.py",
    "tests/test_demo.py", "tests/test_pages.py", "tests/test_depthwise.py", "tests/test_layers.py",
)


def _xdist_group(item: pytest.Item) -> str:
    """A test's own xdist_group, else the worker-wide fixture it shares, else its module: a module's fixtures are
    then built by one worker only, as in a run without xdist."""
    own = [mark.args[0] if mark.args else mark.kwargs.get("name", "default")
           for mark in item.iter_markers("xdist_group")]
    if own:
        return "_".join(sorted(map(str, own)))
    if "predict_workspace" in item.fixturenames:  # ~30 s to build: once per run, not once per worker
        return "predict-workspace"
    return item.nodeid.split("::")[0]


@pytest.hookimpl(tryfirst=True)  # before xdist appends the group to each test's id
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if not (getattr(config.option, "loadgroup", False) or config.getoption("dist", "no") == "loadgroup"):
        return
    for item in items:
        if not any(item.iter_markers("xdist_group")):
            item.add_marker(pytest.mark.xdist_group(_xdist_group(item)))

    def rank(item: pytest.Item) -> int:
        group = _xdist_group(item)
        return next((i for i, name in enumerate(LONGEST_FIRST) if group == name), len(LONGEST_FIRST))

    items.sort(key=rank)  # stable: each group keeps its tests' order


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
