# quantum-slm: the front door. `make` alone prints this help.
# Every target creates and reuses the project's virtual environment (.venv) by itself.

SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
PY := $(VENV)/bin/python
EXTRAS ?= curate,train,eval,serve,workflows,dev
SPECS := $(sort $(basename $(notdir $(wildcard data/builds/*.yaml))))
A ?=
B ?=
comma := ,
PORT ?= 8000

.DEFAULT_GOAL := help
.PHONY: help venv gguf need-version build test test-fast test-faults list show verify compare promote rollback gc ask serve export images constraints render submit local-run cluster bench clean

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

# llama-cpp-python has no wheels on the package index: pip compiles llama.cpp (minutes on 2 cores, once per
# machine: pip keeps the wheel in its cache). Its multimodal library is not needed to convert or run a GGUF.
$(VENV)/.gguf: $(VENV)/.installed
	CMAKE_ARGS="-DLLAVA_BUILD=OFF $$CMAKE_ARGS" $(PY) -m pip install -q -e '.[gguf]'
	@touch $@

gguf: $(VENV)/.gguf ## Install llama.cpp's Python binding, for FORMAT=gguf exports and their test (compiles llama.cpp)

need-version:
	@if [ -z "$(VERSION)" ]; then echo "error: give a build tag: make $(MAKECMDGOALS) VERSION=<tag>  (build specs in data/builds/: $(SPECS))" >&2; exit 2; fi

build: need-version venv ## Run a whole build locally: make build VERSION=smoke (curate, train, eval, publish)
	$(PY) -m jobs.core.build --tag $(VERSION)

test: venv ## Run every test tier (unit, tiny-model, docker when an engine can be started)
	HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 $(PY) -m pytest -q

test-fast: venv ## Run the unit tests only (no tiny-model, fault or docker tests)
	HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 $(PY) -m pytest -q -m "not slow and not docker"

test-faults: venv ## Run the fault tier only: kill -9 in publish/train/eval/build, racing publishes, S3 endpoint faults
	HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 $(PY) -m pytest -q -m faults

list: venv ## List the builds in the store with status and headline scores
	$(PY) -m jobs.core.cli list

show: need-version venv ## Print a build's manifest and re-hash its files: make show VERSION=v1
	$(PY) -m jobs.core.cli show $(VERSION)

verify: need-version venv ## Re-hash every file of a build against its manifest: make verify VERSION=v1
	$(PY) -m jobs.core.cli verify $(VERSION)

compare: venv ## Compare two builds, down to the questions lost and gained: make compare A=v1 B=v2 [ARM=adapter+retrieval] (A: current, B: newest by default)
	$(PY) -m jobs.eval.compare $(if $(A),--a $(A)) $(if $(B),--b $(B)) $(if $(ARM),--arm "$$ARM")

promote: need-version venv ## Make a build that passed its gate current: make promote VERSION=v2
	$(PY) -m jobs.core.cli promote $(VERSION)

rollback: venv ## Move `current` back to the previously promoted build
	$(PY) -m jobs.core.cli rollback

gc: venv ## List what interrupted or losing publishes left in the store; APPLY=1 removes it [MIN_AGE_HOURS=24]
	$(PY) -m jobs.core.cli gc $(if $(APPLY),--apply) $(if $(MIN_AGE_HOURS),--min-age-hours $(MIN_AGE_HOURS))

ask: venv ## Ask a build: make ask [VERSION=tag] [Q="question"] [RETRIEVAL=on|off] (no Q: a chat; no VERSION: the promoted build)
	$(PY) -m jobs.serve.ask $(if $(VERSION),--version $(VERSION)) $(if $(Q),-q "$$Q") $(if $(RETRIEVAL),--retrieval "$$RETRIEVAL")

serve: venv ## OpenAI-compatible API on localhost: make serve [VERSION=tag[,tag...]] [PORT=8000] [RETRIEVAL=on|off]
	$(PY) -m jobs.serve.api $(if $(VERSION),--version $(VERSION)) --port $(PORT) $(if $(RETRIEVAL),--retrieval "$$RETRIEVAL")

export: need-version venv $(if $(filter gguf,$(FORMAT)),$(VENV)/.gguf) ## Standalone model + card: make export VERSION=tag [FORMAT=gguf QUANT=Q4_K_M] [OUT=dir]
	$(PY) -m jobs.serve.export --version $(VERSION) $(if $(FORMAT),--format $(FORMAT)) $(if $(QUANT),--quant $(QUANT)) \
	  $(if $(OUT),--out $(OUT))

images: need-version ## Build the curate/train/eval images tagged VERSION and print sizes [REGISTRY=host:port PUSH=1 | K3S_IMPORT=1] [PYTHON_BASE=.. TORCH_BASE=..]
	$(PYTHON) images/build_images.py --tag $(VERSION) $(if $(REGISTRY),--registry $(REGISTRY)) $(if $(PUSH),--push) \
	  $(if $(K3S_IMPORT),--k3s-import) $(if $(PYTHON_BASE),--python-base $(PYTHON_BASE)) $(if $(TORCH_BASE),--torch-base $(TORCH_BASE))

constraints: venv ## Re-pin the images' packages to the venv's exact versions (after changing pyproject.toml)
	{ sed -n 1,4p images/constraints.txt; $(VENV)/bin/pip freeze --exclude-editable | grep -v '^torch=='; } > images/constraints.txt.new
	mv images/constraints.txt.new images/constraints.txt

render: venv ## Write the Argo YAML from workflows/pipeline.py (committed; a test fails when it drifts)
	$(PY) -m workflows.render

submit: need-version venv ## Start builds on the cluster, side by side: make submit VERSION=v2[,v3] [WAIT=1] [IMAGES=1] [REGISTRY=host:port] [K3S=1]
	$(PY) -m jobs.core.spec $(subst $(comma), ,$(VERSION))
	$(PY) -m workflows.submit --version $(VERSION) $(if $(WAIT),--wait) $(if $(IMAGES),--build-images) \
	  $(if $(REGISTRY),--registry $(REGISTRY)) $(if $(K3S),--k3s-import)

local-run: venv ## Run the rendered workflows with Docker as a cluster would: VERSION=smoke, or PAYLOAD=push.json IMAGE_TAG=smoke (needs QSLM_STORE=s3://..., S3_ENDPOINT_URL)
	@if [ -z "$(VERSION)$(PAYLOAD)" ]; then echo "error: give VERSION=<tag> (a build as make submit starts it) or PAYLOAD=<push.json> IMAGE_TAG=<tag> (a git push)" >&2; exit 2; fi
	$(PY) -m workflows.local_run $(if $(PAYLOAD),--payload $(PAYLOAD),--version $(VERSION)) $(if $(IMAGE_TAG),--image-tag $(IMAGE_TAG))

cluster: ## Set up k3s + NVIDIA + Argo Workflows + this chart on this GPU workstation (idempotent; DRY_RUN=1 prints the plan)
	DRY_RUN=$(DRY_RUN) scripts/cluster.sh

bench: venv ## Curation benchmark on this machine (GPU benchmarks: see docs/benchmarks.md)
	$(PY) -m jobs.curate.bench

clean: ## Remove scratch folders (.work/); the store, exports/ and the venv stay
	rm -rf .work
