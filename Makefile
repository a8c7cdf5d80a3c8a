# Two commands do all set-up on a fresh machine:
#   make run   - install into .venv and serve the app on the demo cohort (http://localhost:8501)
#   make test  - install into .venv (+ Debian's chromium) and run every test
# For the edit loop: make check - lint + unit tests (no browser), a few minutes.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
RUNTIME_STAMP := $(VENV)/.runtime-installed
DEV_STAMP := $(VENV)/.dev-installed
PORT ?= 8501
# Tests run on every core (pytest-xdist), a module (or a group, tests/conftest.py) to a worker, longest first.
PYTEST := $(VENV)/bin/pytest -q -ra -n $(or $(TEST_WORKERS),auto)

.PHONY: run test check lint e2e unit chromium bench clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip

$(RUNTIME_STAMP): requirements.txt | $(PY)
	$(PY) -m pip install -q -r requirements.txt
	touch $@

# The QC's numba code compiled once (cached in core/__pycache__), not in the first tiling run.
QC_STAMP := $(VENV)/.qc-compiled
$(QC_STAMP): core/tiles/qc.py $(RUNTIME_STAMP)
	$(PY) -c "from core.tiles.qc import warm_up; warm_up()"
	touch $@

# anndata 0.12.19 declares pandas<3, which pip cannot square with pandas==3.1.1; it reads our .h5ad export fine
# with pandas 3.1.1, so it goes in without its dependency check (its dependencies are in requirements-dev.txt).
ANNDATA := anndata==0.12.19
$(DEV_STAMP): requirements.txt requirements-dev.txt $(RUNTIME_STAMP)
	$(PY) -m pip install -q -r requirements-dev.txt
	$(PY) -m pip install -q --no-deps $(ANNDATA)
	touch $@

chromium:
	@command -v chromium >/dev/null 2>&1 || { \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -q && $$SUDO apt-get install -y -q chromium; }

run: $(RUNTIME_STAMP) $(QC_STAMP)
	$(VENV)/bin/streamlit run app.py --server.port $(PORT) --server.headless true

lint: $(DEV_STAMP)
	$(VENV)/bin/ruff check .

unit: $(DEV_STAMP) $(QC_STAMP)
	$(PYTEST) -m "not e2e"

e2e: $(DEV_STAMP) $(QC_STAMP) chromium
	$(PYTEST) -m e2e

check: $(DEV_STAMP) $(QC_STAMP)
	$(VENV)/bin/ruff check .
	$(PYTEST) -m "not e2e" --durations=10

test: $(DEV_STAMP) $(QC_STAMP) chromium
	$(VENV)/bin/ruff check .
	$(PYTEST) --durations=15

bench: $(DEV_STAMP) $(QC_STAMP)
	$(PY) benchmarks/bench_demo.py
	$(PY) benchmarks/bench_tiling.py
	$(PY) benchmarks/bench_gtex_tiling.py
	$(PY) benchmarks/bench_qc.py
	$(PY) benchmarks/bench_qc_agreement.py
	$(PY) benchmarks/bench_gct_load.py
	$(PY) benchmarks/bench_train.py
	$(PY) benchmarks/bench_embed.py
	$(PY) benchmarks/bench_default_training.py --workspace workspace/bench
	$(PY) benchmarks/bench_overview.py --workspace workspace/bench-overview
	$(PY) benchmarks/bench_ranking.py
	$(PY) benchmarks/bench_rank_demo.py --workspace workspace/bench
	$(PY) benchmarks/results.py

clean:
	rm -rf workspace .pytest_cache
