# Switchboard developer commands. `make run` and `make test` are all a newcomer needs.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat requirements-dev.lock 2>/dev/null | sha1sum | cut -c1-12)
PORT ?= 8000
SANDBOX ?= 1
SANDBOX_PORT ?= 8001
MW_SANDBOX_PORT ?= 8002

.DEFAULT_GOAL := help
.PHONY: help install run test bench lint format typecheck migrations lock clean

help: ## List the commands
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

$(STAMP): requirements-dev.lock
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --upgrade pip==25.3
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --require-hashes -r requirements-dev.lock
	@rm -f $(VENV)/.installed-*
	@test -f .env || printf '%s\n' "# Local development settings, written by make install (see .env.example)." \
		"# The real environment wins over this file; never copy it to a server." "DJANGO_DEBUG=1" > .env
	@touch $@

install: $(STAMP) ## Create .venv and install the pinned dependencies

run: export DJANGO_DEBUG ?= 1
run: export SWITCHBOARD_PORT := $(PORT)
run: export PUBLIC_BASE_URL ?= http://127.0.0.1:$(PORT)
run: export SANDBOX_PORT := $(SANDBOX_PORT)
run: export MW_SANDBOX_PORT := $(MW_SANDBOX_PORT)
# A Redis answering on localhost makes the demo live (SSE) and its queue a real broker; without
# one, make run keeps the embedded defaults (filesystem broker, pages poll every few seconds).
run: export REDIS_URL ?= $(shell $(PYTHON) -c "import socket; socket.create_connection(('127.0.0.1', 6379), 0.3)" 2>/dev/null && echo redis://127.0.0.1:6379/5)
run: $(STAMP) ## Migrate, create the demo admin, start web + workers + beat + platform sandbox (SANDBOX=0: no sandbox)
	@echo "Live updates and tasks: $${REDIS_URL:-embedded (no Redis found on 127.0.0.1:6379; pages poll)}"
	$(BIN)/python manage.py migrate --noinput
	$(BIN)/python manage.py ensure_demo_admin
	exec $(BIN)/honcho --procfile Procfile.dev start $(if $(filter 0,$(SANDBOX)),web worker platform media beat)

test: $(STAMP) ## Lint, type-check, check import contracts and migrations, run the whole test suite
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy .
	$(BIN)/lint-imports
	$(BIN)/python manage.py makemigrations --check --dry-run --settings=config.settings.test
	$(BIN)/pytest $(PYTEST_ARGS)

bench: $(STAMP) ## Benchmark against PostgreSQL + Redis: table + var/bench/*.json (QUICK=1: smoke run)
	$(BIN)/python -m bench $(if $(filter 1,$(QUICK)),--quick) $(BENCH_ARGS)

lint: $(STAMP) ## Lint only
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(STAMP) ## Format and fix what ruff can
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

typecheck: $(STAMP) ## mypy only
	$(BIN)/mypy .

migrations: $(STAMP) ## Make migrations (name them: make migrations NAME=app_what_changed)
	$(BIN)/python manage.py makemigrations --settings=config.settings.test $(if $(NAME),--name $(NAME))

lock: $(STAMP) ## Re-pin pyproject.toml into requirements.lock (runtime) and requirements-dev.lock
	@test -x $(BIN)/uv || $(BIN)/python -m pip install --quiet uv
	$(BIN)/uv pip compile pyproject.toml --python-version 3.11 --generate-hashes \
		--quiet -o requirements.lock --custom-compile-command "make lock"
	$(BIN)/uv pip compile pyproject.toml --extra dev --python-version 3.11 --generate-hashes \
		--quiet -o requirements-dev.lock --custom-compile-command "make lock"

clean: ## Remove the virtualenv and local state (database, broker folder) under var/
	rm -rf $(VENV) var
