# Quickstart targets (see README). Both create the virtual environment on first use.
VENV ?= .venv
PYTHON ?= python3
PY := $(VENV)/bin/python
export TF_CPP_MIN_LOG_LEVEL ?= 2
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: install train test test-all

install: $(VENV)/.installed

$(VENV)/.installed: setup.py pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --no-cache-dir --progress-bar off -q -c constraints.txt -e ".[test]"
	touch $@

# The main job: train a small binary network on an embedded dataset (no download).
train: install
	$(PY) train.py

# The test suite (fast tests; `make test-all` adds the ones marked slow).
test: install
	$(PY) -m pytest -p no:cacheprovider --durations=15

test-all: install
	$(PY) -m pytest -p no:cacheprovider -m "slow or not slow"
