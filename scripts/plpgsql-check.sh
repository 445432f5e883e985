#!/usr/bin/env bash
# plpgsql_check over every PL/pgSQL function and procedure of schema control_plane
# (scripts/plpgsql-check.sql); exits 1 on any finding. Part of `make lint` (scripts/lint.sh),
# which holds the checkout's make-test lock around it: the check needs the tables, so it runs on
# the test cluster freshly migrated from zero (or on DATABASE_URL when set), with the extension
# in its own schema `plpgsql_check` of that database.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)
cd "$ROOT"
out="$(bash scripts/env.sh test)"
eval "$out"
if [[ -n "${CONTROL_PLANE_LOCAL_CLUSTER:-}" ]]; then
  trap 'bash scripts/local-db.sh down test >/dev/null 2>&1 || true' EXIT
fi
.venv/bin/python -m control_plane.migrate
eval "$(.venv/bin/python scripts/libpq_env.py "$DATABASE_URL")"
psql=("$PG_BINDIR/psql" -X -q -v ON_ERROR_STOP=1)
"${psql[@]}" -c "SET client_min_messages = warning" \
  -c "CREATE SCHEMA IF NOT EXISTS plpgsql_check" \
  -c "CREATE EXTENSION IF NOT EXISTS plpgsql_check SCHEMA plpgsql_check"
checked=$("${psql[@]}" -At -c "SELECT count(*) FROM pg_proc p
  JOIN pg_language l ON l.oid = p.prolang AND l.lanname = 'plpgsql'
 WHERE p.pronamespace = 'control_plane'::regnamespace")
findings=$("${psql[@]}" -x -t -f scripts/plpgsql-check.sql)
if [[ -n $findings ]]; then
  printf '%s\n' "$findings"
  echo "plpgsql_check: findings in the functions above ($checked checked)" >&2
  exit 1
fi
echo "plpgsql_check: $checked PL/pgSQL function(s) and procedure(s), no findings" >&2
