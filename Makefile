# airflow-policyzones — the two commands: `make demo` and `make test`.
# Everything installs into ./.venv from the package registries; nothing is needed by hand.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
PY := $(VENV)/bin/python
PYVER := $(shell $(PYTHON) -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')
CONSTRAINTS := constraints/constraints-$(PYVER).txt
CONSTRAINT_FLAG := $(if $(wildcard $(CONSTRAINTS)),-c $(CONSTRAINTS),)
PIP := $(PY) -m pip --disable-pip-version-check
# Isolated Airflow home for the CLI demo, so a user's ~/airflow is never touched.
DEMO_HOME := $(CURDIR)/.demo/airflow-home

.PHONY: help install demo test lint unit bench clean

help:
	@echo "make demo   set up, then check the example DAGs against the example policy"
	@echo "make test   set up, then lint (ruff, mypy strict) and run the whole test suite"
	@echo "make bench  run the benchmarks (medians and ratios against baselines)"

$(VENV)/.installed: pyproject.toml $(wildcard $(CONSTRAINTS))
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q $(CONSTRAINT_FLAG) -e ".[test]"
	touch $@

install: $(VENV)/.installed

demo: install
	@mkdir -p $(DEMO_HOME)
	@echo "== policyzones validate dags_examples/policy.yaml"
	@AIRFLOW_HOME=$(DEMO_HOME) $(VENV)/bin/policyzones validate dags_examples/policy.yaml
	@echo
	@echo "== policyzones check dags_examples/policy.yaml dags_examples   (exit 1 = violations found)"
	@AIRFLOW_HOME=$(DEMO_HOME) AIRFLOW__CORE__LOAD_EXAMPLES=False \
		$(VENV)/bin/policyzones check dags_examples/policy.yaml dags_examples; \
		status=$$?; test $$status -le 1
	@echo
	@echo "== policyzones explain: may AI Training read raw purchases?"
	@AIRFLOW_HOME=$(DEMO_HOME) $(VENV)/bin/policyzones explain dags_examples/policy.yaml \
		--zone ai_training --dag-id ai_training_recsys --input s3://lake/raw/purchases/daily; \
		status=$$?; test $$status -le 1

lint: install
	$(VENV)/bin/ruff check airflow_policyzones tests benchmarks dags_examples
	$(VENV)/bin/ruff format --check airflow_policyzones tests benchmarks dags_examples
	$(VENV)/bin/mypy

unit: install
	$(PY) -m pytest -q

test: lint unit

bench: install
	$(PY) -m benchmarks.bench_engine
	$(PY) -m benchmarks.bench_airflow

clean:
	rm -rf $(VENV) .demo .mypy_cache .ruff_cache .pytest_cache .hypothesis build *.egg-info
