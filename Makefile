# The README's two commands are `make run` and `make test`; both work on a fresh clone.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: run test lint typecheck schemas-check ops-check pytest bench install clean

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

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

# Starts Apache Kafka and PostgreSQL on loopback for the tests that need them (deploy/).
pytest: $(STAMP)
	deploy/with-services.sh $(BIN)/pytest

test: lint typecheck schemas-check ops-check pytest

# Benchmarks print their figures and ratios, and append them to bench/RESULTS.md. The projector
# and gateway benchmarks use the Kafka and PostgreSQL that deploy/with-services.sh starts.
bench: $(STAMP)
	$(BIN)/python -m bench.bench_validation --record
	deploy/with-services.sh sh -c '$(BIN)/python -m bench.bench_projector --record && $(BIN)/python -m bench.bench_gateway --record'

clean:
	rm -rf $(VENV) .intake .pytest_cache .mypy_cache .ruff_cache
