PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)

.PHONY: setup demo test lint format bench package clean dashboard

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev,dashboard]'
	rm -f $(VENV)/.installed-*
	touch $(STAMP)

demo: setup
	$(PY) -m health_score.pipeline --dry-run --demo

lint: setup
	$(PY) -m ruff check src tests benchmarks dashboard.py
	$(PY) -m ruff format --check src tests benchmarks dashboard.py
	$(PY) -m mypy

format: setup
	$(PY) -m ruff format src tests benchmarks dashboard.py
	$(PY) -m ruff check --fix src tests benchmarks dashboard.py

test: lint
	$(PY) -m pytest -n 2 -q

bench: setup
	$(PY) benchmarks/scoring.py
	$(PY) benchmarks/sandbox.py
	$(PY) benchmarks/extraction.py
	$(PY) benchmarks/writeback.py
	$(PY) benchmarks/dashboard.py
	$(PY) benchmarks/lambda_bundle.py

package: setup
	$(PY) -m health_score.lambda_package --output build/lambda.zip

dashboard: setup
	$(VENV)/bin/streamlit run dashboard.py --server.address 127.0.0.1

clean:
	rm -rf $(VENV) output build dist *.egg-info
