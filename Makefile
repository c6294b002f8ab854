# Kahu — two commands: `make run` and `make test`.
SHELL := /bin/bash
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
TEST_STAMP := $(VENV)/.installed-test
SYS_STAMP := $(VENV)/.system-packages
KAHU_HOME ?= ./kahu-home
PYTEST_ARGS ?=

UI_STAMP := src/kahu/web/static/vendor/.installed
VENDOR := src/kahu/web/static/vendor

.PHONY: run test check lint format types bench install system-packages ui clean

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e .
	touch $@

$(TEST_STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e '.[test,ai]'
	touch $@ $(STAMP)

install: $(STAMP)

# The web interface's JavaScript libraries come from npm (ui/package-lock.json) and are
# copied into the served assets; nothing third-party is committed. Node.js and npm come
# from Debian's packages when missing.
ui: $(UI_STAMP)
$(UI_STAMP): ui/package.json ui/package-lock.json
	@command -v npm >/dev/null || { echo "Installing Node.js and npm for the web interface"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm; }
	npm ci --prefix ui --no-audit --no-fund --loglevel=error
	mkdir -p $(VENDOR)
	cp ui/node_modules/htmx.org/dist/htmx.min.js $(VENDOR)/
	cp ui/node_modules/@niivue/niivue/dist/niivue.umd.js $(VENDOR)/
	cp ui/node_modules/swagger-ui-dist/swagger-ui-bundle.js ui/node_modules/swagger-ui-dist/swagger-ui.css \
	  ui/node_modules/swagger-ui-dist/favicon-32x32.png $(VENDOR)/
	touch $@

# The test suite drives real DICOM peers (dcmtk), a real PostgreSQL server, sandboxes
# command operators with bubblewrap and drives the web interface in headless Chromium.
# All come from Debian's packages; this target installs them when missing (needs root).
system-packages: $(SYS_STAMP)
$(SYS_STAMP): | $(BIN)/python
	@need=""; \
	command -v storescu >/dev/null || need="$$need dcmtk"; \
	command -v bwrap >/dev/null || need="$$need bubblewrap"; \
	command -v initdb >/dev/null || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need="$$need postgresql"; \
	command -v chromium >/dev/null || need="$$need chromium"; \
	if [ -n "$$need" ]; then \
	  echo "Installing system packages for the tests:$$need"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$need; \
	fi
	touch $@

run: $(STAMP) $(UI_STAMP)
	$(BIN)/kahu serve --home $(KAHU_HOME)

test: $(TEST_STAMP) $(SYS_STAMP) $(UI_STAMP)
	$(BIN)/pytest -m "not slow" $(PYTEST_ARGS)

lint: $(TEST_STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench

format: $(TEST_STAMP)
	$(BIN)/ruff format src tests bench
	$(BIN)/ruff check --fix src tests bench

types: $(TEST_STAMP)
	$(BIN)/mypy

check: lint types test

BENCH_STAMP := $(VENV)/.installed-bench
$(BENCH_STAMP): pyproject.toml $(TEST_STAMP)
	$(BIN)/pip install -q -e '.[test,ai,bench]'
	touch $@

bench: $(BENCH_STAMP) $(SYS_STAMP)
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache ui/node_modules $(VENDOR)
