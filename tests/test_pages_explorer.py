"""The Embeddings explorer page through AppTest: a cached map draws, a missing one is offered as a job, and an
injected selection opens the linked panel."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from core.base.config import Workspace, workspace
from core.data.dataset import load_cohort
from core.demo import ensure_demo_cohort
from core.embed import compute as embed
from core.embed.compute import SlideEmbeddings
from core.maps import jobs as map_jobs
from core.maps.jobs import MapRequest, points_for
from core.maps.reduce import MapParams, cached_map

APP = str(Path(__file__).resolve().parents[1] / "app.py")
PAGE = "pages/explorer.py"
TINY = {"n_donors": 4, "n_tissues": 3, "slide_size": (1024, 1024), "n_genes": 300, "workers": 1}


@pytest.fixture(scope="module")
def explorer_ws(tmp_path_factory: pytest.TempPathFactory) -> Workspace:
    ws = workspace(tmp_path_factory.mktemp("explorer") / "workspace")
    ensure_demo_cohort(ws, **TINY)
    return ws


@pytest.fixture
def app_env(explorer_ws: Workspace, monkeypatch: pytest.MonkeyPatch) -> Workspace:
    monkeypatch.setenv("HISTOGENE_WORKSPACE", str(explorer_ws.root))
    monkeypatch.delenv("HISTOGENE_DATA", raising=False)
    return explorer_ws


def _fake_slide_embeddings(ws: Workspace) -> SlideEmbeddings:
    cohort = load_cohort(ws.demo_dir, ws)
    slides = cohort.samples[cohort.samples["has_slide"]].sort_values("sample_id")
    codes = slides["tissue"].astype("category").cat.codes.to_numpy()
    rng = np.random.default_rng(0)
    values = (np.eye(8)[codes] * 5 + rng.normal(size=(len(slides), 8))).astype(np.float32)  # tissues apart
    return SlideEmbeddings(slides["sample_id"].to_numpy(dtype=str), values, "fake-source",
                           tile_counts=np.ones(len(slides), int))


def _precompute(ws: Workspace, request: MapRequest) -> None:
    cohort = load_cohort(ws.demo_dir, ws)
    points = points_for(ws, ws.demo_dir, cohort, request)
    cached_map(ws, points.values, request.params, input_key=points.key)


def _open(method: str = "pca", level: str | None = None) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=120)
    at.run()
    at.switch_page(PAGE)
    at.run()
    if level:
        at.radio(key="A-level").set_value(level).run()
    at.radio(key="A-method").set_value(method).run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def test_explorer_draws_a_cached_genes_map_with_scores_and_exports(app_env):
    _precompute(app_env, MapRequest(level="genes", params=MapParams(method="pca")))
    at = _open("pca")
    assert at.title[0].value == "Embeddings explorer"
    assert at.radio(key="A-level").value == "genes"  # no trained run yet: the level that needs no embeddings
    charts = at.get("plotly_chart")
    assert charts, "no map drawn"
    labels = {m.label for m in at.metric}
    assert {"Silhouette by tissue", "kNN tissue accuracy", "kNN baseline"} <= labels
    downloads = {d.proto.label for d in at.get("download_button")}
    assert {"CSV", "HTML figure"} <= downloads and "AnnData .h5ad" not in downloads  # h5ad: slide level only
    mapped = _drawn(at)
    assert len(mapped) > 3 and any(f"{len(mapped):,} points." in c.value for c in at.caption)
    at.number_input(key="A-draw").set_value(3).run()  # draw a seeded subset of the map, computed on all
    assert not at.exception
    drawn = _drawn(at)
    assert len(drawn) == 3 and all(mapped[row] == hover for row, hover in drawn.items())  # rows of the full set
    assert any(f"{len(mapped):,} points mapped, a seeded random 3 drawn" in c.value for c in at.caption)
    assert at.number_input(key="A-draw").set_value(0).run().get("plotly_chart") and len(_drawn(at)) == len(mapped)


def _drawn(at: AppTest) -> dict[int, str]:
    """The map as the browser gets it: each point's row number (customdata, a typed array) -> its hover text."""
    import base64
    import json

    spec = json.loads(at.get("plotly_chart")[0].proto.spec)
    drawn = {}
    for trace in spec["data"]:
        rows = np.frombuffer(base64.b64decode(trace["customdata"]["bdata"]), dtype=trace["customdata"]["dtype"])
        drawn.update(zip(rows.tolist(), trace["hovertext"], strict=True))
    return drawn


