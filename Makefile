# `make test` and `make demo` set the latest environment up first when needed, `make test-oldest`
# the oldest one (tools/setup_env.py; the exact versions are in constraints/).
PYTHON ?= python3
# tests and tools use both cores; CI sees the same 2-core machine
export OMP_NUM_THREADS ?= 2

.PHONY: setup setup-oldest test test-oldest demo demo-dino demo-large lint gpu-wheels clean

setup:
	@$(PYTHON) tools/setup_env.py --env latest

setup-oldest:
	@$(PYTHON) tools/setup_env.py --env oldest

test: setup
	.venv/bin/python -m pytest -q $(PYTEST_ARGS)

# the tests marked `venv` build virtualenvs of their own: `make test` runs them
test-oldest: setup-oldest
	.venv-oldest/bin/python -m pytest -q -m 'not venv' $(PYTEST_ARGS)

demo: setup
	.venv/bin/python tools/demo.py

# a query-based detector: SwinV2 DINO from scratch, about 10 minutes on 2 cores
demo-dino: setup
	.venv/bin/python tools/demo_dino.py

# large images: a small-object Mask R-CNN trained on crops, then whole, sliced and SAHI
# inference on 2048x2048 images (SAHI: pip install sahi), about 20 minutes
demo-large: setup
	.venv/bin/python tools/demo_large.py

lint: setup
	.venv/bin/python -m flake8 swinv2_backbone devkit tools tests configs

# what tools/gpu_check.sh installs on a lent GPU machine (Python 3.12, PyTorch without mmengine)
gpu-wheels:
	$(PYTHON) -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 -d .whl \
		-c constraints/latest.txt mmengine addict termcolor yapf platformdirs

clean:
	rm -rf .venv .venv-oldest build dist *.egg-info .pytest_cache
