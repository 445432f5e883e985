#!/usr/bin/env bash
# `make lint`: every static check, each one run even when an earlier one failed; exits non-zero
# when any reports a finding.
#   ruff check, ruff format --check   Python style and lint (pyproject.toml [tool.ruff])
#   mypy                              strict type check (pyproject.toml [tool.mypy])
#   ShellCheck                        every shell script (scripts/, bench/, drills/, .ci/)
#   plpgsql_check                     every PL/pgSQL function and procedure in schema
#                                     control_plane, with performance, extra and security
#                                     warnings (scripts/plpgsql-check.sh), on the test cluster
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
  {
    git ls-files -- scripts bench drills .ci '*.sh' 2>/dev/null \
      || find scripts bench drills .ci -type f  # not a git checkout (an unpacked archive)
  } | sort -u | while read -r f; do
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
  (( ${#scripts[@]} )) || { log "shellcheck: no shell scripts found"; return 1; }
  log "shellcheck: ${#scripts[@]} script(s)"
  shellcheck -x "${scripts[@]}"
}

# One make test/lint database reset at a time per checkout (they share the test cluster).
run_plpgsql_check() {
  mkdir -p .local
  flock -w 7200 .local/make-test.lock bash scripts/plpgsql-check.sh
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
