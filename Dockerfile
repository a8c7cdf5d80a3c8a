# Serves HistoGene Explorer on port 8501 with the synthetic demo cohort (generated on first start).
FROM python:3.11-slim
RUN apt-get update -q && apt-get install -y -q --no-install-recommends make libgomp1 \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY requirements.txt requirements-dev.txt Makefile ./
RUN make .venv/.runtime-installed
COPY . .
RUN .venv/bin/python -c "from core.tiles.qc import warm_up; warm_up()"
ENV HISTOGENE_WORKSPACE=/data/workspace
VOLUME ["/data"]
EXPOSE 8501
CMD [".venv/bin/streamlit", "run", "app.py", "--server.port", "8501", "--server.address", "0.0.0.0", "--server.headless", "true"]
