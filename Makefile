# Baton: `make run` installs and starts the service; `make test` installs and runs every check and test.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin

.PHONY: install run test lint bench proto tools

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml requirements.lock
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --disable-pip-version-check uv
	$(BIN)/uv pip install -q --python $(BIN)/python -r requirements.lock
	$(BIN)/uv pip install -q --python $(BIN)/python --no-deps -e .
	touch $@

run: install
	$(BIN)/baton serve --answers rulesets/demo-answers.json --console 127.0.0.1:8080

lint: install
	$(BIN)/ruff check .
	$(BIN)/mypy engine
	$(BIN)/mypy adapters
	$(BIN)/mypy --strict bench
	$(BIN)/lint-imports
	$(BIN)/buf lint
	$(BIN)/buf format --diff --exit-code
	$(BIN)/buf breaking --against proto/buf-baseline.binpb
	$(BIN)/python -m adapters.grpc.codegen --check

proto: install
	$(BIN)/python -m adapters.grpc.codegen

test: lint tools
	$(BIN)/python -m pytest -q

tools:
	@bash .ci/tools.sh

bench: install
	$(BIN)/python bench/engine_speed.py
