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

# Under xdist (make test / make check: -n auto) a worker takes one work group at a time, in collection order. A
# group is a module (its module fixtures are then built once, as without xdist), except for modules that share
# something expensive per process. xdist's own `--dist loadgroup` marks do not group under pytest 9.2 (it renames
# test ids, which pytest 9.2 ignores), so the groups are made here, from the test ids.
SHARED_GROUPS = (  # (test id prefix, group), first match wins
    ("tests/test_predict.py::test_on_a_umap_map", "umap"),  # UMAP compiles ~1 min of numba code per process
    ("tests/test_predict.py::test_a_reference_without_the_slides_donor_places_it_among_the_other_slides_on_the_umap",
     "umap"),
    ("tests/test_reduce.py", "umap"),
    ("tests/test_predict.py", "predict-workspace"),  # the session's predict_workspace below: ~30 s to build
    ("tests/test_pages_predict.py", "predict-workspace"),
)
# The longest groups go first so that both workers finish together (each takes 1-4 minutes on 2 shared cores);
# the other groups keep their order. A stale entry only costs balance, never correctness.
LONGEST_FIRST = (
    "tests/e2e/test_training.py", "tests/e2e/test_predict_upload.py", "tests/e2e/test_rankings.py",
    "tests/e2e/test_overview.py", "umap", "predict-workspace", "tests/test_embed.py", "tests/test_train.py",
    "tests/test_demo.py", "tests/test_pages.py", "tests/test_depthwise.py", "tests/test_layers.py",
)


def work_group(nodeid: str) -> str:
    """The xdist work group of a test id: a shared group, else its module."""
    return next((group for prefix, group in SHARED_GROUPS if nodeid.startswith(prefix)), nodeid.split("::")[0])


def _groups_scheduled(config: pytest.Config) -> bool:
    return config.getoption("dist", "no") in ("load", "loadgroup")


def pytest_xdist_make_scheduler(config: pytest.Config, log):
    """xdist's scope scheduler with work_group as the scope, in collection order."""
    if not _groups_scheduled(config):
        return None  # an explicit other --dist: xdist's own
    from xdist.scheduler import LoadScopeScheduling

    class GroupScheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return work_group(nodeid)

    config.option.loadscopereorder = False  # keep LONGEST_FIRST's order, not "most tests first"
    return GroupScheduling(config, log)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if not os.environ.get("PYTEST_XDIST_WORKER"):  # an xdist worker: the scheduler hands out groups in this order
        return

    def rank(item: pytest.Item) -> int:
        group = work_group(item.nodeid)
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
