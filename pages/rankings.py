"""Gene rankings: which genes can slide embeddings predict, beyond what tissue identity explains? Cross-validated
rankings are computed by a background job and cached; this page picks the features, finds or launches the
ranking, and draws its table, summary, a gene's detail and the comparison of two feature sources."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import streamlit as st

from core import jobs
from core.base import DataError
from core.embed import FeatureSource, checkpoint_epochs
from core.maps import figures as map_figures
from core.maps import gene_expression, slide_pca_points
from core.ranking import (
    SUMMARY_JSON,
    Ranking,
    RankParams,
    compare_sources,
    load_nonlinear,
    load_ranking,
    nonlinear_path,
    nonlinear_summary,
)
from core.ranking import figures as rank_figures
from core.ranking import jobs as rank_jobs
from core.ranking import views as rank_views
from core.train import ARCHITECTURES
from pages.common import (
    SOURCE_KINDS,
    compute_or_launch,
    dataset_dir,
    donor_banner,
    expression_loader,
    feature_source_controls,
    get_cohort,
    get_workspace,
    job_panel,
    runs_with_checkpoints,
)

ws = get_workspace()
root = dataset_dir()
cohort = get_cohort(root)

st.title("Gene rankings")
st.caption("For every filtered gene: how well the slide embeddings predict its log2(1 + TPM), cross-validated "
           "with whole donors held out, beside what tissue identity alone explains and what random weights reach. "
           "Rankings run in a background worker and are cached.")
donor_banner(cohort)



def _stop_on_bad_input() -> None:
    """A clear message and a stop when there is nothing to rank (no expression, no slides)."""
    if cohort.expression_pending:
        expression_loader(cohort, root)
        st.info("The expression matrix is being loaded; the ranking needs it.")
        st.stop()
    if cohort.files.expression_gct is None or len(cohort.expression.sample_ids) == 0:
        st.error(f"No expression file (*.gct or *.gct.gz) in {root}: there is nothing to rank. Add the expression "
                 "matrix of the same samples to the dataset folder.")
        st.stop()
    if not cohort.samples["has_slide"].astype(bool).any():
        st.error(f"No slide of {root} was found: rankings regress expression on slide embeddings, so the dataset "
                 "needs slides (see the Dataset overview page).")
        st.stop()


def _runs_with_checkpoints() -> list[Path]:
    return runs_with_checkpoints(ws)


def source_controls(prefix: str, column) -> FeatureSource | None:
    """The feature source chosen in `column` (None while incomplete or invalid; the error is shown there)."""
    if prefix == "A" and not _runs_with_checkpoints():
        column.caption("No trained run yet: rank random or ImageNet weights now, or train on the Training page.")
    return feature_source_controls(ws, prefix, column)[0]


def _max_folds() -> int:
    donors = int(cohort.samples.loc[cohort.samples["has_slide"].astype(bool), "subject_id"].nunique())
    return max(2, min(10, donors))


# Widget key -> URL query name, and the integer widgets' (least, most) values.
URL_NAMES = {"A-kind": "kind", "A-run": "run", "A-epoch": "epoch", "A-seed": "seed", "A-arch": "arch", "A-size": "size",
             "rank-components": "components", "rank-folds": "folds", "rank-repeats": "repeats",
             "rank-kernel": "kernel"}
INT_RANGES = {"A-epoch": (0, 10**6), "A-seed": (0, 10_000), "A-size": (16, 512), "rank-components": (1, 512),
              "rank-folds": (2, 10), "rank-repeats": (1, 50), "rank-kernel": (0, 500)}
# Job folders whose live panel this script run has drawn already (a second panel would repeat its widgets).
_panels_drawn: set[str] = set()


def restore_from_url() -> None:
    """A fresh session (a reload, a shared link) takes source A and the parameters from the URL, so it finds
    the same ranking again; values that no longer fit (a deleted run, an epoch pruned) are left out."""
    if st.session_state.get("_rank-restored"):
        return
    st.session_state["_rank-restored"] = True
    query = {key: st.query_params.get(name) for key, name in URL_NAMES.items()}
    trained = {p.name: p for p in _runs_with_checkpoints()}
    chosen: dict = {}
    if query["A-kind"] in SOURCE_KINDS and (query["A-kind"] != "Trained run" or trained):
        chosen["A-kind"] = query["A-kind"]
    if query["A-run"] in trained:
        chosen["A-run"] = trained[query["A-run"]]
    if query["A-arch"] in ARCHITECTURES:
        chosen["A-arch"] = query["A-arch"]
    for key, (least, most) in INT_RANGES.items():
        raw = query[key]
        if raw and raw.isdigit() and least <= int(raw) <= (most if key != "rank-folds" else _max_folds()):
            chosen[key] = int(raw)
    run_dir = chosen.get("A-run", next(iter(trained.values()), None))
    if "A-epoch" in chosen and (run_dir is None or chosen["A-epoch"] not in checkpoint_epochs(run_dir)):
        chosen.pop("A-epoch")
    for key, value in chosen.items():
        st.session_state[key] = value


def remember_in_url() -> None:
    """The current choices into the URL (what restore_from_url reads after a reload)."""
    for key, name in URL_NAMES.items():
        value = st.session_state.get(key)
        if value is None:
            st.query_params.pop(name, None)
        else:
            st.query_params[name] = value.name if isinstance(value, Path) else str(value)


def param_controls(column) -> RankParams:
    defaults = RankParams()
    top = _max_folds()
    cols = column.columns(3)
    components = int(cols[0].number_input("PCA components", 1, 512, defaults.components, key="rank-components",
                                          help="the standardized embedding is reduced to this many components "
                                               "inside each training fold"))
    folds = int(cols[1].number_input("Folds (by donor)", 2, top, min(defaults.folds, top), key="rank-folds"))
    repeats = int(cols[2].number_input("Repeats", 1, 50, defaults.repeats, key="rank-repeats"))
    return RankParams(components=components, folds=folds, repeats=repeats)


def kernel_control(column) -> int:
    """How many of the best genes (by ridge R²) also get RBF kernel ridge, beside the ridge (0: none)."""
    return int(column.number_input(
        "Kernel ridge for the top N genes (0 = off)", 0, 500, 0, step=10, key="rank-kernel",
        help="a nonlinear model beside the ridge: RBF kernel ridge on the same folds and PCA components, its "
             "bandwidth and penalty chosen per gene on the training rows; run in the background and cached"))


def _job_panel_once(column, job: jobs.Job) -> None:
    if str(job.dir) in _panels_drawn:
        return
    _panels_drawn.add(str(job.dir))
    with column:
        job_panel(job.dir, rerun_when_done=True)


def _job_stamp() -> tuple:
    """Changes when a background job ends, so a cached 'not computed yet' answer is looked at again."""
    return tuple((job.id, job.status().get("state")) for job in jobs.list_jobs(ws)[:3])


@st.cache_resource(show_spinner="Looking for the ranking ...", max_entries=8)
def _lookup(data_dir: str, source: FeatureSource, source_key: str, params: RankParams, cohort_id: int,
            stamp: tuple) -> rank_jobs.Lookup:
    return rank_jobs.cached_ranking_for(ws, data_dir, cohort, source, params)


@st.cache_resource(show_spinner="Loading the ranking ...", max_entries=8)
def _load(folder: str, stamp: float) -> Ranking | None:
    return load_ranking(folder)


@st.cache_data(show_spinner="Scoring genes within each tissue ...", max_entries=8)
def _per_tissue(path: str, _ranking: Ranking) -> tuple[pd.DataFrame, pd.Series]:
    return rank_views.tissue_r2(_ranking), rank_views.top_tissue(_ranking)


def find_ranking(prefix: str, column, source: FeatureSource, params: RankParams,
                 kernel_top: int = 0) -> Ranking | None:
    """The cached ranking, else the job panel or a button that starts the ranking job (which then also fits
    kernel ridge for the `kernel_top` best genes)."""
    try:
        found = _lookup(str(root), source, source.key, params, id(cohort), _job_stamp())
    except DataError as exc:
        column.error(f"This dataset cannot be ranked: {exc}")
        return None
    for warning in found.warnings:
        column.warning(warning)
    # A miss is cached until a job ends; the folder is looked at on every run (the CLI may have filled it).
    summary = found.folder / SUMMARY_JSON if found.folder is not None else None

    def cached() -> Ranking | None:
        return _load(str(found.folder), summary.stat().st_mtime) if summary is not None and summary.exists() \
            else None

    def failure(last: dict) -> None:
        if last.get("state") == jobs.FAILED:
            column.error("The last ranking of this source with these parameters failed: "
                         f"{last.get('error') or 'unknown'}")
            tail = last.get("log_tail") or []
            if tail:
                with column.expander("Its log"):
                    st.code("\n".join(tail) if isinstance(tail, list) else str(tail))
        else:
            column.info("The last ranking of this source was cancelled; ranking again reuses the embeddings it "
                        "finished.")

    def missing() -> None:
        if found.missing == "tiles":
            column.info("The slides are not tiled yet: the ranking job tiles them first (minutes on a big cohort; "
                        "the Dataset overview page shows the tiles and their quality control).")
        needs = {"tiles": "the tiles, the slide embeddings, then the ranking",
                 "embeddings": "the slide embeddings, then the ranking",
                 "baseline embeddings": "the random-weights baseline's embeddings, then the ranking",
                 "ranking": "the ranking"}.get(found.missing, "the ranking")
        column.info(f"Not ranked yet for {source.label} ({params.components} components, {params.folds} folds, "
                    f"{params.repeats} repeats). The job computes {needs}.")

    active = jobs.active_job(ws)
    return compute_or_launch(
        cached, lambda: active if active is not None and active.kind in (rank_jobs.KIND, "embed", "map") else None,
        lambda: rank_jobs.last_attempt(ws, root, source, params),
        lambda: rank_jobs.launch_ranking(ws, root, source, params, kernel_top), "Rank all genes", where=column,
        key=f"{prefix}-go", missing=missing, busy=active, show_job=lambda job: _job_panel_once(column, job),
        busy_note=f"A {active.kind} job is running; the ranking can start when it ends." if active else None)


def _fmt(value, pattern: str = "{:.3f}") -> str:
    return "—" if value is None or (isinstance(value, float) and np.isnan(value)) else pattern.format(value)


@st.cache_data(show_spinner=False, max_entries=8)
def _load_kernel(folder: str, top: int, stamp: float) -> pd.DataFrame | None:
    return load_nonlinear(folder, top)


def kernel_table(ranking: Ranking, top: int) -> pd.DataFrame | None:
    """The saved kernel ridge table of this ranking's `top` genes (None when off or not fitted yet)."""
    path = nonlinear_path(ranking.path, top)
    if top <= 0 or not path.exists():
        return None
    return _load_kernel(str(ranking.path), top, path.stat().st_mtime)


