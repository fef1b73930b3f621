# The commands the README shows. `make demo` and `make test` each install
# everything they need into .venv first, from nothing.
PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
export PYTHONDONTWRITEBYTECODE := 1

.PHONY: install system-deps demo test lint typecheck unit format clean

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q -U "pip>=25.1"
	$(BIN)/python -m pip install -q torch==2.14.1 torchvision==0.29.1 -e ".[all]" --group dev
	touch $(STAMP)

install: $(STAMP)

system-deps:
	bash tools/system-deps.sh

demo: install
	$(BIN)/dropkit demo --out out/demo

lint: install
	$(BIN)/ruff check src tests
	$(BIN)/ruff format --check src tests

typecheck: install
	$(BIN)/mypy

unit: install system-deps
	$(BIN)/pytest -q -p no:cacheprovider

test: lint typecheck unit

format: install
	$(BIN)/ruff format src tests
	$(BIN)/ruff check --fix src tests

clean:
	rm -rf $(VENV) out .pytest_cache .mypy_cache .ruff_cache
