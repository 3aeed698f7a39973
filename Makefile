# Quick start: `make demo` then `make test` (README). Everything installs into .venv.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install demo test test-fast lint format typecheck bench clean help

help:  ## list targets
	@grep -E '^[a-z-]+:.*##' $(MAKEFILE_LIST) | sed 's/:.*##/\t/'

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	# CPU build of torch from the pinned release first, so nothing pulls a CUDA build.
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e '.[dev,text]'
	touch $(STAMP)

install: $(STAMP)  ## create .venv and install the project with dev extras

demo: $(STAMP)  ## run the main job on the embedded default (simulated world)
	$(BIN)/transact demo

test: $(STAMP)  ## run the test suite (exit 5 = no tests collected counts as failure)
	$(BIN)/python -m pytest

test-fast: $(STAMP)  ## tests without the slow marker
	$(BIN)/python -m pytest -m "not slow"

lint: $(STAMP)  ## ruff lint + format check
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

format: $(STAMP)
	$(BIN)/ruff format src tests benchmarks
	$(BIN)/ruff check --fix src tests benchmarks

typecheck: $(STAMP)  ## mypy on src/
	$(BIN)/mypy

bench: $(STAMP)  ## all benchmarks, JSON under runs/bench/
	mkdir -p runs/bench
	for b in benchmarks/bench_*.py; do $(BIN)/python $$b --json runs/bench/$$(basename $$b .py).json || exit 1; done

clean:  ## remove generated runs and caches (keeps .venv)
	rm -rf runs .pytest_cache .mypy_cache .ruff_cache
