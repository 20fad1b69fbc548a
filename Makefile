# airflow-policyzones — the two commands: `make demo` and `make test`.
# Everything installs into ./.venv from the package registries; nothing is needed by hand.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
PY := $(VENV)/bin/python
PYVER := $(shell $(PYTHON) -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')
CONSTRAINTS := constraints/constraints-$(PYVER).txt
CONSTRAINT_FLAG := $(if $(wildcard $(CONSTRAINTS)),-c $(CONSTRAINTS),)
PIP := $(PY) -m pip --disable-pip-version-check
# `make demo` keeps everything (Airflow home, logs, pids) in .demo/; a user's ~/airflow is never touched.
DEMO_ARGS ?=

.PHONY: help install browser-deps demo demo-stop test lint unit screenshots bench bench-ui clean

help:
	@echo "make demo   set up, start Airflow locally, run every example DAG, print decisions and violations"
	@echo "make demo-stop  stop the Airflow services make demo started (not PostgreSQL, Redis)"
	@echo "make test   set up, then lint (ruff, mypy strict) and run the whole test suite"
	@echo "make bench  run the benchmarks (medians and ratios against baselines)"
	@echo "make bench-ui  time the violations API on 1M decisions / 200k violations in PostgreSQL"

$(VENV)/.installed: pyproject.toml $(wildcard $(CONSTRAINTS))
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q $(CONSTRAINT_FLAG) -e ".[test]"
	touch $@

install: $(VENV)/.installed

# The browser tests drive Debian's chromium through Playwright (never a browser Playwright downloads).
CHROMIUM ?= /usr/bin/chromium
browser-deps:
	@test -x $(CHROMIUM) || { echo "installing Debian's chromium for the browser tests"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium; }

# `make demo`: a real local Airflow 3 (api-server, scheduler, dag-processor, triggerer and a Celery
# worker; CeleryExecutor, PostgreSQL, Redis, which scripts/services.sh starts when they are not
# running) in .demo/, every example DAG triggered, a summary of task states, decisions and
# violations, and `policyzones doctor` in the worker's and the api-server's environment; the UI
# stays up at http://localhost:8080. Options: make demo DEMO_ARGS='--port 8081' (see
# `$(PY) scripts/demo.py up --help`). `make demo-stop` stops exactly the Airflow services it
# started (PostgreSQL and Redis keep running).
demo: install
	@$(PY) scripts/demo.py up $(DEMO_ARGS)

demo-stop:
	@$(if $(wildcard $(PY)),$(PY),$(PYTHON)) scripts/demo.py stop

lint: install
	$(VENV)/bin/ruff check airflow_policyzones tests benchmarks dags_examples scripts docker
	$(VENV)/bin/ruff format --check airflow_policyzones tests benchmarks dags_examples scripts docker
	$(VENV)/bin/mypy
	$(VENV)/bin/mypy scripts docker/image_constraints.py

# Fast tests on both cores, then the end-to-end and browser tests (each starts a real deployment)
# one by one. Browser screenshots land in test-artifacts/browser/.
unit: install browser-deps
	$(PY) -m pytest -q -n 2 -m "not e2e and not browser"
	$(PY) -m pytest -q -m "e2e or browser"

# Regenerate the README's screenshots (docs/screenshots/) from the browser tests.
screenshots: install browser-deps
	POLICYZONES_UPDATE_SCREENSHOTS=1 $(PY) -m pytest -q -m browser

test: lint unit

bench: install
	$(PY) -m benchmarks.bench_engine
	$(PY) -m benchmarks.bench_sql
	$(PY) -m benchmarks.bench_airflow
	$(PY) -m benchmarks.bench_flows
	$(PY) -m benchmarks.bench_lineage
	$(PY) -m benchmarks.bench_policy_diff
	$(PY) -m benchmarks.bench_observed
	$(PY) -m benchmarks.bench_ui
	$(PY) -m benchmarks.bench_connections
	$(PY) -m benchmarks.bench_evidence
	$(PY) -m benchmarks.bench_verify

# The audit API's violation list at scale (PostgreSQL), with and without the provider's indexes.
bench-ui: install
	$(PY) -m benchmarks.bench_ui

clean: demo-stop
	rm -rf $(VENV) .demo .mypy_cache .ruff_cache .pytest_cache .hypothesis test-artifacts build *.egg-info
