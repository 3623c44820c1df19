# quantum-slm: the front door. `make` alone prints this help.
# Every target creates and reuses the project's virtual environment (.venv) by itself.

SHELL := /bin/bash
SPECS := $(sort $(basename $(notdir $(wildcard data/builds/*.yaml))))
comma := ,

# A value given to make (VERSION, Q, OUT, ...) never reaches make's expansion or a shell unquoted: each command-line
# value becomes a simple variable holding its raw text (make never expands a `$(shell ...)` inside it, and exports
# it to the recipes' environment as it is, so QSLM_STORE=... on the command line still reaches the commands), and
# recipes take it as $(call q,NAME): that text in single quotes.
# A newline becomes bash's $'\n' (make would end the command line there).
define nl


endef
q = '$(subst $(nl),'$$'\n'',$(subst ','\'',$(value $(1))))'
given = $(value $(1))
given_on_command_line := $(foreach v,$(.VARIABLES),$(if $(filter command line,$(origin $(v))),$(v)))
$(foreach v,$(given_on_command_line),$(eval override $(v) := $$(value $(v))))
export $(given_on_command_line)
# Values that name tags, files or ports are checked against their pattern before anything else runs (the whole
# value: bash's =~ has no multi-line mode, so a newline fails it). VERSION takes a comma list (submit, serve).
TAG_RE := [A-Za-z0-9][A-Za-z0-9._-]{0,62}
VERSION_RE := $(TAG_RE)(,$(TAG_RE))*
VERSION_WHY := is not a build tag: letters, digits, '.', '_' or '-', at most 63 (make submit and make serve take several, comma-separated); build specs: $(SPECS)
PATH_RE := [A-Za-z0-9._/+-]+
PATH_WHY := is not a plain path: letters, digits, '.', '_', '/', '+' or '-' only
EXTRAS_RE := [a-z0-9_,-]+
EXTRAS_WHY := is not a comma list of extras (pyproject.toml)
PORT_RE := [0-9]{1,5}
PORT_WHY := is not a port number
from_user = $(filter command line environment environment override,$(origin $(1)))
matches = $(shell v=$(call q,$(1)); [[ $$v =~ ^($($(2)))$$ ]] && echo ok)
check = $(if $(and $(call from_user,$(1)),$(call given,$(1))),$(if $(call matches,$(1),$(2)),,$(error $(1)=$(call q,$(1)) $($(3)))))
$(call check,VERSION,VERSION_RE,VERSION_WHY)
$(call check,PYTHON,PATH_RE,PATH_WHY)
$(call check,VENV,PATH_RE,PATH_WHY)
$(call check,EXTRAS,EXTRAS_RE,EXTRAS_WHY)
$(call check,PORT,PORT_RE,PORT_WHY)

# Python 3.11 to 3.13 (CI tests 3.11; the GPU measurements ran on 3.12); README: how to get one on Ubuntu / Debian
PYTHON ?= $(shell command -v python3.11 || command -v python3.12 || command -v python3.13 || command -v python3)
VENV ?= .venv
PY := $(VENV)/bin/python
EXTRAS ?= curate,new,train,eval,serve,studio,workflows,tracking,dev
A ?=
B ?=
PORT ?= 8000

.DEFAULT_GOAL := help
.PHONY: help venv gguf need-version export-args new review report build test test-fast test-faults test-gpu list show verify compare promote rollback gc ask serve studio export images constraints render submit local-run cluster bench clean

help: ## Show this help
	@echo "quantum-slm: your documents in, a versioned, evaluated QLoRA adapter out."
	@echo
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'
	@echo
	@echo "Build specs (VERSION=...): $(SPECS)"
	@echo "Store: $${QSLM_STORE:-store/ (local directory; set QSLM_STORE=s3://bucket for MinIO)}"

$(VENV)/.installed: pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if (3, 11) <= sys.version_info[:2] <= (3, 13) else "quantum-slm needs Python 3.11, 3.12 or 3.13 (this is %d.%d); set PYTHON=/path/to/python3.12 (README: Python)" % sys.version_info[:2])'
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# torch is pinned in pyproject (2.13.0); pip takes a local CPU wheel where one lies on disk
	$(PY) -m pip install -q -e '.[$(EXTRAS)]'
	@touch $@

venv: $(VENV)/.installed ## Create or update the virtual environment

# llama-cpp-python has no wheels on the package index: pip compiles llama.cpp (minutes on 2 cores, once per
# machine: pip keeps the wheel in the cache named here). Its multimodal library is not needed to convert or run a
# GGUF. Built for this CPU (-march=native) but without AMX: on CPUs that have it (Intel Sapphire Rapids and
# later) llama.cpp moves Q8_0 and K-quant weights into its AMX buffer and segfaults in ggml_backend_amx_mul_mat
# on the first decode (ggml-org/llama.cpp#20824, unfixed in 0.3.36's llama.cpp); F16 never goes there. -march=native
# turns AMX on whatever GGML_AMX_* say, so the compiler is told -mno-amx-*. The cache folder is named after these
# options: a wheel pip cached from a build with AMX is never reused.
GGUF_CFLAGS := $(if $(filter x86_64 amd64,$(shell uname -m)),-mno-amx-tile -mno-amx-int8 -mno-amx-bf16)
GGUF_PIP_CACHE := $${XDG_CACHE_HOME:-$$HOME/.cache}/quantum-slm/pip-llama-noamx
$(VENV)/.gguf: $(VENV)/.installed
	CFLAGS="$(GGUF_CFLAGS) $$CFLAGS" CXXFLAGS="$(GGUF_CFLAGS) $$CXXFLAGS" CMAKE_ARGS="-DLLAVA_BUILD=OFF $$CMAKE_ARGS" \
	  $(PY) -m pip install -q --cache-dir "$(GGUF_PIP_CACHE)" -e '.[gguf]'
	$(PY) -m jobs.serve.gguf --check
	@touch $@

gguf: $(VENV)/.gguf ## Install llama.cpp's Python binding, for FORMAT=gguf exports and their test (compiles llama.cpp)

need-version:
	@if [ -z $(call q,VERSION) ]; then echo "error: give a build tag: make "$(call q,MAKECMDGOALS)" VERSION=<tag>  (build specs in data/builds/: $(SPECS))" >&2; exit 2; fi

# Values reach the commands through the environment ("$$VERSION"), never pasted into the shell line.
new: venv ## From a folder of your documents to a spec and a draft suite: make new VERSION=mine SOURCES=~/thesis [WRITER=engine|openai] [LINK=1] [LIKE=v2] [QA=pairs.jsonl]
	@if [ -z "$$VERSION" ] || [ -z "$$SOURCES" ]; then echo "error: give a new build tag and your folder: make new VERSION=mine SOURCES=~/thesis" >&2; exit 2; fi
	$(PY) -m jobs.new --tag "$$VERSION" --sources "$$SOURCES" --like "$${LIKE:-v2}" $${WRITER:+--writer "$$WRITER"} $${LINK:+--link} $${QA:+--qa "$$QA"}

review: need-version venv ## Go through a build's draft questions: accept, edit or drop each: make review VERSION=mine
	$(PY) -m jobs.new.review --tag "$$VERSION"

report: need-version venv ## Print a build's report path (and open it where a browser can): make report VERSION=v1
	$(PY) -m jobs.core.store.cli report "$$VERSION"

build: need-version venv ## Run a whole build locally: make build VERSION=smoke (curate, train, eval, publish)
	$(PY) -m workflows.build --tag $(call q,VERSION)

test: venv ## Run every test tier (unit, tiny-model, docker when an engine can be started)
	HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 $(PY) -m pytest -q

test-fast: venv ## Run the unit tests only (no tiny-model, fault or docker tests)
	HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 $(PY) -m pytest -q -m "not slow and not docker"

test-faults: venv ## Run the fault tier only: kill -9 in publish/train/eval/build, racing publishes, S3 endpoint faults
	HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 $(PY) -m pytest -q -m faults

test-gpu: venv ## Run the GPU tier only (Qwen2.5-1.5B's shape on a CUDA GPU; skipped without one): fast vs exact logits, packing, memory, resume
	HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 $(PY) -m pytest -q -m gpu

list: venv ## List the builds in the store with status and headline scores
	$(PY) -m jobs.core.store.cli list

show: need-version venv ## A build's summary, its files re-hashed: make show VERSION=v1 [RAW=1: the manifest as stored]
	$(PY) -m jobs.core.store.cli show "$$VERSION" $${RAW:+--raw}

verify: need-version venv ## Re-hash every file of a build against its manifest: make verify VERSION=v1
	$(PY) -m jobs.core.store.cli verify $(call q,VERSION)

compare: venv ## Compare two builds, down to the questions lost and gained: make compare A=v1 B=v2 [ARM=adapter+retrieval] (or VERSION=v2: against its previous build of the same lineage)
	$(PY) -m jobs.eval.compare $${A:+--a "$$A"} $${B:+--b "$$B"} $${VERSION:+--b "$$VERSION"} $${ARM:+--arm "$$ARM"}

promote: need-version venv ## Make a build that passed its gate current: make promote VERSION=v2
	$(PY) -m jobs.core.store.cli promote $(call q,VERSION)

rollback: venv ## Move `current` back to the previously promoted build
	$(PY) -m jobs.core.store.cli rollback

gc: venv ## List what interrupted or losing publishes left in the store; APPLY=1 removes it [MIN_AGE_HOURS=24] [CLEAR_CACHE=writer|all]
	$(PY) -m jobs.core.store.cli gc $(if $(call given,APPLY),--apply) $(if $(call given,MIN_AGE_HOURS),--min-age-hours $(call q,MIN_AGE_HOURS)) \
	  $(if $(call given,CLEAR_CACHE),--clear-cache $(call q,CLEAR_CACHE))

ask: venv ## Ask a build: make ask [VERSION=tag] [Q="question"] [RETRIEVAL=on|off] (no Q: a chat; no VERSION: the promoted build)
	$(PY) -m jobs.serve.ask $(if $(call given,VERSION),--tag $(call q,VERSION)) $(if $(call given,Q),-q $(call q,Q)) \
	  $(if $(call given,RETRIEVAL),--retrieval $(call q,RETRIEVAL))

serve: venv ## OpenAI-compatible API on localhost: make serve [VERSION=tag[,tag...]] [PORT=8000] [RETRIEVAL=on|off]
	$(PY) -m jobs.serve.api $(if $(call given,VERSION),--tag $(call q,VERSION)) --port $(call q,PORT) \
	  $(if $(call given,RETRIEVAL),--retrieval $(call q,RETRIEVAL))

studio: venv ## The studio, a local web page over the store: builds, reports, compare, running builds, chat [PORT=8080] [CHANGES=1: promote/rollback/review]
	$(PY) -m jobs.studio --port $(if $(filter command line environment,$(origin PORT)),$(call q,PORT),8080) $(if $(call given,CHANGES),--allow-changes)

# FORMAT and QUANT are checked (export-args, the system Python, standard library only) before the venv is made or
# llama.cpp compiled.
export: need-version export-args venv $(if $(filter gguf,$(call given,FORMAT)),$(VENV)/.gguf) ## Standalone model + card: make export VERSION=tag [FORMAT=gguf QUANT=Q4_K_M] [OUT=dir] (gguf: + Ollama Modelfile)
	$(PY) -m jobs.serve.export --tag $(call q,VERSION) --format "$${FORMAT:-hf}" --quant "$${QUANT:-Q4_K_M}" \
	  $(if $(call given,OUT),--out $(call q,OUT))

export-args:
	@$(PYTHON) -m jobs.serve.exportargs --format "$${FORMAT:-hf}" --quant "$${QUANT:-Q4_K_M}"

images: need-version ## Build the curate/train/eval images tagged VERSION and print sizes [REGISTRY=host:port PUSH=1 | K3S_IMPORT=1] [PYTHON_BASE=.. TORCH_BASE=..]
	$(PYTHON) images/build_images.py --tag $(call q,VERSION) $(if $(call given,REGISTRY),--registry $(call q,REGISTRY)) $(if $(call given,PUSH),--push) \
	  $(if $(call given,K3S_IMPORT),--k3s-import) $(if $(call given,PYTHON_BASE),--python-base $(call q,PYTHON_BASE)) $(if $(call given,TORCH_BASE),--torch-base $(call q,TORCH_BASE))

constraints: venv ## Re-pin the images' packages to the venv's exact versions (after changing pyproject.toml)
	{ sed -n 1,4p images/constraints.txt; $(VENV)/bin/pip freeze --exclude-editable | grep -v '^torch=='; } > images/constraints.txt.new
	mv images/constraints.txt.new images/constraints.txt

render: venv ## Write the Argo YAML from workflows/pipeline.py (committed; a test fails when it drifts)
	$(PY) -m workflows.render

submit: need-version venv ## Start builds on the cluster, side by side: make submit VERSION=v2[,v3] [WAIT=1] [IMAGE_TAG=local] [IMAGES=1] [REGISTRY=host:port] [K3S=1]
	$(PY) -m jobs.core.spec $(subst $(comma),' ',$(call q,VERSION))
	$(PY) -m workflows.submit --tag $(call q,VERSION) $(if $(call given,WAIT),--wait) $(if $(call given,IMAGES),--build-images) \
	  $(if $(call given,IMAGE_TAG),--image-tag $(call q,IMAGE_TAG)) $(if $(call given,REGISTRY),--registry $(call q,REGISTRY)) \
	  $(if $(call given,K3S),--k3s-import)

local-run: venv ## Run the rendered workflows with Docker as a cluster would: VERSION=smoke, or PAYLOAD=push.json IMAGE_TAG=smoke (needs QSLM_STORE=s3://..., S3_ENDPOINT_URL)
	@if [ -z $(call q,VERSION)$(call q,PAYLOAD) ]; then echo "error: give VERSION=<tag> (a build as make submit starts it) or PAYLOAD=<push.json> IMAGE_TAG=<tag> (a git push)" >&2; exit 2; fi
	$(PY) -m workflows.emulator.run $(if $(call given,PAYLOAD),--payload $(call q,PAYLOAD),--tag $(call q,VERSION)) $(if $(call given,IMAGE_TAG),--image-tag $(call q,IMAGE_TAG))

cluster: ## Set up k3s + NVIDIA + Argo Workflows + this chart on this GPU workstation (idempotent; DRY_RUN=1 prints the plan; UNINSTALL=1 [DELETE_DATA=1] removes it)
	DRY_RUN=$(call q,DRY_RUN) UNINSTALL=$(call q,UNINSTALL) DELETE_DATA=$(call q,DELETE_DATA) scripts/cluster.sh

bench: venv ## Curation benchmark on this machine (GPU benchmarks: see docs/benchmarks.md)
	$(PY) -m bench.curate

clean: ## Remove scratch folders (.work/); the store, exports/ and the venv stay
	rm -rf .work
