# Baton: `make run` installs and starts the service; `make test` installs and runs every check and test;
# `make check` is the edit loop's: lint, types, import contracts and the tests not marked slow.
# Bytecode is compiled at install: with PYTHONDONTWRITEBYTECODE set, every server and CLI process a test
# starts would compile its imports from source again (a full test run took 41 min that way, not 13).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin

.PHONY: install run test check lint bench proto tools

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml requirements.lock
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --disable-pip-version-check uv
	$(BIN)/uv pip install -q --compile-bytecode --python $(BIN)/python -r requirements.lock
	$(BIN)/uv pip install -q --python $(BIN)/python --no-deps -e .
	$(BIN)/python -m compileall -q engine adapters >/dev/null
	touch $@

run: install
	$(BIN)/baton serve --answers rulesets/demo-answers.json --console 127.0.0.1:8080

lint: install
	$(BIN)/ruff check .
	$(BIN)/mypy engine
	$(BIN)/mypy adapters
	$(BIN)/mypy --strict bench
	$(BIN)/mypy tests
	$(BIN)/lint-imports
	$(BIN)/buf lint
	$(BIN)/buf format --diff --exit-code
	$(BIN)/buf breaking --against proto/buf-baseline.binpb
	$(BIN)/python -m adapters.doors.grpc.codegen --check

proto: install
	$(BIN)/python -m adapters.doors.grpc.codegen

# Two runs, every test in one of them: the tests not marked serial spread over the cores by file (a module's
# server is started once; tests/conftest.py puts the files with most slow tests first), then the serial ones
# alone (they restart PostgreSQL or a broker the others use, or time calls under load).
test: lint tools
	$(BIN)/python -m pytest -q -n auto --maxprocesses 4 --dist loadfile --no-loadscope-reorder -m "not serial"
	$(BIN)/python -m pytest -q -m serial

check: install
	$(BIN)/ruff check .
	$(BIN)/mypy engine
	$(BIN)/mypy adapters
	$(BIN)/mypy --strict bench
	$(BIN)/mypy tests
	$(BIN)/lint-imports
	$(BIN)/python -m pytest -q -n auto --dist loadfile -m "not slow"

tools:
	@bash .ci/tools.sh

bench: install
	$(BIN)/python bench/engine_speed.py
