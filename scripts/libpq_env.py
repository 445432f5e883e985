"""Print `export PG...=` lines equivalent to a libpq connection string/URL (default: $DATABASE_URL).

For tools that cannot take a URL with query parameters (pg_prove splits its options on '='):
    eval "$(.venv/bin/python scripts/libpq_env.py)" && pg_prove tests/sql/*.sql
"""

from __future__ import annotations

import os
import shlex
import sys

from psycopg.conninfo import conninfo_to_dict

# libpq keyword -> environment variable (https://www.postgresql.org/docs/current/libpq-envars.html)
ENV = {
    "host": "PGHOST",
    "hostaddr": "PGHOSTADDR",
    "port": "PGPORT",
    "dbname": "PGDATABASE",
    "user": "PGUSER",
    "password": "PGPASSWORD",
    "passfile": "PGPASSFILE",
    "channel_binding": "PGCHANNELBINDING",
    "service": "PGSERVICE",
    "options": "PGOPTIONS",
    "application_name": "PGAPPNAME",
    "sslmode": "PGSSLMODE",
    "requiressl": "PGREQUIRESSL",
    "sslcompression": "PGSSLCOMPRESSION",
    "sslcert": "PGSSLCERT",
    "sslkey": "PGSSLKEY",
    "sslrootcert": "PGSSLROOTCERT",
    "sslcrl": "PGSSLCRL",
    "sslcrldir": "PGSSLCRLDIR",
    "sslsni": "PGSSLSNI",
    "requirepeer": "PGREQUIREPEER",
    "ssl_min_protocol_version": "PGSSLMINPROTOCOLVERSION",
    "ssl_max_protocol_version": "PGSSLMAXPROTOCOLVERSION",
    "gssencmode": "PGGSSENCMODE",
    "krbsrvname": "PGKRBSRVNAME",
    "gsslib": "PGGSSLIB",
    "connect_timeout": "PGCONNECT_TIMEOUT",
    "client_encoding": "PGCLIENTENCODING",
    "target_session_attrs": "PGTARGETSESSIONATTRS",
    "load_balance_hosts": "PGLOADBALANCEHOSTS",
}


def main() -> int:
    url = sys.argv[1] if len(sys.argv) > 1 else os.environ.get("DATABASE_URL", "")
    if not url:
        print("libpq_env: no connection string (argument or DATABASE_URL)", file=sys.stderr)
        return 2
    for key, value in conninfo_to_dict(url).items():
        var = ENV.get(key)
        if var is None:
            print(f"libpq_env: ignoring unsupported parameter {key!r}", file=sys.stderr)
            continue
        print(f"export {var}={shlex.quote(str(value))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
