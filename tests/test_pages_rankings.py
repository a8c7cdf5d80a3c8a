"""The Gene rankings page through AppTest: a cached ranking draws its headline, table, gene detail and the
two-source comparison; a missing one is offered as a background job; bad input is a message, not a traceback.

Embeddings are faked (no network runs here): a trained run's two checkpoints exist only as files, and
core.embed.compute's cache lookup returns vectors tied to a few genes' expression for them."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from core.base.config import Workspace, workspace
from core.data.dataset import load_cohort
from core.data.genes import log_tpm
from core.demo import ensure_demo_cohort
from core.embed import compute as embed
from core.embed.compute import SlideEmbeddings
from core.embed.features import FeatureSource
from core.ranking import jobs as rank_jobs
from core.ranking.cv import RankParams
from core.ranking.inputs import ranking_inputs
from core.ranking.store import rank_inputs

APP = str(Path(__file__).resolve().parents[1] / "app.py")
PAGE = "pages/rankings.py"
TINY = {"n_donors": 6, "n_tissues": 3, "slide_size": (1024, 1024), "n_genes": 300, "workers": 1}
RUN_ID = "20261129-0100-rank"
LINKED_GENES = 6  # genes the fake trained embedding carries


@pytest.fixture(scope="module")
def rank_ws(tmp_path_factory: pytest.TempPathFactory) -> Workspace:
    ws = workspace(tmp_path_factory.mktemp("rankings") / "workspace")
    ensure_demo_cohort(ws, **TINY)
    run = ws.runs_dir / RUN_ID
    (run / "checkpoints").mkdir(parents=True)
    (run / "config.json").write_text(json.dumps({"arch": "efficientnet_b0", "image_size": 64, "epochs": 2}))
    for epoch in (1, 2):
        (run / "checkpoints" / f"epoch_{epoch:03d}.pt").write_bytes(f"fake checkpoint {epoch}".encode())
    return ws


def _fake_embeddings(ws: Workspace):
    """cached_slide_embeddings stand-in: epoch 2 carries LINKED_GENES genes' expression, epoch 1 half as
    much, random weights only noise."""
    cohort = load_cohort(ws.demo_dir, ws)
    slides = cohort.samples[cohort.samples["has_slide"] & cohort.samples["has_expression"]].sort_values("sample_id")
    ids = slides["sample_id"].to_numpy(dtype=str)
    expression = cohort.expression
    columns = pd.Index(np.asarray(expression.sample_ids, dtype=str)).get_indexer(ids)
    values = log_tpm(np.asarray(expression.values, dtype=np.float32)[:, columns])
    spread = values.std(axis=1)
    linked = np.argsort(-spread)[:LINKED_GENES]
    signal = values[linked].T
    signal = (signal - signal.mean(0)) / (signal.std(0) + 1e-6)

    def fake(_ws, _data_dir, source: FeatureSource) -> SlideEmbeddings:
        rng = np.random.default_rng(source.seed + 7 * (source.epoch or 0))
        noise = rng.normal(size=(len(ids), 12))
        weight = {"checkpoint": 1.0 if source.epoch == 2 else 0.5}.get(source.kind, 0.0)
        x = np.hstack([weight * 3 * signal, noise]).astype(np.float32)
        return SlideEmbeddings(ids, x, source.key, tile_counts=np.ones(len(ids), int))

    return fake, [str(expression.gene_ids[i]) for i in linked]


@pytest.fixture(autouse=True)
def fresh_caches():
    """Streamlit's caches live in the process: one test's faked lookups must not answer the next test's."""
    import streamlit as st

    st.cache_resource.clear()
    st.cache_data.clear()


@pytest.fixture
def app_env(rank_ws: Workspace, monkeypatch: pytest.MonkeyPatch) -> Workspace:
    monkeypatch.setenv("HISTOGENE_WORKSPACE", str(rank_ws.root))
    monkeypatch.delenv("HISTOGENE_DATA", raising=False)
    fake, _ = _fake_embeddings(rank_ws)
    monkeypatch.setattr(embed, "cached_slide_embeddings", fake)
    monkeypatch.setattr(rank_jobs, "is_tiled", lambda ws, data_dir, cohort: True)  # the fake embeddings need none
    return rank_ws


def _page_params(ws: Workspace) -> RankParams:
    """What the page asks for by default on this cohort: folds capped by the donors."""
    donors = load_cohort(ws.demo_dir, ws).samples.query("has_slide")["subject_id"].nunique()
    return RankParams(folds=min(5, donors))


def _precompute(ws: Workspace, source: FeatureSource, params: RankParams) -> None:
    fake, _ = _fake_embeddings(ws)
    cohort = load_cohort(ws.demo_dir, ws)
    baseline = rank_jobs.baseline_source(source)
    inputs = ranking_inputs(cohort, fake(ws, None, source), fake(ws, None, baseline) if baseline else None)
    rank_inputs(ws, inputs, params)