def kernel_section(ranking: Ranking, kernel: pd.DataFrame | None, source: FeatureSource, params: RankParams,
                   top: int) -> None:
    """Kernel ridge beside ridge for the best genes: counts and R² against R², or the job that fits it."""
    st.subheader(f"Kernel ridge beside ridge: the top {top} genes")
    if kernel is None:
        active = jobs.active_job(ws)

        def failure(last: dict) -> None:
            if last.get("state") == jobs.FAILED:
                st.error(f"The last kernel ridge fit for these genes failed: {last.get('error') or 'unknown'}")

        compute_or_launch(
            lambda: None, lambda: active if active is not None and active.kind == rank_jobs.KIND else None,
            lambda: rank_jobs.last_attempt(ws, root, source, params, top),
            lambda: rank_jobs.launch_ranking(ws, root, source, params, top),
            f"Fit kernel ridge for the top {top} genes", key="kernel-go", primary=False,
            show_job=lambda job: _job_panel_once(st.container(), job), show_failure=failure,
            missing=lambda: st.info(f"Kernel ridge is not fitted yet for the top {top} genes of this ranking. It "
                                    "runs in the background on the ranking's own folds and is cached."),
            busy=active,
            busy_note=f"A {active.kind} job is running; the fit can start when it ends." if active else None)
        return
    summary = nonlinear_summary(kernel)
    cols = st.columns(4)
    cols[0].metric("Genes fitted", f"{summary['genes']:,}", help="the best genes by ridge R² (which favours the "
                                                                "ridge a little in this comparison)")
    cols[1].metric("Better with kernel ridge", f"{summary['kernel_better']:,}",
                   help="genes whose kernel ridge R² is above their ridge R²")
    cols[2].metric("Median R² ridge", _fmt(summary["median_r2_ridge"]))
    cols[3].metric("Median R² kernel ridge", _fmt(summary["median_r2_kernel"]))
    pairs = kernel.rename(columns={"r2": "r2_a", "r2_kernel": "r2_b"})
    st.plotly_chart(rank_figures.compare_scatter(pairs, "out-of-fold R²", "out-of-fold R²",
                                                 title="R² per gene: ridge against RBF kernel ridge "
                                                       "(green: kernel ridge higher)",
                                                 names=("Ridge", "Kernel ridge")),
                    width="stretch", key="kernel-scatter")
    st.caption("RBF kernel ridge on the ridge's own donor-grouped folds and PCA components; bandwidth and penalty "
               "chosen per gene by leave-one-out on the training rows. Its R² is also a column of the table below.")


