"""HistoGene Explorer: routes only. Each page lives in pages/ and calls core."""

import streamlit as st

st.set_page_config(page_title="HistoGene Explorer", page_icon=":material/biotech:", layout="wide")

navigation = st.navigation(
    [
        st.Page("pages/overview.py", title="Dataset overview", icon=":material/dataset:", default=True),
        st.Page("pages/training.py", title="Training", icon=":material/model_training:"),
    ]
)
navigation.run()
