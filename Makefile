# Two commands do all the set-up on a fresh machine: `make demo` and `make test`.
SHELL := /bin/bash
.SHELLFLAGS := -eo pipefail -c
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
PYTEST_ARGS ?=

.PHONY: install demo lint test test-fast gpu-check complexity regen clean

install: $(STAMP)

# torch/torchvision come as version ranges (pip takes the builds this machine has on disk); no == pins.
$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q -e '.[test]' 2>&1 | { grep -v "is ignored: it is neither a file nor a directory" || true; }
	touch $(STAMP)

# The main job on the embedded digits data (resnet20: params, MACs, test accuracy), then a tiny ablation table.
demo: $(STAMP)
	$(PY) scripts/train.py experiment=digits_quick hydra.run.dir=runs/demo/digits_quick
	$(PY) scripts/ablate.py residual_vs_plain_tiny

# ruff, then the floors: which package may import which (.importlinter; README "Layout").
lint: $(STAMP)
	$(PY) -m ruff check .
	$(VENV)/bin/lint-imports --no-cache

# Everything (CI): lint, then every test tier (unit, integration, reliability; slow, slurm and gpu-marked ones too;
# gpu tests skip without a GPU). Two pytest workers, one test file each at a time (module fixtures run once):
# much of the suite waits on subprocesses, a scheduler or sleeps. PYTEST_WORKERS=0 runs it in this process.
PYTEST_WORKERS ?= 2
XDIST := $(if $(filter 0,$(PYTEST_WORKERS)),,-n $(PYTEST_WORKERS) --dist loadfile)
# The run ends with the 15 slowest tests, so that the cost of the suite stays in sight.
test: lint
	WANDB_MODE=offline WANDB_SILENT=true $(PY) -m pytest -q $(XDIST) --durations=15 $(PYTEST_ARGS)

# The edit-test loop: lint and the tests not marked slow, slurm or gpu (a few minutes).
test-fast: lint
	WANDB_MODE=offline WANDB_SILENT=true $(PY) -m pytest -q $(XDIST) -m "not slow and not slurm and not gpu" $(PYTEST_ARGS)

# A new GPU box, checked in a few minutes (CUDA graphs, resume, padding, packing, host time, speed): PASS/FAIL lines.
gpu-check: $(STAMP)
	$(PY) scripts/gpu_check.py --out gpu_check.json

# Every generated file (model configs, roadmap grids, key/knob tables, docs from tests' lists, committed result
# reports, the README's generated sections) from this checkout's code; a test fails when one is stale.
regen: $(STAMP)
	$(PY) scripts/regen.py

complexity: $(STAMP)
	$(PY) scripts/complexity.py out=docs

clean:
	rm -rf runs outputs multirun .pytest_cache
