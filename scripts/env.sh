#!/usr/bin/env bash
# Print `export` lines for the run or test environment; use as
#   out="$(scripts/env.sh test)" && eval "$out"
#
# DATABASE_URL set      -> used as-is (nothing is started)
# DATABASE_URL unset    -> the private cluster: `up run`, or `reset test` (tests start fresh)
# CONTROL_PLANE_ADMIN_TOKEN unset -> run: .local/admin-token (generated once, 0600);
#                                    test: a random token for this run
# Also exports PG_BINDIR (psql, pgbench, ... of the chosen PostgreSQL major) and
# CONTROL_PLANE_LOCAL_CLUSTER (run|test when the private cluster is used, empty otherwise).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)
log() { printf 'env: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

MODE=${1:-}
case $MODE in run|test) ;; *) echo "usage: scripts/env.sh <run|test>" >&2; exit 2 ;; esac

emit() { printf 'export %s=%q\n' "$1" "$2"; }

PG_BINDIR=$(bash "$ROOT/scripts/ensure-packages.sh")
emit PG_BINDIR "$PG_BINDIR"

if [[ -n ${DATABASE_URL:-} ]]; then
  log "using DATABASE_URL from the environment (no private cluster is started)"
  emit DATABASE_URL "$DATABASE_URL"
  emit CONTROL_PLANE_LOCAL_CLUSTER ""
  # Say clearly when the server cannot run the pg_cron sweep.
  if preload=$("$PG_BINDIR/psql" -X -At -d "$DATABASE_URL" -c 'SHOW shared_preload_libraries' \
                 2>/dev/null); then
    if [[ ",${preload// /}," != *,pg_cron,* ]]; then
      log "WARNING: pg_cron is not in shared_preload_libraries on that server:" \
          "the liveness sweep cannot be scheduled there"
    fi
  else
    log "WARNING: could not connect to DATABASE_URL to check for pg_cron"
  fi
else
  if [[ $MODE == test ]]; then
    url=$(bash "$ROOT/scripts/local-db.sh" reset test)
  else
    url=$(bash "$ROOT/scripts/local-db.sh" up run)
  fi
  url=${url##*$'\n'}
  [[ $url == postgresql://* ]] || die "local-db.sh did not print a URL"
  emit DATABASE_URL "$url"
  emit CONTROL_PLANE_LOCAL_CLUSTER "$MODE"
fi

if [[ -z ${CONTROL_PLANE_ADMIN_TOKEN:-} ]]; then
  if [[ $MODE == run ]]; then
    tokfile=$ROOT/.local/admin-token
    if [[ ! -s $tokfile ]]; then
      mkdir -p "$ROOT/.local"
      (umask 077 && python3 -c 'import secrets;print(secrets.token_urlsafe(32))' >"$tokfile.tmp")
      mv -f "$tokfile.tmp" "$tokfile"
    fi
    chmod 600 "$tokfile"
    emit CONTROL_PLANE_ADMIN_TOKEN "$(<"$tokfile")"
    log "admin token: cat .local/admin-token"
  else
    emit CONTROL_PLANE_ADMIN_TOKEN "$(python3 -c 'import secrets;print(secrets.token_urlsafe(32))')"
  fi
fi