def _run_source(ws: Workspace, epoch: int) -> FeatureSource:
    return FeatureSource.checkpoint(ws.runs_dir / RUN_ID, epoch)


def _open() -> AppTest:
    at = AppTest.from_file(APP, default_timeout=120)
    at.run()
    at.switch_page(PAGE)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def test_missing_ranking_is_offered_as_a_background_job(app_env, monkeypatch):
    launched = []
    monkeypatch.setattr(rank_jobs, "launch_ranking",
                        lambda ws, root, source, params, kernel_top=0: launched.append((source, params)))
    at = _open()
    assert at.title[0].value == "Gene rankings"
    assert at.selectbox(key="A-kind").value == "Trained run"
    at.number_input(key="rank-repeats").set_value(2).run()  # parameters nobody ranked with yet
    assert any("Not ranked yet" in i.value for i in at.info), [i.value for i in at.info]
    assert not at.dataframe
    at.button(key="A-go").click().run()
    assert not at.exception, [e.value for e in at.exception]
    assert len(launched) == 1
    source, params = launched[0]
    assert source.kind == "checkpoint" and source.epoch == 2 and params.repeats == 2


def test_a_failed_ranking_job_says_why(app_env):
    """A rank job that failed for exactly this request: its error and log on the page, the button again."""
    from core import jobs

    source, params = _run_source(app_env, 2), RankParams(folds=_page_params(app_env).folds, repeats=7)
    job_dir = app_env.jobs_dir / "rank-20261129-010000-failed"
    job_dir.mkdir(parents=True)
    (job_dir / "status.json").write_text(json.dumps({
        "kind": "rank", "id": job_dir.name, "state": jobs.FAILED, "started": "2026-11-29T01:00:00+00:00",
        "argv": rank_jobs.rank_argv(app_env.demo_dir, source, params), "error": "DataError: planted failure"}))
    (job_dir / "log.txt").write_text("Traceback ...\nDataError: planted failure\n")
    try:
        at = _open()
        at.number_input(key="rank-repeats").set_value(7).run()
        assert any("planted failure" in e.value for e in at.error), [e.value for e in at.error]
        assert at.button(key="A-go")
    finally:
        import shutil

        shutil.rmtree(job_dir)


def test_cached_ranking_draws_headline_table_detail_and_comparison(app_env):
    params = _page_params(app_env)
    _precompute(app_env, _run_source(app_env, 2), params)
    _, linked = _fake_embeddings(app_env)
    at = _open()
    labels = {m.label for m in at.metric}
    assert {"Random weights recover", "Genes with r > 0", "Median r > 0.5", "Median R² tissue only"} <= labels
    recovered = next(m for m in at.metric if m.label == "Genes recovered")
    assert int(recovered.value) >= 1, recovered.value  # the linked genes beat random weights
    table = at.dataframe[0].value
    assert {"Symbol", "Ensembl ID", "R²", "R² beyond tissue", "r", "FDR", "Recovered"} <= set(table.columns)
    assert set(table["Ensembl ID"].head(LINKED_GENES)) & set(linked), "the linked genes should rank on top"
    assert "Download the full ranking (CSV)" in {d.proto.label for d in at.get("download_button")}
    # gene detail of the best gene: scatter coloured by tissue, per-tissue R², slide map and explorer link
    assert at.selectbox(key="rank-gene").value == table["Ensembl ID"].iloc[0]
    assert any(s.value == "Gene detail" for s in at.subheader)
    assert len(at.get("plotly_chart")) >= 4  # histogram, predicted vs observed, tissue R², slide map
    links = at.get("page_link")
    assert links and "explorer" in links[0].proto.page
    # search by symbol narrows the table
    symbol = str(table["Symbol"].iloc[3])
    at.text_input(key="rank-search").set_value(symbol).run()
    assert symbol in set(at.dataframe[0].value["Symbol"])
    assert len(at.dataframe[0].value) < len(table)
    # ordered by R² beyond tissue
    at.text_input(key="rank-search").set_value("").run()
    at.radio(key="rank-order").set_value("r2_beyond_tissue").run()
    beyond = at.dataframe[0].value["R² beyond tissue"]
    assert beyond.is_monotonic_decreasing and len(beyond) == len(table)
    # a tissue adds its within-tissue R² column
    at.text_input(key="rank-search").set_value("").run()
    tissue = at.selectbox(key="rank-tissue").options[1]
    at.selectbox(key="rank-tissue").set_value(tissue).run()
    assert f"R² in {tissue}" in at.dataframe[0].value.columns
    assert not at.exception, [e.value for e in at.exception]
    # two sources: epoch 1 against epoch 2
    _precompute(app_env, _run_source(app_env, 1), params)
    at.toggle(key="rank-compare").set_value(True).run()
    at.selectbox(key="B-epoch").set_value(1).run()
    assert not at.exception, [e.value for e in at.exception]
    compare = {m.label: m.value for m in at.metric}
    assert {"Genes compared", "Improved by B", "Paired Wilcoxon p"} <= set(compare)
    assert int(compare["Genes compared"].replace(",", "")) == len(table)


