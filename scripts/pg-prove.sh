#!/usr/bin/env bash
# Run pgTAP files with pg_prove against $DATABASE_URL (a migrated database):
#   scripts/pg-prove.sh tests/sql/20-attach.sql [more.sql ...]
# pg_prove cannot take a URL with query parameters (the private clusters' socket is one), so it
# gets libpq's PG* variables instead. Needs PG_BINDIR (psql of the server's major) and the venv.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)
[[ $# -ge 1 ]] || { echo "usage: scripts/pg-prove.sh FILE.sql..." >&2; exit 2; }
: "${DATABASE_URL:?DATABASE_URL must name a migrated database}"
PG_BINDIR=${PG_BINDIR:-$(bash "$ROOT/scripts/ensure-packages.sh")}

pgenv=$("$ROOT/.venv/bin/python" "$ROOT/scripts/libpq_env.py" "$DATABASE_URL")
eval "$pgenv"
export PGOPTIONS="${PGOPTIONS:-} -c client_min_messages=warning"
"$PG_BINDIR/psql" -X -q -v ON_ERROR_STOP=1 -c 'CREATE EXTENSION IF NOT EXISTS pgtap'
exec pg_prove --psql-bin "$PG_BINDIR/psql" "$@"
