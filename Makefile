# `make test` and `make demo` set the environment up first when needed (see tools/setup_env.py).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
export SWINV2_VENV := $(abspath $(VENV))
# tests and tools use both cores; CI sees the same 2-core machine
export OMP_NUM_THREADS ?= 2

.PHONY: setup test demo lint clean

setup:
	@$(PYTHON) tools/setup_env.py

test: setup
	$(PY) -m pytest -q $(PYTEST_ARGS)

demo: setup
	$(PY) tools/demo.py

lint: setup
	$(PY) -m flake8 swinv2_backbone tools tests

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
