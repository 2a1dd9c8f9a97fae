# Two commands do everything on a fresh machine with Python 3.11+ and Node.js 20:
#   make run   - Azurite + the app on http://localhost:7071, Ctrl-C stops all
#   make test  - the same set-up, then lint, types and the whole test suite
#   make compat - the reader matrix: Spark 3.4/3.5, fastparquet, DuckDB, polars and pyarrow read every output
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip --disable-pip-version-check --quiet
# The reader matrix's own venvs (Spark, fastparquet): never the dev venv, which stays light.
COMPAT := .compat
# Tools whose pins would fight the dev venv's (checkov): a venv each.
TOOLS  := .tools

.PHONY: run test lint bench bench-backfill setup clean compat java shellcheck

run: $(VENV)/.runtime node_modules/.installed
	$(PY) -m devhost $(ARGS)

# RECOMPRESS_REQUIRE_TOOLS: the infra tests fail, rather than skip, when checkov is missing.
test: $(VENV)/.dev node_modules/.installed $(TOOLS)/checkov/.installed shellcheck lint
	RECOMPRESS_REQUIRE_TOOLS=1 $(PY) -m pytest $(PYTEST_ARGS)

lint: $(VENV)/.dev
	$(PY) -m ruff check .
	$(PY) -m mypy

bench: $(VENV)/.dev node_modules/.installed
	$(PY) -m bench $(ARGS)

# Backfill fan-out through Azurite: 1,000 files with 1, 2 and 4 worker processes, and a 10,000-name listing.
bench-backfill: $(VENV)/.dev node_modules/.installed
	$(PY) -m bench.backfill $(ARGS)

setup: $(VENV)/.dev node_modules/.installed

# Each reader that must not share the dev venv gets its own, pinned by compat/requirements-<reader>.txt.
COMPAT_VENVS := $(COMPAT)/spark3.4/.installed $(COMPAT)/spark3.5/.installed $(COMPAT)/fastparquet/.installed

compat: $(VENV)/.dev java $(COMPAT_VENVS)
	$(PY) -m compat $(ARGS)

# Spark needs a JRE: Debian's OpenJDK 17 when we may install it, else one clear line.
java:
	@command -v java >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "make compat: no java on PATH; installing openjdk-17-jre-headless"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openjdk-17-jre-headless >/dev/null; \
	  else \
	    echo "make compat: no java on PATH; install a JRE 17 (apt-get install openjdk-17-jre-headless) and retry" >&2; \
	    exit 1; \
	  fi; }

# The hook scripts' lint: Debian's shellcheck when we may install it; otherwise the tests fall back to sh -n.
shellcheck:
	@command -v shellcheck >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "make test: no shellcheck on PATH; installing it from Debian's packages"; \
	    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq shellcheck >/dev/null; } || \
	      echo "make test: shellcheck did not install; the hook scripts get sh -n only" >&2; \
	  else \
	    echo "make test: no shellcheck on PATH (apt-get install shellcheck); the hook scripts get sh -n only"; \
	  fi; }

$(TOOLS)/checkov/.installed: requirements-checkov.txt
	rm -rf $(@D)
	$(PYTHON) -m venv $(@D)
	$(@D)/bin/python -m pip --disable-pip-version-check --quiet install -r $<
	touch $@

$(COMPAT)/%/.installed: compat/requirements-%.txt
	rm -rf $(@D)
	$(PYTHON) -m venv $(@D)
	$(@D)/bin/python -m pip --disable-pip-version-check --quiet install -r $<
	touch $@

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
	rm -rf $(VENV) $(COMPAT) $(TOOLS) node_modules .azurite .pytest_cache .mypy_cache .ruff_cache
