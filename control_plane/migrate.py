"""`python -m control_plane.migrate`: bring a database to head.

1. checks that pg_cron is preloaded and this database is its `cron.database_name`;
2. applies the yoyo migrations in `sql/migrations` (plain SQL, one transaction each);
3. re-applies every `sql/functions/*.sql` file (CREATE OR REPLACE) as `control_plane_owner`, in one
   transaction, after revoking every function grant, so each file's own GRANTs are the whole
   truth about what each login role may call;
4. registers where pg_cron's jobs connect and checks they can (control_plane/cron_jobs.py);
5. gives each login role (the API role, the admin role) a generated password kept in the state
   dir (ignored by the embedded cluster's local trust), unless its override URL
   (CONTROL_PLANE_API_DATABASE_URL, CONTROL_PLANE_ADMIN_DATABASE_URL) says how to log in.

Runs as the DATABASE_URL login, which must be a superuser (it creates roles and pg_cron jobs).
"""

from __future__ import annotations

import secrets
import sys
from pathlib import Path

import psycopg
from psycopg import sql
from yoyo import get_backend, read_migrations

from control_plane.config import SQL_DIR, Settings, load_settings
from control_plane.cron_jobs import ensure_job_connection
from control_plane.database import ADMIN_ROLE, API_ROLE


def _yoyo_url(url: str) -> str:
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def _scalar(conn: psycopg.Connection, query: str) -> str | None:
    row = conn.execute(query).fetchone()
    value: str | None = row[0] if row else None
    return value


def check_pg_cron(conn: psycopg.Connection) -> None:
    preload = _scalar(conn, "SHOW shared_preload_libraries") or ""
    if "pg_cron" not in [lib.strip() for lib in preload.split(",")]:
        sys.exit(
            "pg_cron is not preloaded on this server: add shared_preload_libraries = 'pg_cron' "
            "and cron.database_name = '<this database>' to postgresql.conf and restart it."
        )
    cron_db = _scalar(conn, "SELECT current_setting('cron.database_name', true)")
    this_db = _scalar(conn, "SELECT current_database()")
    if (cron_db or "postgres") != this_db:
        sys.exit(
            f"pg_cron runs in database {cron_db or 'postgres'!r}, not {this_db!r}: set "
            f"cron.database_name = '{this_db}' (the sweep job must live in this database)."
        )


def apply_migrations(url: str) -> list[str]:
    backend = get_backend(_yoyo_url(url))
    migrations = read_migrations(str(SQL_DIR / "migrations"))
    with backend.lock():
        pending = backend.to_apply(migrations)
        backend.apply_migrations(pending)
    return [m.id for m in pending]


def function_files() -> list[Path]:
    return sorted((SQL_DIR / "functions").glob("*.sql"))


# CREATE OR REPLACE cannot change a function's result type or OUT parameters: that change
# belongs in a migration (DROP FUNCTION the old signature), like any other schema change.
_REPLACE_HINT = (
    "\nhint: a function's return type or OUT parameters changed; add a migration in "
    "sql/migrations that drops the old function, then migrate again"
)


def apply_functions(conn: psycopg.Connection) -> int:
    files = function_files()
    with conn.transaction():
        # Let the owner's ops function read yoyo's bookkeeping (schema-at-head readiness).
        conn.execute("GRANT SELECT ON public._yoyo_migration TO control_plane_owner")
        conn.execute("SET LOCAL ROLE control_plane_owner")
        for kind in ("FUNCTIONS", "PROCEDURES"):
            conn.execute(
                sql.SQL("REVOKE ALL ON ALL {} IN SCHEMA control_plane FROM PUBLIC, {}, {}").format(
                    sql.SQL(kind), sql.Identifier(API_ROLE), sql.Identifier(ADMIN_ROLE)
                )
            )
        for path in files:
            try:
                conn.execute(path.read_text())
            except psycopg.Error as exc:
                hint = _REPLACE_HINT if exc.sqlstate == "42P13" else ""
                raise SystemExit(f"{path.relative_to(SQL_DIR.parent)}: {exc}{hint}") from exc
        # A function created for the first time gets PostgreSQL's global default EXECUTE for
        # PUBLIC (a per-schema ALTER DEFAULT PRIVILEGES cannot revoke a global default), so
        # revoke it again now that every file ran: only the files' explicit GRANTs remain.
        conn.execute("REVOKE EXECUTE ON ALL FUNCTIONS IN SCHEMA control_plane FROM PUBLIC")
        conn.execute("REVOKE EXECUTE ON ALL PROCEDURES IN SCHEMA control_plane FROM PUBLIC")
    return len(files)


def ensure_password(conn: psycopg.Connection, role: str, path: Path) -> None:
    """Give `role` the password kept in `path`, generating it there (0600) the first time."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch(mode=0o600)
        path.write_text(secrets.token_urlsafe(32) + "\n")
    password = path.read_text().strip()
    conn.execute(
        sql.SQL("ALTER ROLE {} PASSWORD {}").format(sql.Identifier(role), sql.Literal(password))
    )


def ensure_login_passwords(conn: psycopg.Connection, settings: Settings) -> None:
    # A role whose override URL is set logs in however that URL says: leave its password alone.
    if not settings.api_database_url:
        ensure_password(conn, API_ROLE, settings.api_password_file)
    if not settings.admin_database_url:
        ensure_password(conn, ADMIN_ROLE, settings.admin_password_file)


def main() -> None:
    settings = load_settings()
    with psycopg.connect(settings.database_url, autocommit=True) as conn:
        check_pg_cron(conn)
    applied = apply_migrations(settings.database_url)
    with psycopg.connect(settings.database_url, autocommit=True) as conn:
        count = apply_functions(conn)
        cron_summary = ensure_job_connection(conn)
        ensure_login_passwords(conn, settings)
    print(cron_summary, file=sys.stderr)
    print(
        f"migrate: {len(applied)} migration(s) applied, {count} function file(s) applied",
        file=sys.stderr,
    )


if __name__ == "__main__":
    main()
