PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
LOCK := requirements/dev.txt
LAMBDA_LOCK := requirements/lambda.txt
UV_VERSION := 0.13.9
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml $(LOCK) | cksum | cut -d' ' -f1)
# A .venv made with a Python outside 3.11–3.13 (or broken) is rebuilt.
SUPPORTED := import sys; sys.exit(not (3, 11) <= sys.version_info[:2] <= (3, 13))

.DEFAULT_GOAL := help
.PHONY: help setup demo test lint format bench package clean dashboard lock check-python test-pythons screenshots

help: ## list the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-z-]+:.*## / {printf "  make %-13s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

check-python:
	@$(PYTHON) -c '$(SUPPORTED)' 2>/dev/null || { \
	  echo "error: $(PYTHON) is not Python 3.11–3.13; run e.g. make setup PYTHON=python3.12" >&2; \
	  exit 2; }
	@if [ -e $(VENV) ] && ! $(PY) -c '$(SUPPORTED)' 2>/dev/null; then \
	  echo "note: $(VENV) was made with an unsupported or broken Python; rebuilding it" >&2; \
	  rm -rf $(VENV); fi

setup: check-python $(STAMP) ## make .venv from the committed lockfile (requirements/dev.txt)

$(STAMP): pyproject.toml $(LOCK)
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r $(LOCK)
	$(PY) -m pip install --quiet --no-deps -e .
	rm -f $(VENV)/.installed-*
	touch $(STAMP)

demo: setup ## a year of monthly runs on the built-in sandbox (no credentials), then the backtest
	$(VENV)/bin/health-score backfill --demo --last 12 --output output/health_scores.csv
	$(VENV)/bin/health-score backtest

lint: setup ## ruff (lint + format check) and mypy strict
	$(PY) -m ruff check src tests benchmarks dashboard.py
	$(PY) -m ruff format --check src tests benchmarks dashboard.py
	$(PY) -m mypy

format: setup ## apply ruff's formatting and fixes
	$(PY) -m ruff format src tests benchmarks dashboard.py
	$(PY) -m ruff check --fix src tests benchmarks dashboard.py

test: lint ## lint, then the whole test suite on 2 processes
	$(PY) -m pytest -n 2 --dist loadgroup -q

# Other supported interpreters, e.g. make test-pythons PYTHONS="python3.12 python3.13"
PYTHONS ?= python3.12 python3.13
test-pythons: ## the suite on other Pythons (PYTHONS="python3.12 python3.13")
	@for py in $(PYTHONS); do \
	  v=build/venv-$$py; echo "== $$py ($$v)"; \
	  test -x $$v/bin/python || $$py -m venv $$v || exit 1; \
	  $$v/bin/python -m pip install --quiet -r $(LOCK) && \
	  $$v/bin/python -m pip install --quiet --no-deps -e . && \
	  $$v/bin/python -m pytest -n 2 -q -p no:cacheprovider -m "not browser" \
	    --deselect tests/e2e/test_lambda_bundle.py || exit 1; \
	done

bench: setup ## the speed and size benchmarks (figures in the README)
	$(PY) benchmarks/scoring.py
	$(PY) benchmarks/sandbox.py
	$(PY) benchmarks/extraction.py
	$(PY) benchmarks/writeback.py
	$(PY) benchmarks/dashboard.py
	$(PY) benchmarks/lambda_bundle.py
	$(PY) benchmarks/import_graph.py

screenshots: setup ## every dashboard page at 250 and 10,000 accounts (build/screenshots, Chromium)
	$(PY) benchmarks/screenshots.py --accounts 250 10000 --out build/screenshots

package: setup ## build the Lambda zip (build/lambda.zip) from requirements/lambda.txt
	$(PY) -m health_score.lambda_package --output build/lambda.zip

dashboard: setup ## the dashboard on http://127.0.0.1:8501
	$(VENV)/bin/health-score dashboard

lock: setup ## re-resolve both lockfiles from pyproject.toml (needs PyPI)
	$(PY) -m pip install --quiet uv==$(UV_VERSION)
	$(VENV)/bin/uv pip compile pyproject.toml --universal --python-version 3.11 \
	  --extra dev --extra dashboard --extra sandbox --extra rollbar \
	  --custom-compile-command "make lock" -q -o $(LOCK)
	$(VENV)/bin/uv pip compile pyproject.toml --extra rollbar --no-emit-package python-dotenv \
	  --python-version 3.12 --python-platform x86_64-manylinux_2_28 \
	  --custom-compile-command "make lock" -q -o $(LAMBDA_LOCK)

clean: ## remove the venv and build files (never output/: run history stays)
	rm -rf $(VENV) build dist src/*.egg-info .mypy_cache .ruff_cache .pytest_cache
