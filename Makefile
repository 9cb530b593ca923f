# Pact provider + settlement suite. Quick start: `make run` (stack) and `make test` (tests).
SHELL := /bin/bash
.DEFAULT_GOAL := help

# uv is bootstrapped into .dev/tools when it is not on PATH.
UV ?= $(shell command -v uv 2>/dev/null)
ifeq ($(UV),)
UV := $(CURDIR)/.dev/tools/bin/uv
endif
export UV_PYTHON_DOWNLOADS := never

# Tests use the local PostgreSQL unless told otherwise (CI sets it explicitly).
export TEST_DATABASE_URL ?= postgresql+asyncpg://postgres@127.0.0.1:5432/test

NPM_DIRS := shared/pact_schema/tests/vectors services/settlement/contracts services/settlement/tests/rails/gateways/node
PYTEST_ARGS ?=

.PHONY: help install run demo test lint fmt bench check-deploy clean

help: ## list the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-13s %s\n", $$1, $$2}'

$(CURDIR)/.dev/tools/bin/uv:
	@echo "uv not found: installing it into .dev/tools" >&2
	python3 -m pip install --quiet --target $(CURDIR)/.dev/tools uv

install: $(UV) ## install Python (uv.lock) and Node (package-lock) dependencies
	$(UV) sync --frozen --all-packages
	@for d in $(NPM_DIRS); do (cd $$d && npm ci --no-audit --no-fund --silent) || exit 1; done

run: install ## start provider (:8000) and settlement (:8001) in the foreground
	$(UV) run --frozen python scripts/dev_stack.py run

demo: ## run a buyer against `make run`'s stack and print the whole lifecycle
	$(UV) run --frozen python scripts/dev_stack.py demo

test: install check-deploy ## run every test (SQLite and Postgres, JS vectors, rails)
	$(UV) run --frozen pytest $(PYTEST_ARGS)

check-deploy: $(UV) ## validate Dockerfiles, compose and k8s manifests statically (no engine)
	UV="$(UV)" bash deploy/check.sh

.PHONY: compose-env
compose-env: $(UV) ## write .env.compose (fresh secrets) for docker compose; FORCE=1 replaces it
	$(UV) run --frozen python deploy/compose/gen_env.py $(if $(FORCE),--force)

lint: install ## ruff (lint + format check) and mypy
	$(UV) run --frozen ruff check .
	$(UV) run --frozen ruff format --check .
	$(UV) run --frozen mypy shared/pact_schema/src services/provider/src services/settlement/src

fmt: $(UV) ## format and auto-fix
	$(UV) run --frozen ruff format .
	$(UV) run --frozen ruff check --fix .

bench: install ## benchmarks (never part of `make test`); tables in bench/results/
	$(UV) sync --frozen --all-packages --group bench
	$(UV) run --frozen --group bench python -m bench

clean: ## remove local state (dev keys, SQLite files, caches)
	rm -rf .dev .pytest_cache .mypy_cache .ruff_cache
