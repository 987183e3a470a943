# Slipstream: `make demo` runs the main job, `make test` runs the tests. Both install what is missing first.
SHELL := /bin/bash
VENV ?= .venv
BIN := $(VENV)/bin
export PATH := $(CURDIR)/$(BIN):$(PATH)

.PHONY: setup demo test unit integration lint typecheck up down status clean help

help:  ## list the targets
	@grep -E '^[a-z-]+:.*##' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

setup:  ## install Python deps (uv, locked), Java/Maven/redis-server when there is no Docker
	@bash infra/bootstrap.sh

# `make demo DEMO_ARGS="--rate 500 --duration 60"` passes options on (see `slipstream demo --help`).
DEMO_ARGS ?=
BYTECODE := $(VENV)/.slipstream-bytecode

demo: setup  ## start Kafka + Redis, train, warm the features, then score live card traffic (Ctrl-C stops)
	@$(MAKE) --no-print-directory $(BYTECODE)
	$(BIN)/slipstream demo $(DEMO_ARGS)

# The demo starts five Python processes that import MLflow, LightGBM, ONNX Runtime...: compiled once, each starts
# seconds sooner (uv installs without bytecode; with PYTHONDONTWRITEBYTECODE=1 Python never writes it itself).
$(BYTECODE): $(wildcard $(VENV)/.slipstream-installed)
	@printf '\033[1;34m==>\033[0m %s\n' "compiling Python bytecode once (the demo's processes start faster)"
	@$(BIN)/python -m compileall -q -j 0 "$$($(BIN)/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')" \
		slipstream >/dev/null || true
	@touch $@

test: setup lint typecheck  ## lint, type-check, then the whole suite against real Kafka and Redis
	$(BIN)/python -m pytest tests -q

unit: setup  ## unit tests only (no services)
	$(BIN)/python -m pytest tests/unit -q

integration: setup  ## integration tests (start the test platform)
	$(BIN)/python -m pytest tests/integration -q

lint:
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck:
	$(BIN)/mypy

up: setup  ## start the local platform and apply the topics
	$(BIN)/slipstream infra up

down:  ## stop the local platform
	$(BIN)/slipstream infra down

status:
	$(BIN)/slipstream infra status

clean: down  ## stop everything and delete local state (keeps the jar cache)
	rm -rf .slipstream