def test_selecting_a_table_row_opens_that_gene(app_env):
    _precompute(app_env, _run_source(app_env, 2), _page_params(app_env))
    at = _open()
    table = at.dataframe[0].value
    at.session_state["rank-table"] = {"selection": {"rows": [2], "columns": [], "cells": []}}
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert at.selectbox(key="rank-gene").value == table["Ensembl ID"].iloc[2]


def test_the_epoch_defaults_to_the_one_selected_on_validation(app_env):
    summary = app_env.runs_dir / RUN_ID / "summary.json"
    summary.write_text(json.dumps({"status": "done", "epochs_done": 2, "selected_epoch": 1}))
    try:
        at = _open()
        assert at.selectbox(key="A-epoch").value == 1
    finally:
        summary.unlink()


def test_a_reload_takes_the_source_and_parameters_from_the_url(app_env):
    at = AppTest.from_file(APP, default_timeout=120)
    at.run()
    at.switch_page(PAGE)
    at.query_params.update({"kind": "Trained run", "run": RUN_ID, "epoch": "1", "folds": "3", "repeats": "2",
                            "components": "no"})
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert at.selectbox(key="A-epoch").value == 1
    assert at.number_input(key="rank-folds").value == 3 and at.number_input(key="rank-repeats").value == 2
    assert at.number_input(key="rank-components").value == RankParams().components  # a bad value is left out
    at.number_input(key="rank-repeats").set_value(4).run()
    assert at.query_params["repeats"] == "4" and at.query_params["epoch"] == "1"


def test_untiled_slides_are_said_so_and_the_job_offered(rank_ws, monkeypatch):
    monkeypatch.setenv("HISTOGENE_WORKSPACE", str(rank_ws.root))
    monkeypatch.delenv("HISTOGENE_DATA", raising=False)
    at = _open()
    assert any("not tiled yet" in i.value for i in at.info), [i.value for i in at.info]
    assert at.button(key="A-go")


def test_a_dataset_without_expression_gets_a_message(rank_ws, tmp_path, monkeypatch):
    data = tmp_path / "data"  # the demo's slides and histology CSV, without its expression matrix
    data.mkdir()
    for path in rank_ws.demo_dir.iterdir():
        if not path.name.endswith((".gct", ".gct.gz")):
            (data / path.name).symlink_to(path)
    monkeypatch.setenv("HISTOGENE_WORKSPACE", str(rank_ws.root))
    monkeypatch.setenv("HISTOGENE_DATA", str(data))
    at = _open()
    assert any("No expression file" in e.value for e in at.error), [e.value for e in at.error]


def test_the_explorer_link_colours_the_slide_map_by_the_gene(app_env):
    """The gene detail's link carries gene, level and source; the explorer opens map A with them."""
    from core.maps.jobs import MapRequest, points_for
    from core.maps.reduce import MapParams, cached_map

    _precompute(app_env, _run_source(app_env, 2), _page_params(app_env))
    at = _open()
    link = at.get("page_link")[0].proto
    assert "explorer" in link.page
    gene = at.selectbox(key="rank-gene").value
    cohort = load_cohort(app_env.demo_dir, app_env)
    request = MapRequest(level="slides", params=MapParams(method="pca"), source=_run_source(app_env, 2),
                         run_dir=str(app_env.runs_dir / RUN_ID))
    points = points_for(app_env, app_env.demo_dir, cohort, request)
    cached_map(app_env, points.values, request.params, input_key=points.key)
    explorer = AppTest.from_file(APP, default_timeout=120)
    explorer.run()
    explorer.switch_page("pages/explorer.py")
    explorer.query_params.update({"gene": gene, "level": "slides", "kind": "Trained run", "run": RUN_ID, "epoch": "2"})
    explorer.run()
    assert not explorer.exception, [e.value for e in explorer.exception]
    assert explorer.radio(key="A-level").value == "slides"
    assert explorer.selectbox(key="A-epoch").value == 2
    assert explorer.selectbox(key="A-colour").value == "gene"
    assert explorer.text_input(key="A-gene").value == gene
    assert explorer.get("plotly_chart"), "the slide map coloured by the gene is drawn"


