"""Dataset overview: counts, tiles and QC, a slide browser, gene filters, demographics."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import streamlit as st

from core import jobs
from core.base import DataError, update_dataset_settings
from core.data import GeneFilterParams
from core.data import views as summary
from core.tiles import dataset_tiling_params, funnel_caption
from core.tiles import jobs as tile_jobs
from pages import overview_cache as cached
from pages.common import (
    compute_or_launch,
    dataset_dir,
    donor_banner,
    expression_loader,
    get_cohort,
    get_workspace,
    job_panel,
)
from pages.tour_panel import tour_section

ws = get_workspace()
root = dataset_dir()
cohort = get_cohort(root)
info = cached.cohort_info(cohort)

st.title("Dataset overview")
st.caption(f"Dataset: `{root}`" + (" (synthetic GTEx-like demo cohort)" if root == ws.demo_dir else ""))
donor_banner(cohort)
if cohort.warnings:
    with st.expander(f"{len(cohort.warnings)} warning(s) while reading the dataset"):
        for warning in cohort.warnings:
            st.warning(warning)
if cohort.histology_columns:
    NO_COLUMN = "(none: read GTEx sample IDs)"
    choices = [NO_COLUMN] + [c for c in cohort.histology_columns if c not in ("Tissue Sample ID", "Tissue")]
    chosen = st.selectbox("Donor column", choices, index=choices.index(cohort.donor_column or NO_COLUMN),
                          help="The histology CSV column that identifies the donor. Train, validation and test "
                               "are split by it, so one donor never sits on two sides.")
    if chosen != (cohort.donor_column or NO_COLUMN):
        update_dataset_settings(ws, root, donor_column="" if chosen == NO_COLUMN else chosen)  # "": IDs only
        st.rerun()


# A rerun costs one stat per slide here (fingerprints are memoized by stat), and the figures, example
# tiles and thumbnails below are cached by the index's and slides' identities (pages/overview_cache.py).
index_path = cached.find_tile_index(cohort, dataset_tiling_params(ws, root), ws)
index_key = cached.index_key(index_path) if index_path else None
tile_index = cached.tile_index(index_key) if index_key else None
qc = cached.qc_view(index_key, tile_index) if index_key else None

cols = st.columns(6)
cols[0].metric("Donors", info["donors"])
cols[1].metric("Tissues", info["tissues"])
cols[2].metric("Slides", info["slides"])
pending = "loading" if cohort.expression_pending else None  # the GCT is parsed in a background job
cols[3].metric("With expression", pending or info["samples_with_expression"],
               help="Histology samples whose ID matches an RNA sample")
cols[4].metric("Joined", pending or info["joined"], help="Slides with both a histology row and expression")
cols[5].metric("Tiles after QC", qc["passed"] if qc is not None else "—")

if index_path is not None and (errors := summary.tiling_errors(index_path)):
    with st.expander(f"{len(errors)} slide(s) could not be tiled; the others were", icon=":material/warning:"):
        for message in errors.values():
            st.error(message)

expression_loader(cohort, root)
if root == ws.demo_dir:
    tour_section(ws)
active = jobs.active_job(ws)


def background_panel(job: jobs.Job) -> None:
    """The running job's panel; the tour's own section above shows the tour's."""
    if not (job.kind == "tour" and root == ws.demo_dir):
        st.subheader(f"Background job: {job.kind}")
        job_panel(job.dir, rerun_when_done=True)


if active is not None and (active.kind != tile_jobs.KIND or tile_index is not None):
    background_panel(active)  # another stage's job (or a re-tiling): no tiling to offer while it runs
else:
    compute_or_launch(
        lambda: tile_index, lambda: active, None, lambda: tile_jobs.launch_tiles(ws, root),
        "Tile the slides (QC + balanced sampling)", show_job=background_panel,
        missing=lambda: st.info("The slides have not been tiled yet. Tiling runs in a background worker; the app "
                                "stays usable."))

tab_cohort, tab_tiles, tab_slides, tab_genes = st.tabs(["Cohort", "Tiles and QC", "Slide browser", "Genes"])

