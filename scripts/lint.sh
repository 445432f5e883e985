#!/usr/bin/env bash
# `make lint`: every static check, each one run even when an earlier one failed; exits non-zero
# when any reports a finding.
#   ruff check, ruff format --check   Python style and lint (pyproject.toml [tool.ruff])
#   mypy                              strict type check (pyproject.toml [tool.mypy])
#   shellcheck                        every shell script (scripts/, bench/, drills/, .ci/)
#   plpgsql_check                     every PL/pgSQL function and procedure in schema
#                                     control_plane, with performance, extra and security
#                                     warnings (scripts/plpgsql-check.sql), on the test cluster
#                                     freshly migrated from zero (or DATABASE_URL when set)
# Installs shellcheck (apt) and the PostgreSQL packages (scripts/ensure-packages.sh) when missing.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)
cd "$ROOT"
PY=.venv/bin
log() { printf 'lint: %s\n' "$*" >&2; }

failed=()
step() {  # step NAME COMMAND...: run, remember a failure, carry on
  local name=$1
  shift
  log "== $name"
  if "$@"; then log "ok: $name"; else failed+=("$name"); fi
}

shell_scripts() {
  local f
  # Tracked files: *.sh, and any file under the script folders that starts with a shell shebang.
  git ls-files -- scripts bench drills .ci '*.sh' | sort -u | while read -r f; do
    [[ -f $f ]] || continue
    if [[ $f == *.sh ]] || head -n1 -- "$f" | grep -Eq '^#!.*\b(ba)?sh\b'; then
      printf '%s\n' "$f"
    fi
  done
}

run_shellcheck() {
  if ! command -v shellcheck >/dev/null 2>&1; then
    [[ $EUID -eq 0 ]] || { log "shellcheck is missing: apt-get install shellcheck (as root)"; return 1; }
    log "installing shellcheck"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends shellcheck >&2 \
      || { apt-get update -qq >&2 && DEBIAN_FRONTEND=noninteractive \
             apt-get install -y -qq --no-install-recommends shellcheck >&2; }
  fi
  local scripts
  mapfile -t scripts < <(shell_scripts)
  log "shellcheck: ${#scripts[@]} script(s)"
  shellcheck -x "${scripts[@]}"
}

# One make test/lint database reset at a time per checkout (they share the test cluster).
run_plpgsql_check() {
  mkdir -p .local
  flock -w 7200 .local/make-test.lock bash -c '
    set -euo pipefail
    out="$(bash scripts/env.sh test)"
    eval "$out"
    if [[ -n "${CONTROL_PLANE_LOCAL_CLUSTER:-}" ]]; then
      trap "bash scripts/local-db.sh down test >/dev/null 2>&1 || true" EXIT
    fi
    .venv/bin/python -m control_plane.migrate
    eval "$(.venv/bin/python scripts/libpq_env.py "$DATABASE_URL")"
    psql=("$PG_BINDIR/psql" -X -q -v ON_ERROR_STOP=1)
    "${psql[@]}" -c "SET client_min_messages = warning" \
      -c "CREATE SCHEMA IF NOT EXISTS plpgsql_check" \
      -c "CREATE EXTENSION IF NOT EXISTS plpgsql_check SCHEMA plpgsql_check"
    checked=$("${psql[@]}" -At -c "SELECT count(*) FROM pg_proc p
      JOIN pg_language l ON l.oid = p.prolang AND l.lanname = '\''plpgsql'\''
     WHERE p.pronamespace = '\''control_plane'\''::regnamespace")
    findings=$("${psql[@]}" -x -t -f scripts/plpgsql-check.sql)
    if [[ -n $findings ]]; then
      printf "%s\n" "$findings"
      echo "plpgsql_check: findings in the functions above ($checked checked)" >&2
      exit 1
    fi
    echo "plpgsql_check: $checked PL/pgSQL function(s) and procedure(s), no findings" >&2
  '
}

step "ruff check" "$PY/ruff" check .
step "ruff format --check" "$PY/ruff" format --check .
step "mypy --strict" "$PY/mypy"
step "shellcheck" run_shellcheck
step "plpgsql_check" run_plpgsql_check

if (( ${#failed[@]} )); then
  log "FAILED: ${failed[*]}"
  exit 1
fi
log "all checks passed"
