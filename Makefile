# quantum-slm: the front door. `make` alone prints this help.
# Every target creates and reuses the project's virtual environment (.venv) by itself.

SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
PY := $(VENV)/bin/python
EXTRAS ?= curate,train,eval,workflows,dev
SPECS := $(sort $(basename $(notdir $(wildcard data/builds/*.yaml))))
A ?=
B ?=

.DEFAULT_GOAL := help
.PHONY: help venv build test test-fast list show compare promote rollback images render submit clean

help: ## Show this help
	@echo "quantum-slm: your documents in, a versioned, evaluated QLoRA adapter out."
	@echo
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'
	@echo
	@echo "Build specs (VERSION=...): $(SPECS)"
	@echo "Store: $${QSLM_STORE:-store/ (local directory; set QSLM_STORE=s3://bucket for MinIO)}"

$(VENV)/.installed: pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info[:2] == (3, 11) else "quantum-slm needs Python 3.11; set PYTHON=/path/to/python3.11")'
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# torch is pinned in pyproject (2.13.0); pip takes a local CPU wheel where one lies on disk
	$(PY) -m pip install -q -e '.[$(EXTRAS)]'
	@touch $@

venv: $(VENV)/.installed ## Create or update the virtual environment

need-version:
	@if [ -z "$(VERSION)" ]; then echo "error: give a build tag: make $(MAKECMDGOALS) VERSION=<tag>  (build specs in data/builds/: $(SPECS))" >&2; exit 2; fi

build: need-version venv ## Run a whole build locally: make build VERSION=smoke (curate, train, eval, publish)
	$(PY) -m jobs.core.build --tag $(VERSION)

test: venv ## Run every test tier (unit, tiny-model, docker when an engine can be started)
	HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 $(PY) -m pytest -q

test-fast: venv ## Run the unit tests only (no tiny-model or docker tests)
	HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 $(PY) -m pytest -q -m "not slow and not docker"

list: venv ## List the builds in the store with status and headline scores
	$(PY) -m jobs.core.cli list

show: need-version venv ## Print a build's manifest: make show VERSION=v1
	$(PY) -m jobs.core.cli show $(VERSION)

compare: venv ## Compare two builds: make compare A=v1 B=v2 (A defaults to current, B to the newest build)
	$(PY) -m jobs.eval.compare $(if $(A),--a $(A)) $(if $(B),--b $(B))

promote: need-version venv ## Make a build that passed its gate current: make promote VERSION=v2
	$(PY) -m jobs.core.cli promote $(VERSION)

rollback: venv ## Move `current` back to the previously promoted build
	$(PY) -m jobs.core.cli rollback

clean: ## Remove scratch folders (.work/); the store and the venv stay
	rm -rf .work
