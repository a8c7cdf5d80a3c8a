"""Embeddings explorer: tile, slide, gene and unified maps from any checkpoint or feature model, linked views,
separation scores, two maps side by side, exports. Maps and embeddings are computed by background jobs."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import streamlit as st

from core import jobs
from core.base import DataError, JobBusyError
from core.embed import FeatureSource, checkpoint_epochs, epochs_to_score, held_out_of, scored_epochs, split_separation
from core.embed import jobs as embed_jobs
from core.maps import (
    QC_COLOUR_COLUMNS,
    MapParams,
    MapRequest,
    PointSet,
    export,
    gene_expression,
    launch_map,
    lookup_map,
    points_for,
    sample_top_genes,
    seeded_subset,
    tile_index_path,
)
from core.maps import figures as map_figures
from core.maps import jobs as map_jobs
from core.tiles import read_tile
from core.tiles import views as tile_views
from core.train import ARCHITECTURES
from pages import overview_cache
from pages.common import (
    compute_or_launch,
    dataset_dir,
    feature_source_controls,
    get_cohort,
    get_workspace,
    job_panel,
    runs_with_checkpoints,
)

ws = get_workspace()
root = dataset_dir()
cohort = get_cohort(root)

st.title("Embeddings explorer")
st.caption("What a network learned: tiles and slides as points, coloured by tissue, donor, split or a gene. "
           "Embeddings and maps are computed once in a background worker and cached.")

LEVEL_HELP = {"tiles": "one point per selected tile", "slides": "one point per slide (mean of its tiles)",
              "genes": "one point per sample, by filtered expression", "unified": "slide image + expression"}
COLOURS = {"tissue": "Tissue", "subject_id": "Donor", "sex": "Sex", "age_bracket": "Age bracket",
           "hardy_scale": "Hardy scale", "split": "Train / validation / test", "predicted_tissue": "Predicted tissue",
           "prediction": "Correct or wrong", "gene": "A gene's expression"}


def _runs_with_checkpoints() -> list[Path]:
    return runs_with_checkpoints(ws)


def _source_controls(prefix: str, column) -> tuple[FeatureSource | None, str | None]:
    """(feature source, run folder for the split) chosen in `column`; errors shown there."""
    source, run_dir = feature_source_controls(ws, prefix, column)
    return source, (str(run_dir) if run_dir is not None else None)


def map_controls(prefix: str, column) -> MapRequest | None:
    """The controls of one map; None while the choice is incomplete."""
    level = column.radio("Level", list(LEVEL_HELP), index=2 if not _runs_with_checkpoints() else 1,
                         horizontal=True, key=f"{prefix}-level", help=" · ".join(f"{k}: {v}" for k, v in
                                                                               LEVEL_HELP.items()))
    method = column.radio("Method", ["pca", "umap", "tsne"], horizontal=True, key=f"{prefix}-method",
                          format_func={"pca": "PCA", "umap": "UMAP", "tsne": "t-SNE"}.get)
    source, run_dir = (None, None)
    if level != "genes":
        source, run_dir = _source_controls(prefix, column)
        if source is None:
            return None
    defaults = MapParams()
    with column.expander("Map parameters"):
        pcs = st.slider("PCA components", 2, 100, defaults.pca_components, key=f"{prefix}-pcs")
        neighbours = st.slider("UMAP neighbours", 2, 100, defaults.n_neighbors, key=f"{prefix}-nn")
        min_dist = st.slider("UMAP min distance", 0.0, 1.0, defaults.min_dist, 0.05, key=f"{prefix}-md")
        perplexity = st.slider("t-SNE perplexity", 2.0, 100.0, defaults.perplexity, key=f"{prefix}-perp")
        seed = int(st.number_input("Layout seed", 0, 10_000, defaults.seed, key=f"{prefix}-mseed"))
        limit = int(st.number_input("Tiles: map a random subset (0 = all)", 0, 10_000_000, 0, 1000,
                                    key=f"{prefix}-sub", help="a seeded subset is embedded in the map; faster maps"))
        st.number_input("Points drawn: seeded subset of the map (0 = all)", 0, 10_000_000, DRAW_LIMIT, 10_000,
                        key=f"{prefix}-draw", help="the map is computed on every point; drawing fewer keeps a "
                                                   "200,000-tile map's reruns (colour, level) quick in the browser")
        weight = st.slider("Unified: image weight", 0.0, 1.0, 0.5, 0.05, key=f"{prefix}-w")
    params = MapParams(method=method, pca_components=pcs, n_neighbors=neighbours, min_dist=min_dist,
                       perplexity=perplexity, seed=seed)
    return MapRequest(level=level, params=params, source=source, run_dir=run_dir, limit=limit or None,
                      weight=weight)


def _job_stamp() -> tuple:
    """Changes when any background job ends, so cached 'not computed yet' answers are looked at again."""
    latest = jobs.list_jobs(ws)
    return tuple((job.id, job.status().get("state")) for job in latest[:3])


@st.cache_resource(show_spinner="Loading the points ...", max_entries=4)
def _points(data_dir: str, request: MapRequest, stamp: tuple) -> PointSet | None:
    return points_for(ws, data_dir, cohort, request)


DRAW_LIMIT = 50_000  # ~4 MB of figure per rerun; 200,000 points would be ~16 MB and seconds of CPU each time
SCORE_POINTS = 20_000  # kNN over 200,000 tiles would hold the page for minutes: score a seeded sample


@st.cache_data(show_spinner="Scoring tissue separation ...", max_entries=16)
def _scores(key: str, split_key: str | None, _points: PointSet, _held_out) -> dict:
    sample = _points.subset(SCORE_POINTS, seed=0)
    return split_separation(sample.values, sample.meta["tissue"], sample.meta["subject_id"],
                            sample.meta["sample_id"], _held_out)


def _tile_index() -> pd.DataFrame | None:
    """The saved tile index, cached by its file's stat: an index built after the page first ran is seen (a
    cache without a key would keep the None of a page opened before tiling until the server restarts)."""
    path = tile_index_path(ws, root, cohort)
    return overview_cache.tile_index(overview_cache.index_key(path)) if path is not None else None


def _colour(prefix: str, column, points: PointSet) -> tuple[str, np.ndarray | None, str]:
    options = [c for c in COLOURS if c in points.meta.columns or c == "gene"]
    options += [c for c in QC_COLOUR_COLUMNS if c in points.meta.columns]
    choice = column.selectbox("Colour by", options, format_func=lambda c: COLOURS.get(c, f"QC: {c}"),
                              key=f"{prefix}-colour")
    if choice != "gene":
        return choice, None, COLOURS.get(choice, choice)
    query = column.text_input("Gene (symbol or Ensembl ID)", str(cohort.expression.symbols[0])
                              if len(cohort.expression.symbols) else "", key=f"{prefix}-gene")
    try:
        label, by_sample = gene_expression(cohort, query)
    except DataError as exc:
        column.warning(str(exc))
        return "tissue", None, "Tissue"
    return "gene", points.meta["sample_id"].map(by_sample).to_numpy(dtype=float), label


def draw_map(prefix: str, column, request: MapRequest) -> tuple[PointSet | None, list[str]]:
    """One map with its scores and exports; returns the points and the ids of the selected ones."""
    active = jobs.active_job(ws)
    try:
        points = _points(str(root), request, _job_stamp())
    except DataError as exc:
        column.error(str(exc))
        return None, []
    what = "embeddings and map" if points is None else "map"

    def not_computed() -> None:
        column.info(f"The {request.level} {request.params.method.upper()} {what} for "
                    f"{request.source.label if request.source else 'expression'} is not computed yet.")

    def computing(job: jobs.Job) -> None:
        with column:
            job_panel(job.dir, rerun_when_done=True)
        not_computed()

    mapped = compute_or_launch(
        lambda: _map(points.key, request.params) if points is not None else None,
        lambda: active if active is not None and active.kind in (map_jobs.KIND, embed_jobs.KIND) else None,
        None, lambda: launch_map(ws, root, request), f"Compute the {what}", where=column, key=f"{prefix}-go",
        missing=not_computed, busy=active, show_job=computing)
    if mapped is None:
        return None, []
    colour, values, colour_label = _colour(prefix, column, points)
    title = f"{request.level} · {request.params.method.upper()} · {points.label or 'expression'}"
    limit = int(st.session_state.get(f"{prefix}-draw", DRAW_LIMIT))
    fig = _figure(points.key, mapped.key, str(request.run_dir), colour if values is None else colour_label, limit,
                  title, bool(st.session_state.get("compare")), mapped.coords, points.meta, values)
    shown = sum(len(trace.x) for trace in fig.data)
    event = column.plotly_chart(fig, on_select="rerun", selection_mode=("points", "box", "lasso"),
                                config=map_figures.map_config(shown), key=f"{prefix}-map", width="stretch")
    drawn = f"{len(points):,} points" if shown == len(points) else \
        f"{len(points):,} points mapped, a seeded random {shown:,} drawn ('Points drawn' in Map parameters)"
    column.caption(f"{drawn}. Box or lasso select (toolbar) to open the linked panel below.")
    _score_line(column, points, request)
    with column.expander("PCA explained variance"):
        st.plotly_chart(_variance_figure(mapped.key, mapped.pca.explained_variance_ratio), width="stretch",
                        key=f"{prefix}-pca")
    _exports(prefix, column, request, points, mapped.coords, fig)
    return points, selected_ids(event, points)


class _NotComputed(Exception):
    """No cached map yet (an exception, so st.cache_resource keeps only the hits)."""


@st.cache_resource(show_spinner=False, max_entries=8)
def _cached_map(points_key: str, params: MapParams):
    mapped = lookup_map(ws, points_key, params)
    if mapped is None:
        raise _NotComputed
    return mapped


def _map(points_key: str, params: MapParams):
    """The cached map, read from disk once per server (a 200,000-point map with its 40 PCA components is
    ~35 MB to unpickle on every rerun otherwise), or None while it is not computed."""
    try:
        return _cached_map(points_key, params)
    except _NotComputed:
        return None


@st.cache_resource(show_spinner=False, max_entries=16)
def _figure(points_key: str, map_key: str, run_dir: str, colour: str, limit: int, title: str, side_by_side: bool,
            _coords: np.ndarray, _meta: pd.DataFrame, _values: np.ndarray | None):
    """The map figure of one (points, map, run whose split colours them, colour, drawn subset): switching back
    to a colour reuses it. `_values` (a gene's expression) is keyed by the colour label, which names the gene."""
    rows = seeded_subset(len(_meta), limit or None, seed=0)
    if len(rows) == len(_meta):
        fig = map_figures.map_scatter(_coords, _meta, colour, values=_values, title=title, legend_below=side_by_side)
    else:  # each point keeps its row in the full set as customdata, which selected_ids maps back to its id
        fig = map_figures.map_scatter(np.asarray(_coords)[rows], _meta.iloc[rows].reset_index(drop=True), colour,
                                      values=None if _values is None else np.asarray(_values)[rows], title=title,
                                      legend_below=side_by_side, rows=rows)
    # Frozen: st.plotly_chart's to_dict() deep-copies every point's arrays on each rerun otherwise.
    return overview_cache.frozen(fig)


@st.cache_resource(show_spinner=False, max_entries=16)
def _variance_figure(map_key: str, _ratio: np.ndarray):
    return overview_cache.frozen(map_figures.explained_variance(_ratio))


def _score_line(column, points: PointSet, request: MapRequest) -> None:
    """Scores of image features on the held-out donors of the chosen run (validation + test: never trained
    on), the training donors' in a caption; expression maps and runs without a split: every point."""
    if points.meta["tissue"].nunique() < 2:
        return
    held_out = held_out_of(request.run_dir) if request.source is not None and request.run_dir else None
    scores = _scores(points.key, held_out.key if held_out is not None else None, points, held_out)
    cols = column.columns(3)
    silhouette, knn, chance = scores.get("silhouette"), scores.get("knn_accuracy"), scores.get("chance_accuracy")
    cols[0].metric("Silhouette by tissue", f"{silhouette:.2f}" if silhouette is not None else "—")
    cols[1].metric("kNN tissue accuracy", f"{knn:.0%}" if knn is not None else "—",
                   help="k = 5 nearest neighbours from other donors (whole donors held out); "
                        f"on a seeded sample of {SCORE_POINTS:,} points for bigger sets")
    cols[2].metric("kNN baseline", f"{chance:.0%}" if chance is not None else "—",
                   help="Accuracy of always predicting the commonest training tissue, on the same folds.")
    fit = scores.get("training")
    if fit is not None:
        column.caption(f"Scored on the {scores['held_out_points']:,} points of the run's held-out donors "
                       f"(validation + test). Training donors ({fit['points']:,} points, seen in training): "
                       f"silhouette {_number(fit['silhouette'], '.2f')}, kNN {_number(fit['knn_accuracy'], '.0%')}.")


def _number(value: float | None, spec: str) -> str:
    return format(value, spec) if value is not None else "—"


def _exports(prefix: str, column, request: MapRequest, points: PointSet, coords: np.ndarray, fig) -> None:
    """Download buttons whose files are made only when clicked (a 200,000-tile CSV or the figure's HTML
    rebuilt on every rerun cost seconds per click elsewhere on the page)."""
    name = f"{request.level}-{request.params.method}"
    cols = column.columns(3)
    cols[0].download_button("CSV", lambda: export.coordinates_csv(points, coords), f"{name}.csv", "text/csv",
                            key=f"{prefix}-csv", on_click="ignore")
    cols[1].download_button("HTML figure", lambda: export.figure_html(fig), f"{name}.html", "text/html",
                            key=f"{prefix}-html", on_click="ignore")
    if request.level in ("slides", "unified"):
        cols[2].download_button("AnnData .h5ad", lambda: _h5ad(points, coords, request.params.method),
                                f"{name}.h5ad", "application/x-hdf5", key=f"{prefix}-h5ad", on_click="ignore")


def _h5ad(points: PointSet, coords: np.ndarray, method: str) -> bytes:
    from core.maps import genes_level

    try:
        genes = genes_level(cohort)
    except DataError:
        genes = None
    with tempfile.TemporaryDirectory() as folder:
        path = export.write_h5ad(Path(folder) / "slides.h5ad", points, {method: coords}, genes, points.label)
        return path.read_bytes()


def selected_ids(event, points: PointSet) -> list[str]:
    """Ids of the selected points: each point's customdata is its row in `points` (map_figures.selected_ids)."""
    selection = (event or {}).get("selection") or {}
    return map_figures.selected_ids(selection.get("points") or [], points.meta["id"].to_numpy())


def tile_panel(points: PointSet, ids: list[str]) -> None:
    index = _tile_index()
    meta = points.meta.set_index("id").loc[ids]
    rows = meta.reset_index().merge(index, on=["sample_id", "x", "y"], how="left", suffixes=("", "_index")) \
        if index is not None else meta.reset_index()
    shown = map_figures.spread_over(rows, 12)
    slides, tissues = rows["sample_id"].nunique(), rows["tissue"].nunique()
    st.markdown(f"**{len(ids)} tile(s) selected** from {slides} slide{'s' if slides != 1 else ''} of {tissues} "
                f"tissue{'s' if tissues != 1 else ''} ({len(shown)} shown{', spread over them' if slides > 1 else ''})")
    cols = st.columns(6)
    for i, row in enumerate(shown.to_dict("records")):
        try:
            cols[i % 6].image(read_tile(row, out_size=160), caption=f"{row['sample_id']} · {row['tissue']}",
                              width="stretch")
        except (DataError, KeyError, TypeError) as exc:
            cols[i % 6].caption(f"tile unreadable: {exc}")
    if len(ids) == 1 and index is not None and len(rows):
        row = rows.iloc[0]
        try:
            shown = tile_views.slide_thumbnail(ws, row["slide_path"])
        except DataError as exc:
            st.error(str(exc))
            return
        from core.tiles import figures

        st.plotly_chart(figures.thumbnail_with_tiles(shown["thumb"], shown["scale"], rows.head(1)),
                        width="stretch", key="tile-thumb")


def sample_panel(ids: list[str]) -> None:
    samples = cohort.samples.set_index("sample_id")
    chosen = st.selectbox(f"{len(ids)} sample(s) selected; show", ids, key="selected-sample")
    row = samples.loc[chosen] if chosen in samples.index else pd.Series(dtype=object)
    left, right = st.columns([1, 2])
    left.markdown(f"**{row.get('tissue', '—')}** · donor `{row.get('subject_id', '—')}`")
    left.markdown(f"Sex {row.get('sex', '—')} · age {row.get('age_bracket', '—')} · {row.get('hardy_scale', '—')}")
    left.markdown(f"Pathology: {row.get('pathology_categories') or '—'}")
    left.caption(row.get("pathology_notes") or "no pathology notes")
    left.dataframe(sample_top_genes(cohort, chosen), hide_index=True, width="stretch")
    index = _tile_index()
    if index is None:
        right.info("Tile the slides to see this slide's tiles.")
        return
    mine = index[(index["sample_id"] == chosen) & index["passed_qc"].astype(bool)].head(12)
    cols = right.columns(4)
    for i, tile in enumerate(mine.to_dict("records")):
        try:
            cols[i % 4].image(read_tile(tile, out_size=140), width="stretch")
        except DataError as exc:
            cols[i % 4].caption(str(exc))


def linked_panel(points: PointSet, ids: list[str]) -> None:
    st.subheader("Selection")
    if points.level == "tiles":
        tile_panel(points, ids)
    else:
        sample_panel(ids)


@st.cache_data(show_spinner=False, max_entries=8)
def _scored_epochs(data_dir: str, run_dir: str, stamp: tuple) -> pd.DataFrame:
    return scored_epochs(ws, data_dir, run_dir)


def epochs_section(run_dir: str) -> None:
    st.subheader("Tissue separation across epochs")
    st.caption("Does training keep separating tissues after the classifier's test accuracy plateaus? Each "
               "checkpoint's embeddings are scored at the slide and the tile level (kNN with whole donors held "
               "out; silhouette), beside the same architecture with random weights, on the slides of the "
               "run's held-out donors (validation + test); the training donors' scores (dotted, training_*) "
               "show fit, not separation.")
    try:
        table = _scored_epochs(str(root), run_dir, _job_stamp())
    except DataError as exc:
        st.error(str(exc))
        return
    if table["source"].eq("checkpoint").any():
        st.plotly_chart(map_figures.separation_by_epoch(table), width="stretch", key="epochs-chart")
        with st.expander("Scores per epoch"):
            st.dataframe(table.drop(columns=["source_key", "source"]), hide_index=True, width="stretch")
    available = checkpoint_epochs(run_dir)
    scored = set(table.loc[table["source"] == "checkpoint", "epoch"].astype(int))
    if set(available) <= scored:
        return
    chosen = st.multiselect("Epochs to score (each is one embedding of every selected tile)", available,
                            default=epochs_to_score(available, scored),
                            key="epochs-chosen")
    if jobs.active_job(ws) is None and chosen and st.button("Score these epochs and random weights "
                                                            "(background job)", key="epochs-go"):
        try:
            embed_jobs.launch_separation_across_epochs(ws, root, run_dir, sorted(chosen))
            st.rerun()
        except (JobBusyError, DataError) as exc:
            st.warning(str(exc))


def apply_link() -> None:
    """Map A as a link asked for, once per link (the Gene rankings page's "open on the slide map"):
    ?gene=ID&level=slides&kind=Trained run&run=RUN_ID&epoch=E (or kind=Random weights&seed=S[&arch=A&size=N])."""
    query = {k: st.query_params.get(k) for k in ("gene", "level", "kind", "run", "epoch", "seed", "arch", "size")}
    if not query["gene"] or st.session_state.get("_applied-link") == query:
        return
    st.session_state["_applied-link"] = query
    state = st.session_state
    state["A-colour"], state["A-gene"] = "gene", query["gene"]
    if query["level"] in LEVEL_HELP:
        state["A-level"] = query["level"]
    trained = {p.name: p for p in _runs_with_checkpoints()}
    run_dir = trained.get(query["run"] or "")
    if run_dir is not None:
        state["A-run"] = run_dir
        if query["epoch"] and query["epoch"].isdigit() and int(query["epoch"]) in checkpoint_epochs(run_dir):
            state["A-epoch"] = int(query["epoch"])
    if query["kind"] in ("Trained run", "Random weights", "ImageNet weights") and (query["kind"] != "Trained run"
                                                                                     or trained):
        state["A-kind"] = query["kind"]
    if query["seed"] and query["seed"].isdigit():
        state["A-seed"] = int(query["seed"])
    if query["arch"] in ARCHITECTURES:
        state["A-arch"] = query["arch"]
    if query["size"] and query["size"].isdigit():
        state["A-size"] = int(query["size"])


apply_link()
compare = st.toggle("Compare two maps side by side", key="compare")
columns = st.columns(2) if compare else [st.container()]
drawn = []
for prefix, column in zip(("A", "B"), columns, strict=False):
    request = map_controls(prefix, column)
    drawn.append((request, *draw_map(prefix, column, request)) if request is not None else (None, None, []))

for _request, points, ids in drawn:
    if points is not None and ids:
        linked_panel(points, ids)
        break

first = drawn[0][0]
if first is not None and first.source is not None and first.source.kind == "checkpoint" and first.run_dir:
    epochs_section(first.run_dir)
