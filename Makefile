# make demo: the offline demo sample end to end.   make test: the test suite.
# Both create or refresh .venv first. torch is installed on its own first: here it resolves to the
# local CPU build 2.13.0; on a GPU machine install the CUDA build of your choice before `make`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: demo test install clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: $(BIN)/python pyproject.toml
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

install: $(VENV)/.installed

demo: install
	$(BIN)/virnucpro-assets demo

test: install
	$(BIN)/python -m pytest -n 2 -q

clean:
	rm -rf $(VENV) .virnucpro
