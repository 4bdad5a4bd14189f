# Two entry points, each self-sufficient on a fresh machine with Python 3.11:
#   make demo   creates or reuses .venv, installs, runs the offline demo
#   make test   creates or reuses .venv, installs, runs ruff, mypy and the test suite
#   make test-fast  the same without the tests marked slow (the edit-test loop; CI runs everything)
PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test test-fast install lint

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	# the CPU wheel first: a bare 'torch' requirement would pull a multi-GB CUDA build
	$(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -e '.[all,dev]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/fawkes-eval demo

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy

# two workers (pytest-xdist) for the two cores, one torch thread each; each test module stays on one worker (its
# module fixtures are built once), the heavy modules first (tests/conftest.py)
PYTEST := $(BIN)/python -m pytest -q -ra -n 2 --dist loadfile --no-loadscope-reorder --durations=25

test: lint
	$(PYTEST)

test-fast: lint
	$(PYTEST) -m "not slow"
