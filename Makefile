# The two front-door commands: `make run` and `make test`. Each installs what it needs, and no more.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
CONFIG ?= portcullis.yaml
INVENTORY_PORT ?= 8788
# setuptools announces every editable install with a banner about folders that could shadow the
# package: here `gateway/` is the package itself, so that one warning is filtered, nothing else.
PIP_INSTALL := PYTHONWARNINGS='ignore:Editable installation:UserWarning' $(BIN)/python -m pip install --quiet

.PHONY: run test bench install install-test clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# The package (what `make run` needs) ...
$(VENV)/.installed: $(BIN)/python pyproject.toml
	$(PIP_INSTALL) -e .
	touch $@

# ... and the test extras (what `make test` needs besides).
$(VENV)/.installed-test: $(VENV)/.installed
	$(PIP_INSTALL) -e '.[test]'
	touch $@

install: $(VENV)/.installed
install-test: $(VENV)/.installed-test

# The TypeScript-SDK client tests use the MCP Inspector CLI from npm (skipped without npm).
JS_DEPS := tests/e2e/js/node_modules/.installed
$(JS_DEPS): tests/e2e/js/package.json tests/e2e/js/package-lock.json
	@if command -v npm >/dev/null 2>&1; then \
		npm ci --prefix tests/e2e/js --no-audit --no-fund --loglevel=error && touch $@; \
	else echo "npm not found: the TypeScript-client tests will be skipped"; fi

## Start Portcullis on the demo deployment: Streamable HTTP on http://127.0.0.1:8787/mcp
## (with the demo inventory API on http://127.0.0.1:8788). Ctrl-C, or SIGTERM to make, stops
## both: the gateway gets one SIGTERM and records its shutdown, then the inventory is stopped.
## (SIGTERM, never a second SIGINT: uvicorn takes a second SIGINT as "skip the shutdown".)
run: install
	@trap 'kill -TERM $$gateway 2>/dev/null' INT TERM; \
	$(BIN)/python tools/servers/inventory.py --port $(INVENTORY_PORT) & inventory=$$!; \
	$(BIN)/portcullis serve --config $(CONFIG) & gateway=$$!; \
	wait $$gateway; status=$$?; \
	while kill -0 $$gateway 2>/dev/null; do wait $$gateway; status=$$?; done; \
	kill -TERM $$inventory 2>/dev/null; wait $$inventory; \
	exit $$status

## Run the whole test suite
test: install-test $(JS_DEPS)
	$(BIN)/python -m pytest

## Print the overhead benchmark's figures
bench: install-test
	$(BIN)/python benchmarks/overhead.py

clean:
	rm -rf $(VENV) audit/*.db audit/*.db-* data/ .pytest_cache tests/e2e/js/node_modules
