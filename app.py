"""HistoGene Explorer: routes only. Each page lives in pages/ and calls core."""

import streamlit as st

from pages.common import warm_up_maps

st.session_state["_routed_by_app"] = True  # pages.common.ROUTED_KEY: this run came through st.navigation
st.set_page_config(page_title="HistoGene Explorer", page_icon=":material/biotech:", layout="wide")

navigation = st.navigation(
    [
        st.Page("pages/overview.py", title="Dataset overview", icon=":material/dataset:", default=True),
        st.Page("pages/training.py", title="Training", icon=":material/model_training:"),
        st.Page("pages/explorer.py", title="Embeddings explorer", icon=":material/scatter_plot:"),
        st.Page("pages/rankings.py", title="Gene rankings", icon=":material/format_list_numbered:"),
        st.Page("pages/predict.py", title="Predict", icon=":material/labs:"),
    ]
)
warm_up_maps()  # once per server: numba compiles UMAP in a side process, not in the user's first map
navigation.run()
