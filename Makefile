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

## Start Portcullis on the demo deployment: Streamable HTTP on http://127.0.0.1:8787/mcp
run: install
	$(BIN)/portcullis serve --config portcullis.yaml

## Run the whole test suite
test: install
	$(BIN)/python -m pytest

## Print the overhead benchmark's figures
bench: install
	$(BIN)/python benchmarks/overhead.py

clean:
	rm -rf $(VENV) audit/*.db audit/*.db-* data/ .pytest_cache
