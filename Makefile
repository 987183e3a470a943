# Slipstream: `make demo` runs the main job, `make test` runs the tests. Both install what is missing and start what
# must run first; each is safe to repeat, in any order.
SHELL := /bin/bash
VENV ?= .venv
BIN := $(VENV)/bin
PATH_OUTSIDE := $(PATH)
export PATH := $(CURDIR)/$(BIN):$(PATH)

.PHONY: setup demo test unit integration lint typecheck up down status clean help

help:  ## list the targets
	@grep -E '^[a-z-]+:.*##' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

# The bootstrap sees PATH as it was before this Makefile put $(BIN) first: it makes the venv from a real Python.
setup:  ## install Python deps (uv, locked), Java/Maven/redis-server when there is no Docker
	@PATH='$(PATH_OUTSIDE)' SLIPSTREAM_VENV='$(VENV)' bash infra/bootstrap.sh

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
	$(BIN)/python -m pytest tests -q --durations=30

unit: setup  ## unit tests only (no services)
	$(BIN)/python -m pytest tests/unit -q

integration: setup  ## integration tests (start the test platform)
	$(BIN)/python -m pytest tests/integration -q

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: setup
	$(BIN)/mypy

up: setup  ## start the local platform and apply the topics
	$(BIN)/slipstream infra up

# Nothing can have been started before the first setup: then there is nothing to stop, and nothing to report.
down:  ## stop the local platform
	@if [ -x $(BIN)/slipstream ]; then $(BIN)/slipstream infra down; else echo "nothing to stop (not set up yet)"; fi

status:
	@if [ -x $(BIN)/slipstream ]; then $(BIN)/slipstream infra status; else echo "not set up yet: make setup"; fi

clean: down  ## stop everything and delete local state (keeps the jar cache)
	rm -rf .slipstream
