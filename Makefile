# Quickstart targets (see README). Both create the virtual environment on first use.
#
# The interpreter: the newest supported one on the machine (python3.12, python3.11,
# python3.10, then python3 if it is 3.10-3.12); `make PYTHON=/path/to/python ...` overrides.
# The pinned stack follows it: constraints-py312.txt (TensorFlow 2.19 + tf-keras) on 3.12,
# constraints.txt (TensorFlow 2.15) on 3.10 and 3.11.
VENV ?= .venv
SUPPORTED := python3.12 python3.11 python3.10 python3
IS_SUPPORTED := import sys; sys.exit(not (3, 10) <= sys.version_info[:2] <= (3, 12))
PYTHON ?= $(firstword $(foreach p,$(SUPPORTED),$(shell $(p) -c '$(IS_SUPPORTED)' >/dev/null 2>&1 && echo $(p))))
CONSTRAINTS ?= $(shell $(PYTHON) -c 'import sys; print("constraints-py312.txt" if sys.version_info >= (3, 12) else "constraints.txt")' 2>/dev/null)
PY := $(VENV)/bin/python
export TF_CPP_MIN_LOG_LEVEL ?= 2
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: install train test test-all check-python

check-python:
	@test -n "$(PYTHON)" || { echo "make: no supported Python found (3.10, 3.11 or 3.12 as python3.12, python3.11, python3.10 or python3); install one or pass PYTHON=/path/to/python" >&2; exit 2; }
	@$(PYTHON) -c '$(IS_SUPPORTED)' || { echo "make: $(PYTHON) is not Python 3.10-3.12" >&2; exit 2; }

install: check-python $(VENV)/.installed

$(VENV)/.installed: setup.py pyproject.toml constraints.txt constraints-py312.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --no-cache-dir --progress-bar off -q -c $(CONSTRAINTS) -e ".[test]"
	@echo "installed with $$($(PY) --version) and $(CONSTRAINTS)" > $@
	@cat $@

# The main job: train a small binary network on an embedded dataset (no download).
train: install
	$(PY) train.py

# The test suite (fast tests; `make test-all` adds the ones marked slow).
test: install
	$(PY) -m pytest -p no:cacheprovider --durations=25

test-all: install
	$(PY) -m pytest -p no:cacheprovider -m "slow or not slow"