def headline(ranking: Ranking) -> None:
    summary = ranking.summary
    genes = summary.get("genes", len(ranking.table))
    baseline = summary.get("baseline")
    cols = st.columns(6)
    beyond = summary.get("recovered_beyond_tissue")
    cols[0].metric("Genes beyond tissue", "—" if beyond is None else f"{beyond:,}",
                   help="genes whose R² beyond tissue is significant: against embeddings moved between donors within "
                        "each tissue (permutations pooled over genes), BH FDR < 0.05: what the images say about "
                        "a gene that tissue identity does not")
    cols = cols[1:]
    if "recovered" in summary:
        cols[0].metric("Genes recovered", f"{summary['recovered']:,}",
                       help="genes the images predict better than random weights do (mostly tissue identity). "
                            "SEQUOIA's rule: r > 0 with p < 0.05, and better than random weights on the same folds "
                            "(lower RMSE, higher r, one-tailed Williams T2 p < 0.05 with BH FDR < 0.2); "
                            "p-values use n = donors, since a donor's slides are not independent")
        cols[1].metric("Random weights recover", f"{summary['recovered_by_random']:,}",
                       help="the same rule with the roles swapped: genes random-weights features predict better")
    else:
        cols[0].metric("Significant genes", f"{summary.get('significant', 0):,}",
                       help="r > 0 with p < 0.05 (no random-weights baseline for this source)")
        cols[1].metric("Random weights recover", "—", help="no random-weights baseline for this source")
    cols[2].metric("Genes with r > 0", f"{summary.get('positive_r', 0):,}")
    cols[3].metric("Median r > 0.5", f"{summary.get('median_r_above_0_5', 0):,}", help="BrST-Net's summary")
    cols[4].metric("Median R²", _fmt(summary.get("median_r2")),
                   help="median over genes of the out-of-fold R² (median over folds and repeats)")
    cols = st.columns(5)
    cols[0].metric("Median R² tissue only", _fmt(summary.get("median_r2_tissue")),
                   help="each sample predicted by its training folds' tissue mean")
    cols[1].metric("Median R² beyond tissue", _fmt(summary.get("median_r2_beyond_tissue")),
                   help="embedding + tissue model minus the tissue-only model")
    cols[2].metric("Median R² random weights", _fmt(summary.get("median_r2_random")))
    cols[3].metric("Median R² k-means", _fmt(summary.get("median_r2_kmeans")),
                   help="the GTEx study's second approach: a sample predicted by its embedding cluster's mean")
    cols[4].metric("Median R² permuted", _fmt(summary.get("median_r2_null")), help="embeddings shuffled: the null")
    st.caption(f"{genes:,} genes · {summary.get('samples', '?')} samples · {summary.get('donors', '?')} donors · "
               f"{summary.get('folds', '?')} folds x {summary.get('repeats', '?')} repeats · "
               f"{summary.get('components', '?')} components · computed in {_fmt(summary.get('seconds'), '{:.1f}')} s"
               + (f" · random-weights baseline: {baseline['label']}" if isinstance(baseline, dict) and
                  baseline.get("label") else ""))
    st.plotly_chart(rank_figures.r2_histograms(ranking.table), width="stretch", key="r2-hist")


