# Every target creates .venv and installs what it needs on first use.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
RUN_STAMP := $(VENV)/.run-installed
DEV_STAMP := $(VENV)/.dev-installed
BENCH_STAMP := $(VENV)/.bench-installed
# The recall extra's PyTorch, CPU build. This machine's pip finds it on disk; elsewhere add
# TORCH_INDEX=https://download.pytorch.org/whl/cpu, or pip takes a CUDA build of several GB.
TORCH ?= torch==2.13.0
TORCH_INDEX ?=
TORCH_INSTALL = $(PY) -m pip install --quiet '$(TORCH)' $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX))
# `make test` installs the recall extra (the local embedding model) into the same .venv. `make run` and `make chat`
# still use hashing embeddings, so the quick start does the same thing on every checkout (no 500 MB model loaded);
# `make run EMBEDDINGS=minilm` (or auto) uses the local model.
EMBEDDINGS ?= $(or $(SUPPORTBOT_MEMORY__EMBEDDINGS),hashing)

.PHONY: install run chat test lint format bench soak chaos clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

$(RUN_STAMP): pyproject.toml | $(PY)
	$(PY) -m pip install --quiet -e .
	touch $@

# Tests and benchmarks run the real local embedding model, so they install the recall extra.
$(DEV_STAMP): pyproject.toml | $(PY)
	$(TORCH_INSTALL)
	$(PY) -m pip install --quiet -e '.[dev,recall]'
	touch $@

$(BENCH_STAMP): $(DEV_STAMP)
	$(PY) -m pip install --quiet -e '.[dev,recall,bench]'
	touch $@

install: $(DEV_STAMP)

run: $(RUN_STAMP)
	SUPPORTBOT_MEMORY__EMBEDDINGS=$(EMBEDDINGS) $(VENV)/bin/supportbot serve

chat: $(RUN_STAMP)
	SUPPORTBOT_MEMORY__EMBEDDINGS=$(EMBEDDINGS) $(VENV)/bin/supportbot chat

test: $(DEV_STAMP)
	$(PY) -m pytest

lint: $(DEV_STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

format: $(DEV_STAMP)
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

bench: $(BENCH_STAMP)
	$(PY) bench/core_bench.py --plot docs/bench_core.png --json docs/bench_core.json
	$(PY) bench/recall_bench.py --json docs/bench_recall.json
	$(PY) bench/offline_eval.py --json docs/bench_offline.json
	$(PY) bench/inbox_bench.py --json docs/bench_inbox.json

soak: $(DEV_STAMP)
	$(PY) bench/soak.py --seconds 120 --sessions 200 --json docs/soak.json

# Four serve processes, one killed with SIGKILL every 5 s for two minutes, Redis restarted half-way: nothing
# acknowledged may be lost or answered twice.
chaos: $(DEV_STAMP)
	$(PY) bench/chaos.py --seconds 120 --sessions 200 --json docs/bench_chaos.json

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache build *.egg-info
