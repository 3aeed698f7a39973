# Quick start: `make demo` then `make test` (README). Everything installs into .venv.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install demo test test-fast lint format typecheck bench clean help flink-env

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

bench: $(STAMP)  ## all benchmarks, JSON under runs/bench/ (each: python benchmarks/NAME.py --help)
	mkdir -p runs/bench
	@failed=""; for b in benchmarks/bench_*.py; do \
		echo "== $$b"; \
		$(BIN)/python $$b --json runs/bench/$$(basename $$b .py).json || failed="$$failed $$b"; \
	done; \
	if [ -n "$$failed" ]; then echo "failed, or missed its target (bench_service: no rate held):$$failed" >&2; exit 1; fi

# PyFlink pins older numpy/pyarrow and apache-beam, so the Flink job has its own venv
# (docs/realtime.md, Flink); tests/features/test_flink_job.py skips without it.
FLINK_VENV := .venv-flink
FLINK_STAMP := $(FLINK_VENV)/.installed

$(FLINK_STAMP): pyproject.toml
	@command -v java >/dev/null || { echo "flink-env needs Java 17 (apt-get install openjdk-17-jre-headless)" >&2; exit 1; }
	test -x $(FLINK_VENV)/bin/python || $(PYTHON) -m venv $(FLINK_VENV)
	$(FLINK_VENV)/bin/pip install --quiet --upgrade pip
	$(FLINK_VENV)/bin/pip install --quiet 'apache-flink==2.3.0'
	# transact without the serving/training deps: what the realtime stage imports, torch
	# pinned to the CPU release (any other version pulls a CUDA build)
	$(FLINK_VENV)/bin/pip install --quiet torch==2.13.0 'rocksdict>=0.3.23' tqdm
	$(FLINK_VENV)/bin/pip install --quiet --no-deps -e .
	$(FLINK_VENV)/bin/python -c "import pyflink, transact.features.flink_job"
	touch $(FLINK_STAMP)

flink-env: $(FLINK_STAMP)  ## build .venv-flink (PyFlink + this package; needs Java 17) for the Flink job

clean:  ## remove generated runs and caches (keeps .venv)
	rm -rf runs .pytest_cache .mypy_cache .ruff_cache
