# Two commands do everything on a fresh machine with Python 3.11+ and Node.js 20:
#   make run   - Azurite + the app on http://localhost:7071, Ctrl-C stops all
#   make test  - the same set-up, then lint, types and the whole test suite
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip --disable-pip-version-check --quiet

.PHONY: run test lint bench setup clean

run: $(VENV)/.runtime node_modules/.installed
	$(PY) -m devhost $(ARGS)

test: $(VENV)/.dev node_modules/.installed lint
	$(PY) -m pytest $(PYTEST_ARGS)

lint: $(VENV)/.dev
	$(PY) -m ruff check .
	$(PY) -m mypy

bench: $(VENV)/.dev node_modules/.installed
	$(PY) -m bench $(ARGS)

setup: $(VENV)/.dev node_modules/.installed

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)

# requirements.txt is what Azure installs; requirements-local.txt adds the local host's HTTP server.
$(VENV)/.runtime: requirements.txt requirements-local.txt | $(VENV)/bin/python
	$(PIP) install -r requirements.txt -r requirements-local.txt
	touch $@

$(VENV)/.dev: requirements.txt requirements-local.txt requirements-dev.txt | $(VENV)/bin/python
	$(PIP) install -r requirements-dev.txt
	touch $@ $(VENV)/.runtime

node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

clean:
	rm -rf $(VENV) node_modules .azurite .pytest_cache .mypy_cache .ruff_cache