def test_kernel_ridge_for_the_top_genes_runs_as_a_job_then_shows_beside_ridge(app_env, monkeypatch):
    """N > 0: a button launches the rank job with --nonlinear-top N; once the kernel ridge table is saved beside
    the ranking, the page shows the counts, the R² against R² figure and a table column for exactly those genes."""
    from core.ranking import nonlinear
    from core.ranking.store import load_ranking, ranking_key, rankings_dir

    top = 4
    params = _page_params(app_env)
    source = _run_source(app_env, 2)
    _precompute(app_env, source, params)
    launched = []
    monkeypatch.setattr(rank_jobs, "launch_ranking", lambda ws, root, src, prm, kernel_top=0:
                        launched.append((src, prm, kernel_top)))
    at = _open()
    assert not any(s.value.startswith("Kernel ridge") for s in at.subheader)  # 0: off
    assert "R² kernel ridge" not in at.dataframe[0].value.columns
    at.number_input(key="rank-kernel").set_value(top).run()
    assert not at.exception, [e.value for e in at.exception]
    assert any("not fitted yet" in i.value for i in at.info), [i.value for i in at.info]
    at.button(key="kernel-go").click().run()
    assert launched and launched[0][0].key == source.key and launched[0][1] == params and launched[0][2] == top
    argv = rank_jobs.rank_argv(app_env.demo_dir, source, params, top)
    assert argv[argv.index("--nonlinear-top") + 1] == str(top)

    # what the job does: the kernel ridge of the ranking's best genes, saved in the ranking's folder
    fake, _ = _fake_embeddings(app_env)
    monkeypatch.setattr(embed, "slide_embeddings", fake)
    cohort = load_cohort(app_env.demo_dir, app_env)
    inputs = ranking_inputs(cohort, fake(app_env, None, source), fake(app_env, None, rank_jobs.baseline_source(source)))
    ranking = load_ranking(rankings_dir(app_env) / ranking_key(inputs, params))
    frame, cached = nonlinear.nonlinear_for_ranking(app_env, app_env.demo_dir, source, ranking, params, top)
    assert not cached and len(frame) == top
    again, cached = nonlinear.nonlinear_for_ranking(app_env, app_env.demo_dir, source, ranking, params, top)
    assert cached and again["r2_kernel"].to_numpy() == pytest.approx(frame["r2_kernel"].to_numpy())
    assert nonlinear.load_nonlinear(ranking.path, top + 1) is None  # another N is another entry
    try:
        at.run()
        assert not at.exception, [e.value for e in at.exception]
        metrics = {m.label: m.value for m in at.metric}
        assert metrics["Genes fitted"] == str(top)
        assert int(metrics["Better with kernel ridge"]) == int((frame["r2_kernel"] > frame["r2"]).sum())
        assert metrics["Median R² kernel ridge"] == f"{frame['r2_kernel'].median():.3f}"
        shown = at.dataframe[0].value
        fitted = shown[shown["R² kernel ridge"].notna()]
        assert set(fitted["Ensembl ID"]) == set(ranking.table.nlargest(top, "r2")["gene_id"])
        assert fitted.set_index("Ensembl ID")["R² kernel ridge"].to_dict() == pytest.approx(
            frame.set_index("gene_id")["r2_kernel"].to_dict())
        assert any(s.value.startswith(f"Kernel ridge beside ridge: the top {top}") for s in at.subheader)
        assert len(at.get("plotly_chart")) >= 5  # the kernel figure beside the page's own four
        assert at.query_params["kernel"] == str(top)
    finally:
        nonlinear.nonlinear_path(ranking.path, top).unlink()


def test_a_failed_kernel_ridge_job_is_told_apart_from_a_failed_ranking(app_env):
    """last_attempt: a rank job with --nonlinear-top counts for the ranking's own request (it ranked first), and
    for the kernel ridge only with the same N."""
    from core import jobs

    source, params = _run_source(app_env, 2), RankParams(folds=3, repeats=9)
    job_dir = app_env.jobs_dir / "rank-20261129-020000-kernel"
    job_dir.mkdir(parents=True)
    (job_dir / "status.json").write_text(json.dumps({
        "kind": "rank", "id": job_dir.name, "state": jobs.FAILED, "started": "2026-11-29T02:00:00+00:00",
        "argv": rank_jobs.rank_argv(app_env.demo_dir, source, params, 7), "error": "DataError: planted"}))
    try:
        assert rank_jobs.last_attempt(app_env, app_env.demo_dir, source, params)["error"] == "DataError: planted"
        assert rank_jobs.last_attempt(app_env, app_env.demo_dir, source, params, 7)["error"] == "DataError: planted"
        assert rank_jobs.last_attempt(app_env, app_env.demo_dir, source, params, 8) is None
        assert rank_jobs.last_attempt(app_env, app_env.demo_dir, source, RankParams(folds=3, repeats=8)) is None
    finally:
        import shutil

        shutil.rmtree(job_dir)