def ranking_table(ranking: Ranking, kernel: pd.DataFrame | None = None) -> pd.DataFrame:
    """Search, tissue filter and the sortable table (with the kernel ridge R² of the genes it was fitted
    for); returns the rows listed."""
    per_tissue, tops = _per_tissue(str(ranking.path), ranking)
    cols = st.columns([2, 2, 1, 1])
    query = cols[0].text_input("Search symbol or Ensembl ID", key="rank-search")
    tissue = cols[1].selectbox("Tissue", ["All tissues", *per_tissue.columns], key="rank-tissue",
                               help="a tissue adds each gene's R² within that tissue's samples (sorted by it): "
                                    "a gene that only differs between tissues scores near 0 there")
    only_top = cols[2].checkbox("Most expressed there", key="rank-only-top", disabled=tissue == "All tissues",
                                help="only genes whose mean expression is highest in this tissue")
    recovered = cols[3].checkbox("Recovered only", key="rank-recovered", disabled="recovered" not in ranking.table)
    orders = {"r2": "R²", "r2_beyond_tissue": "R² beyond tissue", "r2_within_tissue": "R² within tissue"}
    order = st.radio("Order by", list(orders), format_func=orders.get, horizontal=True, key="rank-order",
                     help="R²: what the embedding predicts; beyond tissue: what it adds to the tissue means; within "
                          "tissue: how well it tracks a gene inside each tissue (the Rank column stays by R²)")
    chosen = None if tissue == "All tissues" else tissue
    view = rank_views.view_table(ranking.table, query, chosen, per_tissue, tops, only_top, recovered, order)
    if kernel is not None:
        view = view.assign(r2_kernel=view["gene_id"].map(kernel.set_index("gene_id")["r2_kernel"]))
    shown = rank_views.display_frame(view)
    event = st.dataframe(
        shown, hide_index=True, width="stretch", height=420, key="rank-table", on_select="rerun",
        selection_mode="single-row",
        column_config={c: st.column_config.NumberColumn(format="%.3f") for c in shown.columns
                       if c.startswith("R²") or c == "r"} | {"FDR": st.column_config.NumberColumn(format="%.2e")},
    )
    st.caption(f"{len(view):,} of {len(ranking.table):,} genes listed. Click a column to sort; select a row to "
               "open the gene below.")
    st.download_button("Download the full ranking (CSV)", ranking.csv.read_bytes(), "gene-ranking.csv", "text/csv",
                       key="rank-csv")
    rows = ((event or {}).get("selection") or {}).get("rows") or []
    if rows and rows[0] < len(view):
        picked = str(view["gene_id"].iloc[rows[0]])
        if st.session_state.get("rank-picked") != picked:  # a new table selection opens that gene
            st.session_state["rank-picked"] = picked
            st.session_state["rank-gene"] = picked
    return view


