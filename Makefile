# Pact provider + settlement suite. Quick start: `make run` (stack) and `make test` (tests).
#
# `make run` needs Python only. `make test` (and `make install`) also install the test tooling:
# Node packages (npm ci) and Chromium for the browser test. Each install step runs only when
# its lock file changed since it last ran (a stamp file records that), and says what it does.
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

NPM_DIRS := shared/pact_schema/tests/vectors services/settlement/contracts \
	services/settlement/tests/rails/gateways/node tests/integrators/node
PYTHON_LOCKS := uv.lock pyproject.toml shared/pact_schema/pyproject.toml \
	services/provider/pyproject.toml services/settlement/pyproject.toml
RUNTIME_STAMP := .venv/.pact-runtime-synced
DEV_STAMP := .venv/.pact-dev-synced
NPM_STAMPS := $(addsuffix /node_modules/.pact-npm-installed,$(NPM_DIRS))
PYTEST_ARGS ?=
# Tests run in parallel (pytest-xdist). Most of a test's time is waiting (servers, Postgres,
# subprocesses), so more workers than cores pays; tests sharing a session server stay together.
PYTEST_WORKERS ?= 4
PYTEST_PARALLEL = -n $(PYTEST_WORKERS) --dist loadgroup
# Every Python the tests start (the workers, and the service processes they spawn) reads and
# writes its bytecode cache in .dev/pycache, also where PYTHONDONTWRITEBYTECODE is set (as on
# this machine): without a cache each of them compiles every module it imports, about
# 13 CPU-seconds per test worker and seconds per service process (bench/results/findings.md).
PYTEST_ENV = env -u PYTHONDONTWRITEBYTECODE PYTHONPYCACHEPREFIX="$(CURDIR)/.dev/pycache" UV="$(UV)"

.PHONY: help install install-dev install-browser run demo test test-fast lint fmt bench bench-settlement check-deploy clean

help: ## list the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-15s %s\n", $$1, $$2}'

$(CURDIR)/.dev/tools/bin/uv:
	@echo "uv not found: installing it into .dev/tools (pip install uv) ..." >&2
	python3 -m pip install --quiet --target $(CURDIR)/.dev/tools uv

# The services and the `pact` CLI (no dev tools): what `make run` needs.
$(RUNTIME_STAMP): $(PYTHON_LOCKS) | $(UV)
	@echo "Installing the Python packages the services need (uv.lock) into .venv ..."
	$(UV) sync --frozen --all-packages --no-dev --inexact
	@touch $@

# Everything in uv.lock, test and lint tools included.
$(DEV_STAMP): $(PYTHON_LOCKS) | $(UV)
	@echo "Installing the Python packages, with the test and lint tools (uv.lock), into .venv ..."
	$(UV) sync --frozen --all-packages
	@touch $@ $(RUNTIME_STAMP)

$(NPM_STAMPS): %/node_modules/.pact-npm-installed: %/package-lock.json
	@command -v npm >/dev/null || { echo "make: the test tooling needs Node.js 20+ and npm (not needed by make run)" >&2; exit 1; }
	@echo "Installing the JavaScript test tooling of $* (npm ci, $*/package-lock.json) ..."
	cd $* && npm ci --no-audit --no-fund --loglevel=error
	@touch $@

install-browser: ## Chromium for the docs browser test (Debian's package; PACT_CHROMIUM overrides)
	@bash scripts/install_chromium.sh

install-dev: $(DEV_STAMP) $(NPM_STAMPS) install-browser ## everything `make test` needs

install: install-dev ## everything: Python (uv.lock), Node (package-lock.json), Chromium

run: $(RUNTIME_STAMP) ## start provider (:8000) and settlement (:8001) in the foreground; Python only
	@$(UV) run --frozen --no-sync python scripts/dev_stack.py run

demo: $(RUNTIME_STAMP) ## run a buyer against `make run`'s stack and print the whole lifecycle
	@$(UV) run --frozen --no-sync python scripts/dev_stack.py demo

test: install-dev check-deploy ## run every test (SQLite and Postgres, JS vectors, rails, docs, clients)
	$(PYTEST_ENV) $(UV) run --frozen --no-sync pytest $(PYTEST_PARALLEL) $(PYTEST_ARGS)

test-fast: $(DEV_STAMP) $(NPM_STAMPS) ## the inner loop: every test but the `slow` ones (processes, rails, faults)
	$(PYTEST_ENV) PACT_TEST_EXAMPLES_SCALE=0.2 \
		$(UV) run --frozen --no-sync pytest $(PYTEST_PARALLEL) -m "not slow" $(PYTEST_ARGS)

check-deploy: $(DEV_STAMP) ## validate Dockerfiles, compose and k8s manifests statically (no engine)
	UV="$(UV)" bash deploy/check.sh

.PHONY: compose-env
compose-env: $(RUNTIME_STAMP) ## write .env.compose (fresh secrets) for docker compose; FORCE=1 replaces it
	$(UV) run --frozen --no-sync python deploy/compose/gen_env.py $(if $(FORCE),--force)

lint: $(DEV_STAMP) ## ruff (lint + format check), mypy and the import-layer contracts (lint-imports)
	$(UV) run --frozen --no-sync ruff check .
	$(UV) run --frozen --no-sync ruff format --check .
	$(UV) run --frozen --no-sync mypy shared/pact_schema/src services/provider/src services/settlement/src
	$(UV) run --frozen --no-sync lint-imports

fmt: $(DEV_STAMP) ## format and auto-fix
	$(UV) run --frozen --no-sync ruff format .
	$(UV) run --frozen --no-sync ruff check --fix .

bench: $(DEV_STAMP) ## benchmarks (never part of `make test`); tables in bench/results/
	$(UV) sync --frozen --all-packages --group bench
	$(UV) run --frozen --no-sync --group bench python -m bench

bench-settlement: $(DEV_STAMP) ## the settlement suite alone: creates/s, p50/p99, CPU and round trips per create at 1/8/32 callers beside the create_shape.sql ceiling
	$(UV) sync --frozen --all-packages --group bench
	$(UV) run --frozen --no-sync --group bench python -m bench settlement

clean: ## remove local state (dev keys, SQLite files, caches, install stamps)
	rm -rf .dev .pytest_cache .mypy_cache .ruff_cache $(RUNTIME_STAMP) $(DEV_STAMP) $(NPM_STAMPS)