with tab_cohort:
    st.plotly_chart(cached.per_tissue_figure(info, index_key, tile_index), width="stretch")
    demo_cols = st.columns(3)
    for col, fig in zip(demo_cols, cached.demographic_figures_of(cohort), strict=False):
        col.plotly_chart(fig, width="stretch")

with tab_tiles:
    if qc is None:
        st.info("Tile the slides to see the QC funnel and example tiles.")
    else:
        left, right = st.columns(2)
        left.plotly_chart(qc["funnel"], width="stretch")
        left.caption(funnel_caption(index_path))
        right.plotly_chart(qc["rejections"], width="stretch")
        tissue = st.selectbox("Example tiles of", qc["tissues"])
        for outcome, shown in cached.example_tiles(index_key, tissue, tile_index).items():
            st.markdown(f"**{outcome.capitalize()}** ({len(shown)} shown)")
            if not shown:
                st.caption("none")
                continue
            tile_cols = st.columns(6)
            for col, (image, caption) in zip(tile_cols, shown, strict=False):
                if isinstance(image, str):  # the tile could not be read: its DataError
                    col.caption(image)
                else:
                    col.image(image, caption=caption, width="stretch")


def slide_facts(meta: dict) -> pd.Series:
    """The slide's metadata as labelled rows; assumed values say so."""
    def assumed(flag: str) -> str:
        return " (assumed)" if meta.get(flag) else ""

    return pd.Series({
        "File": Path(str(meta.get("path", ""))).name,
        "Format (slideio driver)": meta.get("driver", "—"),
        "Size at level 0": f"{meta.get('width', '?')} x {meta.get('height', '?')} px",
        "Magnification": f"{meta.get('magnification', 0):g}x{assumed('magnification_assumed')}",
        "Pixel size": f"{meta.get('mpp', 0):g} µm/px{assumed('mpp_assumed')}",
        "Pyramid levels": str(meta.get("levels", "—")),
    }, name="value")


with tab_slides:
    with_slides = cohort.samples[cohort.samples["has_slide"]]
    if with_slides.empty:
        st.info("No slide files found in the dataset's slides/ folder.")
    else:
        sample_id = st.selectbox("Slide", with_slides["sample_id"].tolist())
        row = with_slides.set_index("sample_id").loc[sample_id]
        try:
            figure, meta = cached.slide_view(ws, row["slide_path"], tile_index, index_key, sample_id)
        except DataError as exc:
            st.error(str(exc))
        else:
            left, right = st.columns([2, 1])
            left.plotly_chart(figure, width="stretch")
            right.markdown(f"**{row['tissue']}** · donor `{row['subject_id']}`")
            right.markdown(f"Sex {row.get('sex', '—')} · age {row.get('age_bracket', '—')} · "
                           f"{row.get('hardy_scale', '—')}")
            right.markdown(f"Pathology: {row.get('pathology_categories') or '—'}")
            right.caption(row.get("pathology_notes") or "no pathology notes")
            if meta.get("magnification_assumed"):
                right.warning(f"No magnification in the file: {meta['magnification']:g}x assumed.")
            if meta.get("mpp_assumed"):
                right.warning(f"No pixel size in the file: {meta['mpp']:g} µm/px assumed.")
            for warning in meta.get("warnings") or []:
                right.warning(warning)
            right.dataframe(slide_facts(meta), width="stretch")


with tab_genes:
    if cohort.expression_pending:
        st.info("The expression matrix is being loaded in a background job (once; then it is cached). "
                "The gene filters appear here when it is done.")
    elif cohort.expression.values.size == 0:
        st.info("No expression matrix in this dataset.")
    else:
        c1, c2 = st.columns(2)
        min_log_tpm = c1.number_input("Expressed: logTPM above", value=5.0, step=0.5)
        min_sd = c2.number_input("Variable: SD above", value=0.5, step=0.1)
        params = GeneFilterParams(min_log_tpm=min_log_tpm, min_sd=min_sd)
        funnel_figure, histogram = cached.gene_view(ws, cohort, params)
        left, right = st.columns(2)
        left.plotly_chart(funnel_figure, width="stretch")
        right.plotly_chart(histogram, width="stretch")