def gene_detail(ranking: Ranking, view: pd.DataFrame, source: FeatureSource,
                kernel: pd.DataFrame | None = None) -> None:
    st.subheader("Gene detail")
    table = ranking.table.set_index("gene_id")
    options = list(view["gene_id"]) or list(ranking.table["gene_id"])
    if st.session_state.get("rank-gene") not in options:
        st.session_state.pop("rank-gene", None)
        if st.session_state.get("rank-picked") in table.index:
            options = [st.session_state["rank-picked"], *options]
            st.session_state["rank-gene"] = st.session_state["rank-picked"]
    gene_id = st.selectbox("Gene", options[:5000], key="rank-gene",
                           format_func=lambda g: f"{table.at[g, 'symbol']} ({g})" if g in table.index else g)
    if gene_id is None:
        return
    row = table.loc[gene_id]
    label = f"{row['symbol']} ({gene_id})"
    cols = st.columns(6)
    cols[0].metric("Rank", f"{int(row['rank']):,}")
    cols[1].metric("R²", _fmt(row.get("r2")))
    cols[2].metric("R² beyond tissue", _fmt(row.get("r2_beyond_tissue")))
    cols[3].metric("R² tissue only", _fmt(row.get("r2_tissue")))
    cols[4].metric("r", _fmt(row.get("r")))
    cols[5].metric("FDR", _fmt(row.get("fdr"), "{:.2e}"))
    if "recovered" in row:
        verdict = "recovered" if bool(row["recovered"]) else "not recovered"
        st.caption(f"{label} is **{verdict}** by SEQUOIA's rule (random weights: R² {_fmt(row.get('r2_random'))}, "
                   f"r {_fmt(row.get('r_random'))}).")
    if kernel is not None and gene_id in set(kernel["gene_id"]):
        kernel_r2 = float(kernel.set_index("gene_id").at[gene_id, "r2_kernel"])
        st.caption(f"RBF kernel ridge R² for {label}: {_fmt(kernel_r2)} (ridge {_fmt(row.get('r2'))}).")
    frame = ranking.gene_frame(gene_id)
    left, right = st.columns(2)
    left.plotly_chart(rank_figures.predicted_vs_observed(frame, label), width="stretch", key="gene-scatter")
    per_tissue = rank_views.gene_tissue_table(ranking, gene_id)
    right.plotly_chart(rank_figures.tissue_r2_bar(per_tissue), width="stretch", key="gene-tissues")
    right.dataframe(per_tissue.rename(columns={"mean_log_tpm": "mean log2(1+TPM)", "r2": "R² embedding",
                                               "r2_emb_tissue": "R² embedding + tissue"}).round(3),
                    hide_index=True, width="stretch")
    slide_map(ranking, gene_id, label, source)


