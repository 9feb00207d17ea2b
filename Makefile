# make demo: the offline demo sample end to end.   make test: the test suite.
# Both create or refresh .venv first. torch is installed on its own first: here it resolves to the
# local CPU build 2.13.0; on a GPU machine install the CUDA build of your choice before `make`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

# Debian packages the tests drive as real servers and tools, installed where missing (as root, or
# through sudo): headless Chromium and its driver (test_web_ui.py), PostgreSQL and Redis
# (test_distributed.py). Debian keeps the PostgreSQL server off PATH, in /usr/lib/postgresql/<ver>/bin.
TEST_COMMANDS := chromium:chromium chromedriver:chromium-driver \
	/usr/lib/postgresql/*/bin/postgres:postgresql redis-server:redis-server
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: demo test install system-packages clean

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

system-packages:
	@missing=""; for pair in $(TEST_COMMANDS); do \
		command -v $${pair%%:*} >/dev/null || ls $${pair%%:*} >/dev/null 2>&1 || missing="$$missing $${pair#*:}"; \
	done; \
	if [ -n "$$missing" ]; then \
		echo "installing Debian packages the tests need:$$missing"; \
		$(SUDO) apt-get update -q && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -q $$missing; \
	fi

test: install system-packages
	$(BIN)/python -m pytest -n 2 -q

clean:
	rm -rf $(VENV) .virnucpro
