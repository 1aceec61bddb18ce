# vdc: `make run` and `make test` do all set-up on a fresh Debian machine (as root).
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint fmt e2e bench setup host-packages venv clean

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

# The whole suite: unit, integration (SQLite and PostgreSQL), CLI, and later e2e and UI.
test: setup
	@bash scripts/install-host-packages.sh test
	VDC_TEST_POSTGRES_URL="$$(bash scripts/start-test-postgres.sh)" $(BIN)/pytest $(PYTEST_ARGS)

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

fmt: venv
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
