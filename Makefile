# The README's two commands are `make run` and `make test`; both work on a fresh clone.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
HOST ?= 127.0.0.1
PORT ?= 8000
UV_VERSION := 0.13.9
UV := $(BIN)/uv
# Every lock is resolved for every platform, with the hashes of every file it may install.
LOCK := $(UV) pip compile --quiet --universal --generate-hashes --python-version 3.11 --custom-compile-command "make lock"

.PHONY: run test lint typecheck schemas-check ops-check pytest bench install lock clean

# The bootstrap: a venv, uv into it from PyPI (pinned with hashes), then every package from the
# lock file with its hashes, then this project itself (editable). About 10 s with a warm cache.
$(STAMP): pyproject.toml requirements.lock requirements-bootstrap.lock
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --require-hashes --no-deps -r requirements-bootstrap.lock
	$(UV) pip install --quiet --python $(BIN)/python --require-hashes -r requirements.lock
	$(UV) pip install --quiet --python $(BIN)/python --no-deps -e .
	touch $(STAMP)

install: $(STAMP)

# Re-resolve the locks after a change to pyproject.toml's dependencies, keeping the versions
# they hold where they still fit (add --upgrade to LOCK to move to the newest).
lock: $(STAMP)
	$(LOCK) pyproject.toml --extra dev -o requirements.lock
	$(LOCK) pyproject.toml -c requirements.lock -o requirements-runtime.lock
	echo "uv==$(UV_VERSION)" | $(LOCK) - -o requirements-bootstrap.lock

run: $(STAMP)
	$(BIN)/intake serve --host $(HOST) --port $(PORT)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

# A new model version must keep the compatibility its type promises.
schemas-check: $(STAMP)
	$(BIN)/intake schemas check

# Prometheus scrape config and alert rules: promtool check config/rules and the rules' unit
# tests (installs Debian's prometheus package when promtool is missing).
ops-check:
	deploy/prometheus/prometheus.sh check

# Starts Apache Kafka and PostgreSQL on loopback for the tests that need them (deploy/), with
# kustomize (from the Go module proxy) for the Kubernetes manifest tests.
pytest: $(STAMP)
	INTAKE_TEST_KUSTOMIZE="$$(deploy/kustomize.sh install)" deploy/with-services.sh $(BIN)/pytest

test: lint typecheck schemas-check ops-check pytest

# Benchmarks print their figures and ratios, and append them to bench/RESULTS.md. The projector
# and gateway benchmarks use the Kafka and PostgreSQL that deploy/with-services.sh starts.
bench: $(STAMP)
	$(BIN)/python -m bench.bench_validation --record
	$(BIN)/python -m bench.bench_review --record
	deploy/with-services.sh sh -c '$(BIN)/python -m bench.bench_projector --record && $(BIN)/python -m bench.bench_gateway --record'

clean:
	rm -rf $(VENV) .intake .pytest_cache .mypy_cache .ruff_cache
