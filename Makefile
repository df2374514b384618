# Two commands on a fresh machine with only Python and pip:
#   make demo   - install from the lock, generate sample data, cook it, show the results
#   make test   - install from the lock with the test extras, lint, run the whole suite
#   make stack  - the deployment stack (deploy/compose.yaml's services) as local processes
# The environment is pinned by uv.lock (every package, every hash); `make lock` refreshes it.
PYTHON     ?= python3
VENV       ?= .venv
DEMO       ?= demo-data
BIN        := $(VENV)/bin
# uv itself is pinned too, installed with pip into a tools venv of its own (.tools/).
UV_VERSION := 0.13.9
TOOLS      := .tools
UV         := $(TOOLS)/bin/uv
# Never download a Python: use the one given (uv would otherwise fetch one when none fits).
export UV_PYTHON_DOWNLOADS := never
export UV_PROJECT_ENVIRONMENT := $(VENV)

.PHONY: demo test lint lock bench clean ui-shots stack

$(UV):
	$(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/pip install -q uv==$(UV_VERSION)

# --locked: fail (instead of re-resolving) when uv.lock no longer matches pyproject.toml.
# The demo syncs inexactly so that it never removes the test extras of an existing venv.
$(VENV)/.synced: uv.lock pyproject.toml | $(UV)
	$(UV) sync --locked --inexact --python $(PYTHON)
	touch $@

$(VENV)/.synced-test: uv.lock pyproject.toml | $(UV)
	$(UV) sync --locked --extra test --extra hpc --python $(PYTHON)
	touch $@ $(VENV)/.synced

demo: $(VENV)/.synced
	$(BIN)/basinflow demo $(DEMO)

# Screenshots of the demo's runs in the Prefect UI (Debian's chromium, headless, a loopback
# server on a free port): docs/img/ui-shots/*.png. Needs `apt-get install -y chromium`.
ui-shots: $(VENV)/.synced
	test -f $(DEMO)/basinflow.yaml || $(MAKE) demo
	$(BIN)/python docs/ui_shots.py --demo $(DEMO) --out docs/img/ui-shots

lint: $(VENV)/.synced-test
	$(BIN)/ruff check basinflow tests benchmarks deploy
	$(BIN)/ruff format --check basinflow tests benchmarks deploy

test: $(VENV)/.synced-test lint
	$(BIN)/pytest -q

# Re-resolve everything to the newest releases pyproject.toml allows, carry the versions into
# the deploy files, run the whole suite on the new set, and commit only if it passes.
lock: | $(UV)
	$(UV) lock --upgrade --python $(PYTHON)
	$(UV) sync --locked --extra test --extra hpc --python $(PYTHON)
	$(BIN)/python deploy/versions.py --write
	$(MAKE) test
	git add uv.lock deploy && git commit -m "lock: refresh uv.lock to the newest releases pyproject.toml allows ($$($(BIN)/python deploy/versions.py --summary))"

# The facility stack of deploy/compose.yaml as processes on this machine (PostgreSQL from
# Debian's `postgresql`, SeaweedFS S3, Dask, Prefect server and worker); Ctrl-C stops it.
stack: $(VENV)/.synced-test
	$(BIN)/python deploy/stack.py

bench: $(VENV)/.synced-test
	$(BIN)/python -m benchmarks.bench_rsm && $(BIN)/python -m benchmarks.bench_access && $(BIN)/python benchmarks/bench_referrer.py && $(BIN)/python benchmarks/bench_writer.py && $(BIN)/python -m benchmarks.bench_flows && $(BIN)/python -m benchmarks.bench_pins

clean:
	rm -rf $(VENV) $(TOOLS) $(DEMO) .pytest_cache
