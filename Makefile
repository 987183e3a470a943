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

demo: setup  ## start Kafka + Redis, run the feature engine on live simulated card traffic, show a live summary
	$(BIN)/slipstream demo

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
