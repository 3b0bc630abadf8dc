# The two front-door commands: `make run` and `make test`. Each installs what it needs.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: run test bench install clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed: $(BIN)/python pyproject.toml
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@

install: $(VENV)/.installed

# The TypeScript-SDK client tests use the MCP Inspector CLI from npm (skipped without npm).
JS_DEPS := tests/e2e/js/node_modules/.installed
$(JS_DEPS): tests/e2e/js/package.json tests/e2e/js/package-lock.json
	@if command -v npm >/dev/null 2>&1; then \
		npm ci --prefix tests/e2e/js --no-audit --no-fund --loglevel=error && touch $@; \
	else echo "npm not found: the TypeScript-client tests will be skipped"; fi

## Start Portcullis on the demo deployment: Streamable HTTP on http://127.0.0.1:8787/mcp
## (with the demo inventory API on http://127.0.0.1:8788, stopped when the gateway stops)
run: install
	@$(BIN)/python tools/servers/inventory.py --port 8788 & inventory=$$!; \
	trap 'kill $$inventory 2>/dev/null' EXIT INT TERM; \
	$(BIN)/portcullis serve --config portcullis.yaml

## Run the whole test suite
test: install $(JS_DEPS)
	$(BIN)/python -m pytest

## Print the overhead benchmark's figures
bench: install
	$(BIN)/python benchmarks/overhead.py

clean:
	rm -rf $(VENV) audit/*.db audit/*.db-* data/ .pytest_cache tests/e2e/js/node_modules
