# Two commands on a fresh machine with only Python and pip:
#   make demo   - create .venv, install, generate sample data, cook it, show the results
#   make test   - create .venv with the test extras, lint, run the whole suite
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
DEMO   ?= demo-data

.PHONY: demo test lint bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e .
	touch $@

$(VENV)/.installed-test: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e '.[test,hpc]'
	touch $@ $(VENV)/.installed

demo: $(VENV)/.installed
	$(BIN)/basinflow demo $(DEMO)

lint: $(VENV)/.installed-test
	$(BIN)/ruff check basinflow tests benchmarks

test: $(VENV)/.installed-test lint
	$(BIN)/pytest -q

bench: $(VENV)/.installed-test
	$(BIN)/python benchmarks/bench_rsm.py && $(BIN)/python -m benchmarks.bench_access && $(BIN)/python benchmarks/bench_referrer.py && $(BIN)/python benchmarks/bench_writer.py && $(BIN)/python benchmarks/bench_flows.py

clean:
	rm -rf $(VENV) $(DEMO) .pytest_cache
