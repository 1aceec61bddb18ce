# vdc: `make run` and `make test` do all set-up on a fresh Debian machine (as root).
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint fmt e2e bench screenshots setup host-packages venv clean

run: setup
	$(BIN)/vdc migrate
	$(BIN)/vdc serve

setup: host-packages venv

host-packages:
	@bash scripts/install-host-packages.sh run

venv: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	@touch $@

# The whole suite: unit, integration (SQLite and PostgreSQL), CLI, and e2e with real guests.
test: setup
	@bash scripts/install-host-packages.sh test
	VDC_TEST_POSTGRES_URL="$$(bash scripts/start-test-postgres.sh)" $(BIN)/pytest $(PYTEST_ARGS)

# Real guests only: a network namespace with its own libvirtd, vdc serve inside it.
e2e: setup
	$(BIN)/pytest tests/e2e $(PYTEST_ARGS)

# The README's screenshots (docs/screenshots/), taken again by the UI tests; other runs of
# the tests put theirs in .artifacts/screenshots/ and leave the checkout clean.
screenshots: setup
	@bash scripts/install-host-packages.sh test
	VDC_REFRESH_SCREENSHOTS=1 $(BIN)/pytest tests/ui tests/e2e/test_screen_e2e.py $(PYTEST_ARGS)

# Every benchmark in turn (bench/all.py): each prints its figures next to a baseline measured
# in the same run and its aims, PASS or MISS; the verdicts are gathered at the end.
# BENCH_ARGS="--only list,launch" runs some of them.
bench: setup
	@bash scripts/install-host-packages.sh test
	VDC_TEST_POSTGRES_URL="$$(bash scripts/start-test-postgres.sh)" $(BIN)/python bench/all.py $(BENCH_ARGS)

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

fmt: setup
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