def _select(at: AppTest, sample: str) -> None:
    """A click on the drawn point whose hover names `sample`, as plotly reports it (its row in customdata)."""
    row = next(r for r, hover in _drawn(at).items() if hover.startswith(f"{sample}<br>"))
    at.session_state["A-map"] = {"selection": {"points": [{"curve_number": 0, "point_index": 0, "customdata": row}],
                                               "point_indices": [0], "box": [], "lasso": []}}


def test_explorer_offers_a_background_job_for_a_missing_map(app_env, monkeypatch):
    launched = []
    monkeypatch.setattr(map_jobs, "launch_map", lambda ws, root, request: launched.append(request))
    at = _open("tsne")
    assert any("not computed yet" in i.value for i in at.info)
    assert not at.get("plotly_chart")
    at.button(key="A-go").click().run()
    assert not at.exception
    assert len(launched) == 1 and launched[0].level == "genes" and launched[0].params.method == "tsne"


def test_injected_selection_on_the_slide_map_opens_the_linked_panel(app_env, monkeypatch):
    fake = _fake_slide_embeddings(app_env)
    monkeypatch.setattr(embed, "cached_slide_embeddings", lambda ws, data_dir, source: fake)
    at = _open("pca", level="slides")
    assert at.selectbox(key="A-kind").value == "Random weights"
    source = map_jobs.MapRequest(level="slides", params=MapParams(method="pca"),
                                 source=_source_of(at)).checked()
    _precompute(app_env, source)
    at.run()
    assert at.get("plotly_chart") and not at.exception
    assert "AnnData .h5ad" in {d.proto.label for d in at.get("download_button")}
    chosen = str(fake.sample_ids[2])
    tissue = load_cohort(app_env.demo_dir, app_env).samples.set_index("sample_id").loc[chosen, "tissue"]
    _select(at, chosen)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert any(s.value == "Selection" for s in at.subheader)
    assert at.selectbox(key="selected-sample").value == chosen
    assert any(tissue in m.value for m in at.markdown)
    assert at.dataframe, "top expressed genes table missing"


def _source_of(at: AppTest):
    from core.embed.features import FeatureSource

    return FeatureSource.random(at.selectbox(key="A-arch").value, int(at.number_input(key="A-seed").value),
                                int(at.number_input(key="A-size").value))


def test_selecting_one_tile_shows_its_image_and_its_slide_with_the_tile_outlined(app_env, monkeypatch):
    from core.embed.compute import TileEmbeddings, selected_tiles
    from core.tiles.index import TilingParams, build_tile_index

    cohort = load_cohort(app_env.demo_dir, app_env)
    index = build_tile_index(cohort.samples[cohort.samples["has_slide"]], TilingParams(), app_env, workers=1).index
    tiles = selected_tiles(index)
    values = np.random.default_rng(0).normal(size=(len(tiles), 6)).astype(np.float32)
    fake = TileEmbeddings(tiles["tile_id"].to_numpy(), tiles["sample_id"].to_numpy(), values, "fake-tiles",
                          tiles, path=None)
    monkeypatch.setattr(embed, "cached_tile_embeddings", lambda ws, data_dir, source: fake)
    at = _open("pca", level="tiles")
    _precompute(app_env, MapRequest(level="tiles", params=MapParams(method="pca"), source=_source_of(at)))
    at.run()
    assert at.get("plotly_chart") and not at.exception
    colours = at.selectbox(key="A-colour").options
    assert "QC: blur" in colours  # QC metrics joined from the tile index
    chosen = tiles.iloc[3]
    assert _drawn(at)[3] == f"{chosen['sample_id']}<br>{chosen['tissue']}"  # row 3 of the map is this tile
    at.session_state["A-map"] = {"selection": {"points": [{"curve_number": 1, "point_index": 0, "customdata": 3}],
                                               "point_indices": [0], "box": [], "lasso": []}}
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert any("1 tile(s) selected" in m.value for m in at.markdown)
    assert len(at.get("image")) >= 1, [c.value for c in at.caption]  # the tile image
    assert f"{chosen['sample_id']} · {chosen['tissue']}" in str(at.get("image")[0].proto)  # of the chosen tile
    assert len(at.get("plotly_chart")) >= 3  # map, PCA curve, slide thumbnail with the tile outlined