def slide_map(ranking: Ranking, gene_id: str, label: str, source: FeatureSource) -> None:
    """The gene's observed expression on a PCA map of the slides, and a link to the explorer's slide map."""
    st.markdown("**The gene on the slide map**")
    slides = _slide_points(str(root), source, _job_stamp())
    if slides is not None:
        try:
            _, by_sample = gene_expression(cohort, gene_id)
            values = slides["sample_id"].map(by_sample).to_numpy(dtype=float)
            st.plotly_chart(map_figures.map_scatter(slides[["x", "y"]].to_numpy(), slides, label, values=values,
                                                    title=f"Slides (PCA of {source.label}) coloured by {label}",
                                                    height=420), width="stretch", key="gene-map")
        except DataError as exc:
            st.warning(str(exc))
    st.page_link("pages/explorer.py", label=f"Open {label} on the Embeddings explorer's slide map (UMAP, t-SNE, "
                                            "linked tiles)", icon=":material/scatter_plot:",
                 query_params=explorer_link(gene_id, source))


def explorer_link(gene_id: str, source: FeatureSource) -> dict[str, str]:
    """The query the explorer reads (pages/explorer.py apply_link): its slide map of this source by this gene."""
    query = {"gene": gene_id, "level": "slides"}
    if source.kind == "checkpoint":
        query.update(kind="Trained run", run=Path(str(source.run_dir)).name, epoch=str(source.epoch))
    elif source.kind in ("random", "imagenet"):
        query.update(kind="Random weights" if source.kind == "random" else "ImageNet weights", seed=str(source.seed),
                     arch=str(source.arch), size=str(source.image_size))
    return query


@st.cache_resource(show_spinner=False, max_entries=4)
def _slide_points(data_dir: str, source: FeatureSource, stamp: tuple) -> pd.DataFrame | None:
    """One row per slide with the first two principal components of its embedding (core.maps.slide_pca_points)."""
    return slide_pca_points(ws, data_dir, cohort, source)


def comparison(ranking_a: Ranking, source_a: FeatureSource, params: RankParams) -> None:
    st.subheader("Compare two feature sources")
    st.caption("Rank a second source with the same parameters and compare gene by gene (e.g. random weights "
               "against trained, epoch 5 against epoch 30, a feature model against the trained network).")
    column = st.columns(2)[0]
    source_b = source_controls("B", column)
    if source_b is None:
        return
    if source_b.key == source_a.key:
        st.info("Choose a different source for B.")
        return
    ranking_b = find_ranking("B", column, source_b, params)
    if ranking_b is None:
        return
    result = compare_sources(ranking_a.table, ranking_b.table)
    cols = st.columns(4)
    cols[0].metric("Genes compared", f"{result['genes']:,}")
    cols[1].metric("Improved by B", f"{result['improved']:,}")
    cols[2].metric("Worse with B", f"{result['worse']:,}")
    p = result["wilcoxon_p"]
    cols[3].metric("Paired Wilcoxon p", "—" if p is None else f"{p:.2e}",
                   help=f"median R² difference B - A: {_fmt(result['median_difference'])}")
    st.plotly_chart(rank_figures.compare_scatter(result["pairs"], source_a.label, source_b.label), width="stretch",
                    key="compare-scatter")


_stop_on_bad_input()
restore_from_url()
left, right = st.columns(2)
source = source_controls("A", left)
params = param_controls(right)
kernel_top = kernel_control(right)
remember_in_url()
ranking = find_ranking("A", st.container(), source, params, kernel_top) if source is not None else None
if ranking is not None:
    headline(ranking)
    kernel = kernel_table(ranking, kernel_top)
    if kernel_top > 0:
        kernel_section(ranking, kernel, source, params, kernel_top)
    st.subheader("Ranking")
    listed = ranking_table(ranking, kernel)
    gene_detail(ranking, listed, source, kernel)
    if st.toggle("Compare with a second feature source", key="rank-compare"):
        comparison(ranking, source, params)
