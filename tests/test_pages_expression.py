"""The Overview page on a dataset whose GCT is too big to parse in the server: a background job loads it."""

from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

import core.data.expression as expression_module
from core.__main__ import main
from core.base.config import workspace
from core.data import jobs as load_jobs
from tests.test_expression import _dataset

APP = str(Path(__file__).resolve().parents[1] / "app.py")


def _overview() -> AppTest:
    at = AppTest.from_file(APP, default_timeout=120)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def test_overview_leaves_a_big_gct_to_the_load_job_and_picks_it_up(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    root = tmp_path / "data"
    _dataset(root)
    ws = workspace(tmp_path / "ws")
    monkeypatch.setenv("HISTOGENE_WORKSPACE", str(ws.root))
    monkeypatch.setenv("HISTOGENE_DATA", str(root))
    monkeypatch.setattr(load_jobs, "PAGE_PARSE_LIMIT_BYTES", 0)  # every GCT counts as big
    real_parse = expression_module._parse_gct
    monkeypatch.setattr(expression_module, "_parse_gct", lambda *a, **k: pytest.fail("the page parsed the GCT"))
    launched: list[tuple[str, str]] = []
    monkeypatch.setattr(load_jobs, "launch_load", lambda w, data: launched.append((str(w.root), str(data))))

    at = _overview()
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Tissues"] == "3" and metrics["With expression"] == "loading"  # the CSV is shown meanwhile
    assert launched == [(str(ws.root), str(root))]
    assert any("being loaded in a background job" in i.value for i in at.info)

    monkeypatch.setattr(expression_module, "_parse_gct", real_parse)
    assert main(["--workspace", str(ws.root), "load", "--data", str(root)]) == 0
    monkeypatch.setattr(expression_module, "_parse_gct", lambda *a, **k: pytest.fail("the page parsed the GCT"))

    at = _overview()
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["With expression"] == "9"
    assert not any("being loaded" in i.value for i in at.info)
    assert any(n.label.startswith("Expressed") for n in at.number_input)  # the Genes tab drew its filters
    assert len(launched) == 1