def test_separation_across_epochs_shows_what_is_scored_and_offers_the_rest(tmp_path, monkeypatch):
    """A trained run: the chart of the scored epochs (read from the cache, never computed by the page), and a
    job for the spread of epochs not scored yet."""
    import json

    import pandas as pd

    from core.embed import jobs as embed_jobs
    from core.embed import separability as separation

    ws = workspace(tmp_path / "workspace")
    ensure_demo_cohort(ws, **TINY)
    monkeypatch.setenv("HISTOGENE_WORKSPACE", str(ws.root))
    monkeypatch.delenv("HISTOGENE_DATA", raising=False)
    run = ws.runs_dir / "20260101-000000-test"
    (run / "checkpoints").mkdir(parents=True)
    (run / "config.json").write_text(json.dumps({"arch": "efficientnet_b0", "image_size": 32, "epochs": 12,
                                                 "classes": ["Liver", "Lung"]}))
    for epoch in range(1, 13):
        (run / "checkpoints" / f"epoch_{epoch:03d}.pt").write_bytes(b"not read by this page")
    scored = pd.DataFrame({"epoch": [0, 1, 12], "source": ["random", "checkpoint", "checkpoint"],
                           "label": ["random", "e1", "e12"], "silhouette": [-0.3, 0.1, 0.5],
                           "knn_accuracy": [0.2, 0.5, 0.9], "chance_accuracy": [0.1] * 3,
                           "tile_silhouette": [-0.4, 0.0, 0.3], "tile_knn_accuracy": [0.2, 0.4, 0.8],
                           "tile_chance_accuracy": [0.1] * 3, "tiles_scored": [50] * 3,
                           "val_acc": [None, 0.4, 0.8], "test_acc": [None, 0.4, 0.8], "source_key": ["a", "b", "c"]})
    monkeypatch.setattr(separation, "scored_epochs", lambda ws_, data_dir, run_dir: scored)
    launched = []
    monkeypatch.setattr(embed_jobs, "launch_separation_across_epochs",
                        lambda ws_, root, run_dir, epochs=None: launched.append((run_dir, epochs)))
    at = AppTest.from_file(APP, default_timeout=120)
    at.run()
    at.switch_page(PAGE)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert at.selectbox(key="A-kind").value == "Trained run"
    assert any(s.value == "Tissue separation across epochs" for s in at.subheader)
    assert "epochs-chart" in {c.key for c in at.get("plotly_chart")}
    chosen = at.multiselect(key="epochs-chosen")
    assert 1 not in chosen.value and 12 not in chosen.value and chosen.value  # scored ones are not offered again
    at.button(key="epochs-go").click().run()
    assert not at.exception
    assert launched == [(str(run), sorted(chosen.value))]


def test_map_scores_of_a_runs_baseline_use_its_held_out_donors_and_show_training_apart(tmp_path, monkeypatch):
    """Random weights compared with a run are scored on the run's validation + test donors' slides; the
    training donors' score is a labelled caption, not the metric."""
    import json

    import pandas as pd

    from core.embed.features import FeatureSource

    ws = workspace(tmp_path / "workspace")
    ensure_demo_cohort(ws, **TINY)
    monkeypatch.setenv("HISTOGENE_WORKSPACE", str(ws.root))
    monkeypatch.delenv("HISTOGENE_DATA", raising=False)
    fake = _fake_slide_embeddings(ws)
    monkeypatch.setattr(embed, "cached_slide_embeddings", lambda ws_, data_dir, source: fake)
    run = ws.runs_dir / "20260101-000000-test"
    (run / "checkpoints").mkdir(parents=True)
    (run / "config.json").write_text(json.dumps({"arch": "efficientnet_b0", "image_size": 32, "epochs": 1,
                                                 "classes": ["Liver", "Lung"]}))
    (run / "checkpoints" / "epoch_001.pt").write_bytes(b"not read by this page")
    samples = load_cohort(ws.demo_dir, ws).samples
    slides = samples[samples["has_slide"]]
    donors = sorted(slides["subject_id"].unique())
    split = {donors[0]: "train", donors[1]: "train", donors[2]: "validation", donors[3]: "test"}
    pd.DataFrame({"sample_id": slides["sample_id"], "subject_id": slides["subject_id"],
                  "split": slides["subject_id"].map(split)}).to_csv(run / "split.csv", index=False)
    held_out = int(slides["subject_id"].isin(donors[2:]).sum())
    at = _open("pca", level="slides")
    at.selectbox(key="A-kind").set_value("Random weights").run()
    source = FeatureSource.for_run(run, "random", seed=int(at.number_input(key="A-seed").value))
    _precompute(ws, MapRequest(level="slides", params=MapParams(method="pca"), source=source, run_dir=str(run)))
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert {"Silhouette by tissue", "kNN tissue accuracy", "kNN baseline"} <= {m.label for m in at.metric}
    captions = [c.value for c in at.caption]
    assert any(f"Scored on the {held_out:,} points of the run's held-out donors (validation + test)" in c
               and f"Training donors ({len(slides) - held_out:,} points" in c for c in captions), captions
