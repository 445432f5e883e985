#!/usr/bin/env bash
# `make drills`: the reliability drills (docs/reliability.md), at most ~15 minutes.
#
#   bash drills/run.sh [name ...]     all drills, or some of: db-restart-fast
#                                     db-restart-immediate db-freeze fuzz races slow-clients
#                                     noisy-neighbour app-down soak reconnect-storm
#
# DATABASE_URL unset → the private *test* cluster is reset (fresh) and used, and stopped at the
# end, exactly as `make test` does (the two wait for each other). DATABASE_URL set → that server
# is used; the restart drills stop and start it with pg_ctl, so it must be a disposable cluster
# on this machine.
# schemathesis (fuzz drill) lives in its own venv, .local/drills-venv, installed on first use:
# it is a tool of this suite, not a dependency of the service.
# Everything is loopback only; every process the drills start is stopped before they return.
set -euo pipefail

# All in a function: bash parses it whole before running, so editing this file while it runs
# cannot derail a run.
main() {
  ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)
  cd "$ROOT"
  log() { printf 'drills: %s\n' "$*" >&2; }

  # The private test cluster is shared with `make test` (which resets it): take its lock.
  if [[ -z ${DATABASE_URL:-} && -z ${DRILLS_LOCKED:-} ]]; then
    mkdir -p .local
    flock -n .local/make-test.lock true || log "waiting for a make test in this checkout"
    DRILLS_LOCKED=1 exec flock -o -w 7200 .local/make-test.lock bash "$ROOT/drills/run.sh" "$@"
  fi

  PY=${DRILLS_PYTHON:-}
  if [[ -z $PY ]]; then
    if [[ -x .venv/bin/python ]]; then PY=.venv/bin/python; else PY=$(command -v python3); fi
  fi

  out="$(bash scripts/env.sh test)"
  eval "$out"
  if [[ -n ${CONTROL_PLANE_LOCAL_CLUSTER:-} ]]; then
    trap 'bash scripts/local-db.sh down test || true' EXIT
  else
    log "WARNING: using DATABASE_URL from the environment; the restart drills will stop and" \
        "start that PostgreSQL server"
  fi
  "$PY" -m control_plane.migrate

  ST_VENV=$ROOT/.local/drills-venv
  if ! "$ST_VENV/bin/schemathesis" --version >/dev/null 2>&1; then
    log "installing schemathesis into $ST_VENV"
    rm -rf "$ST_VENV"
    "$PY" -m venv "$ST_VENV"
    "$ST_VENV/bin/pip" install -q --disable-pip-version-check 'schemathesis>=4.30,<5' >&2
  fi
  export DRILLS_SCHEMATHESIS=$ST_VENV/bin/schemathesis

  # Keep the reports of the last 5 runs (the folder does not exist yet on a fresh clone, and
  # a failing find would end this script under pipefail).
  mkdir -p "$ROOT/.local/drills"
  find "$ROOT/.local/drills" -mindepth 1 -maxdepth 1 -type d 2>/dev/null | sort | head -n -4 \
    | xargs -r rm -rf --
  DRILLS_WORK_DIR=${DRILLS_WORK_DIR:-$ROOT/.local/drills/$(date +%Y%m%d-%H%M%S)}
  export DRILLS_WORK_DIR
  mkdir -p "$DRILLS_WORK_DIR"
  log "server logs and reports in $DRILLS_WORK_DIR"
  "$PY" -m drills "$@"
}

main "$@"; exit $?
