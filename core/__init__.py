"""HistoGene Explorer core library: plain Python, no Streamlit."""

__version__ = "0.1.0"
