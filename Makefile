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

test: lint
	$(BIN)/python -m pytest -q -ra

test-fast: lint
	$(BIN)/python -m pytest -q -ra -m "not slow"
