"""HistoGene Explorer: routes only. Each page lives in pages/ and calls core."""

import streamlit as st

st.session_state["_routed_by_app"] = True  # pages.common.ROUTED_KEY: this run came through st.navigation
st.set_page_config(page_title="HistoGene Explorer", page_icon=":material/biotech:", layout="wide")

navigation = st.navigation(
    [
        st.Page("pages/overview.py", title="Dataset overview", icon=":material/dataset:", default=True),
        st.Page("pages/training.py", title="Training", icon=":material/model_training:"),
    ]
)
navigation.run()
