# `make run`  : set everything up and serve the API on the embedded cluster (or DATABASE_URL)
# `make test` : set everything up and run every test (pgTAP via pg_prove, then pytest)
# Recipes are bash with `set -euo pipefail`; each recipe runs in one shell.
SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
.ONESHELL:
.DEFAULT_GOAL := help

PY := .venv/bin/python

.PHONY: help venv run test _test migrate db-prove _db-prove db-stop db-psql db-status lint lock bench drills clean

help:
	@echo "make run     - install what is missing, migrate, serve the API (HOST/PORT/DATABASE_URL)"
	echo "make test    - install what is missing, fresh test cluster, pg_prove tests/sql, pytest"
	echo "make migrate - migrate the run database (or DATABASE_URL)"
	echo "make db-prove [FILE=tests/sql/20-attach.sql] - pg_prove on the test cluster (or DATABASE_URL)"
	echo "make lint    - ruff, mypy --strict, shellcheck, plpgsql_check (fails on any finding)"
	echo "make lock    - re-resolve requirements.lock (exact versions) from pyproject.toml"
	echo "make db-psql | db-status | db-stop | bench | drills | clean"

venv:
	@bash scripts/venv.sh

# The port is checked first: a busy one says how to pick another before any database work.
run: venv
	@$(PY) -m control_plane.preflight
	out="$$(bash scripts/env.sh run)"
	eval "$$out"
	$(PY) -m control_plane.migrate
	exec $(PY) -m control_plane.serve

migrate: venv
	@out="$$(bash scripts/env.sh run)"
	eval "$$out"
	$(PY) -m control_plane.migrate

# One `make test` at a time per checkout (each run recreates the shared test cluster).
test: venv
	@mkdir -p .local
	if ! flock -n .local/make-test.lock true; then
	  echo "make test: waiting for another make test in this checkout" >&2
	fi
	exec flock -o -w 7200 .local/make-test.lock $(MAKE) --no-print-directory _test

_test:
	@out="$$(bash scripts/env.sh test)"
	eval "$$out"
	if [[ -n "$${CONTROL_PLANE_LOCAL_CLUSTER:-}" ]]; then
	  trap 'bash scripts/local-db.sh down test || true' EXIT
	fi
	$(PY) -m control_plane.migrate
	shopt -s nullglob
	sql_tests=(tests/sql/*.sql)
	if (( $${#sql_tests[@]} )); then
	  echo "== pgTAP: $${#sql_tests[@]} file(s)" >&2
	  bash scripts/pg-prove.sh "$${sql_tests[@]}"
	else
	  echo "== pgTAP: no tests/sql/*.sql files, skipping pg_prove" >&2
	fi
	bash scripts/ensure-test-tools.sh
	echo "== pytest" >&2
	$(PY) -m pytest -q tests

# pgTAP files one by one while developing: the test cluster is started (not reset) and migrated,
# or DATABASE_URL is used. Waits for a running `make test` (it recreates the test cluster).
FILE ?= tests/sql/*.sql
db-prove: venv
	@mkdir -p .local
	exec flock -o -w 7200 .local/make-test.lock $(MAKE) --no-print-directory _db-prove

_db-prove:
	@export PG_BINDIR="$${PG_BINDIR:-$$(bash scripts/ensure-packages.sh)}"
	if [[ -z "$${DATABASE_URL:-}" ]]; then
	  DATABASE_URL="$$(bash scripts/local-db.sh up test)"
	  export DATABASE_URL
	  echo "db-prove: test cluster (make db-stop stops it)" >&2
	fi
	$(PY) -m control_plane.migrate
	bash scripts/pg-prove.sh $(FILE)

db-stop:
	@bash scripts/local-db.sh down run
	bash scripts/local-db.sh down test

db-status:
	@bash scripts/local-db.sh status

db-psql:
	@bindir="$$(bash scripts/ensure-packages.sh)"
	url="$$(bash scripts/local-db.sh up run)"
	exec "$$bindir/psql" "$$url"

# ruff, mypy --strict, shellcheck, plpgsql_check (scripts/lint.sh); uses the test cluster.
lint: venv
	@exec bash scripts/lint.sh

# Re-resolve requirements.lock from pyproject.toml (LOCK_ARGS=--upgrade to take new versions).
lock: venv
	@exec bash scripts/lock.sh

# The suites bring their own environment handling (they may call scripts/env.sh).
bench: venv
	@export PATH="$$PWD/.venv/bin:$$PATH"
	if [[ -f bench/run.sh ]]; then exec bash bench/run.sh
	elif [[ -f bench/__main__.py ]]; then exec $(PY) -m bench
	else echo "no benchmark suite yet (bench/run.sh)" >&2; exit 1; fi

drills: venv
	@export PATH="$$PWD/.venv/bin:$$PATH"
	if [[ -f drills/run.sh ]]; then exec bash drills/run.sh
	elif [[ -f drills/__main__.py ]]; then exec $(PY) -m drills
	else echo "no reliability drills yet (drills/run.sh)" >&2; exit 1; fi

# Keeps the run cluster's data and the admin token; deletes the throw-away test cluster.
clean:
	@bash scripts/local-db.sh down run
	bash scripts/local-db.sh delete test
	rm -rf .venv .pytest_cache .ruff_cache build dist *.egg-info
	find . -path ./.local -prune -o -name __pycache__ -type d -prune -exec rm -rf {} +
