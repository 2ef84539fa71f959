# Store clustering — developer commands. `make run` and `make test` are all a new user needs.
# Set-up uses the machine's Python 3.11 and never downloads an interpreter.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
ENV ?= dev
PRESET ?= small
RAW_DIR ?= $(or $(CLUSTERING_RAW_DIR),data/raw)
UV_VERSION := $(shell sed -n 's/^uv==//p' requirements.lock)
CHROMIUM := /usr/bin/chromium
export UV_PYTHON_DOWNLOADS := never
export UV_NO_PROGRESS := 1

.PHONY: ui setup run data test lint format typecheck browser bench recovery quality clean lock help

help:  ## list the targets
	@grep -hE '^[a-z%-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/' | column -t -s $$'\t'

# The venv is rebuilt only when the lock or the project metadata changed. Dependencies are
# compiled to bytecode at install: where PYTHONDONTWRITEBYTECODE is set, every process (each
# Dagster step, each per-category worker) would otherwise compile scikit-learn, pandas and
# Dagster from source again (measured: 12 s of CPU per process start, 4.5 s compiled).
$(STAMP): requirements.lock pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@$(BIN)/python -c 'import sys; assert sys.version_info[:2] == (3, 11), "the project needs Python 3.11, the venv has " + sys.version.split()[0]'
	$(BIN)/python -m pip install --quiet --disable-pip-version-check "uv==$(UV_VERSION)"
	$(BIN)/uv pip install --quiet --compile-bytecode --python $(BIN)/python -r requirements.lock
	$(BIN)/uv pip install --quiet --python $(BIN)/python --no-deps -e .
	@touch $(STAMP)

setup: $(STAMP)  ## create .venv with the pinned dependencies and the package

# Sample data is generated only into the default data/raw, and only when it holds none of the
# inputs; a folder named by CLUSTERING_RAW_DIR is the user's own data and is never written to.
data: $(STAMP)  ## generate sample data (PRESET=small|medium|large) into data/raw if missing
	@if [ "$(RAW_DIR)" = "data/raw" ]; then \
		$(BIN)/python -m clustering generate-data --preset $(PRESET) --out $(RAW_DIR) --if-missing; \
	else \
		echo "Using the inputs in $(RAW_DIR)"; \
	fi

run: data  ## set up, generate sample data if missing, run full_pipeline_job through Dagster, print where the results are
	CLUSTERING_RAW_DIR=$(RAW_DIR) $(BIN)/python -m clustering run full_pipeline_job --env $(ENV)

ui: $(STAMP)  ## start the Dagster web UI and daemon (ENV=dev, PORT=3000); Ctrl-C stops both
	$(BIN)/python -m clustering ui --env $(ENV) --port $(or $(PORT),3000)

# make run-internal_preprocessing ENV=staging runs internal_preprocessing_job for staging.
run-%: $(STAMP)  ## run one job: run-internal_preprocessing, run-internal_clustering, run-external_preprocessing, run-external_clustering, run-merging, run-full_pipeline
	$(BIN)/python -m clustering run $*_job --env $(ENV)

lint: $(STAMP)  ## ruff check and format check
	$(BIN)/ruff check src tests scripts benchmarks
	$(BIN)/ruff format --check src tests scripts benchmarks

format: $(STAMP)  ## apply ruff formatting and safe fixes
	$(BIN)/ruff check --fix src tests scripts benchmarks
	$(BIN)/ruff format src tests scripts benchmarks

typecheck: $(STAMP)  ## mypy on src/
	$(BIN)/mypy src

# The browser test (tests/test_browser.py) drives the system's Chromium through Playwright;
# Playwright's own browser download is never used.
browser:  ## install Debian's chromium for the browser test when it is missing (needs root and apt-get)
	@if [ -x $(CHROMIUM) ]; then \
		:; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		echo "Installing chromium for the browser test..."; \
		export DEBIAN_FRONTEND=noninteractive; \
		apt-get update -qq && apt-get install -y -qq chromium >/dev/null; \
	else \
		echo "note: $(CHROMIUM) is missing, so tests/test_browser.py is skipped (and fails when CI is set); install it with 'sudo apt-get install chromium'."; \
	fi

# The PostgreSQL tests (tests/postgres_server.py) start a throwaway server on loopback from
# Debian's binaries; nothing is configured system-wide and no service is started.
.PHONY: postgres
postgres:  ## install Debian's postgresql for the PostgreSQL tests when it is missing (needs root and apt-get)
	@if ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || command -v initdb >/dev/null 2>&1; then \
		:; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		echo "Installing postgresql for the PostgreSQL tests..."; \
		export DEBIAN_FRONTEND=noninteractive; \
		apt-get update -qq && apt-get install -y -qq postgresql >/dev/null; \
	else \
		echo "note: PostgreSQL server binaries are missing, so the PostgreSQL tests are skipped (and fail when CI is set); install them with 'sudo apt-get install postgresql'."; \
	fi

test: lint typecheck browser postgres  ## lint, type-check, install chromium and postgresql if missing and run the test suite
	$(BIN)/pytest

bench: $(STAMP)  ## speed, memory and ARI against the analyst-style baseline (headline, large, xlarge, growth)
	$(BIN)/python benchmarks/bench_pipeline.py

recovery: $(STAMP)  ## ARI of the found clusters against the planted truth on small and medium
	$(BIN)/python benchmarks/recovery.py

quality: $(STAMP)  ## k-selection rules on the difficulty ladder: ARI vs planted types, k hit rate, seconds
	$(BIN)/python benchmarks/quality.py

lock:  ## re-pin dependencies into requirements.lock (needs uv in .venv)
	$(BIN)/uv pip compile pyproject.toml --extra dev --python-version 3.11 \
		--python-platform x86_64-unknown-linux-gnu -o requirements.lock

clean:  ## remove generated data, outputs and caches (keeps .venv)
	rm -rf data/raw data/truth outputs storage .pytest_cache .mypy_cache .ruff_cache .tmp_dagster_home_*
