# NotifyHub developer entry points. Everything runs from the repo root; `make -s` works too.
#   make run                 services + migrations + demo data + all processes (Ctrl-C stops)
#   make test ARGS="-k foo"  pytest against private PostgreSQL/Redis
#   make test-fast           same, without the e2e tests
#   make lint                ruff check + mypy (apps, notifyhub, bench; clients/python strictly) +
#                            promtool check/test of the alert rules (deploy/prometheus/)
#   make bench               benchmarks against the local settings (DEBUG=0, the Procfile's
#                            processes; docs/operations.md "Benchmarks"); ARGS=--smoke: every
#                            phase small (~2-3 min), ARGS=--big: also 10 million deliveries
#   make chaos               fault scenarios on the real stack under supervisord, with a loss
#                            checker (bench/chaos.py; docs/operations.md "Fault runbook");
#                            CHAOS_SCALE=ci (~5 min) or full (default); ARGS="--scenarios redis"
#   eval "$(make -s services-up)"   private PostgreSQL/Redis; exports DATABASE_URL/REDIS_URL
#   make services-down | clean
#   make                     just creates/updates the venv

SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
VENV_STAMP := $(VENV)/.installed
ARGS ?=

# No interactive prompts from pip, ever.
export PIP_DISABLE_PIP_VERSION_CHECK := 1
export PIP_NO_INPUT := 1

.DEFAULT_GOAL := .venv
.PHONY: .venv run test test-fast lint bench chaos services-up services-down clean

.venv: $(VENV_STAMP)

# (Re)install when requirements.txt is newer than the stamp.
$(VENV_STAMP): requirements.txt
	@test -x $(VENV)/bin/python || { echo "creating $(VENV) with $(PYTHON)" >&2; $(PYTHON) -m venv $(VENV); }
	@$(VENV)/bin/python -m pip install -q --upgrade pip </dev/null || echo "warning: could not upgrade pip; continuing" >&2
	@echo "installing requirements.txt into $(VENV)" >&2
	@$(VENV)/bin/python -m pip install -q -r requirements.txt </dev/null
	@touch $@

run: .venv
	@bash scripts/run.sh

test: .venv
	@bash scripts/test.sh $(ARGS)

test-fast: .venv
	@bash scripts/test.sh -m "not e2e" $(ARGS)

lint: .venv
	@$(VENV)/bin/ruff check .
	@$(VENV)/bin/mypy apps notifyhub bench
	@cd clients/python && ../../$(VENV)/bin/mypy
	@bash scripts/promtool.sh

bench: .venv
	@services_env="$$(bash scripts/services.sh up)" && eval "$$services_env" && \
	  DJANGO_SETTINGS_MODULE=notifyhub.settings.local $(VENV)/bin/python -m bench $(ARGS)

# Its own PostgreSQL and Redis (it kills and restarts them), never the dev or test ones.
chaos: .venv
	@$(VENV)/bin/python -m bench.chaos --scale "$${CHAOS_SCALE:-full}" $(ARGS)

services-up:
	@bash scripts/services.sh up

services-down:
	@bash scripts/services.sh down

clean:
	@bash scripts/services.sh purge || true
	@echo "removing .run and $(VENV)" >&2
	@rm -rf .run $(VENV)
