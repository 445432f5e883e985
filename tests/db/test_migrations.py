"""Migrations: re-running migrate is a no-op, and a database built from zero has the same schema.

Schemas are compared as `pg_dump --schema-only --schema=control_plane` text (tables, domains,
indexes, triggers, function bodies, comments, ownership and every GRANT), taken with the pg_dump
of the server's own bin directory.
"""

from __future__ import annotations

import os
import re
import secrets
import subprocess
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest
from psycopg import sql
from yoyo import get_backend, read_migrations
from yoyo.migrations import MigrationList

from control_plane import migrate

MigrateCli = Callable[..., subprocess.CompletedProcess[str]]
PG_BINDIR = Path(os.environ.get("PG_BINDIR", "/usr/lib/postgresql/15/bin"))


def schema_dump(url: str) -> str:
    proc = subprocess.run(
        [str(PG_BINDIR / "pg_dump"), "--schema-only", "--schema=control_plane", "--dbname", url],
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
    )
    # pg_dump >= 15.14 brackets its output with \restrict/\unrestrict and a random key.
    return "\n".join(
        line
        for line in proc.stdout.splitlines()
        if not line.startswith(("\\restrict", "\\unrestrict"))
    )


def cron_jobs(db: psycopg.Connection) -> list[tuple[str, str, str, str]]:
    if db.execute("SELECT to_regclass('cron.job')").fetchone()[0] is None:
        return []
    return db.execute(
        "SELECT jobname, schedule, command, username FROM cron.job"
        " WHERE database = current_database() ORDER BY jobname, jobid"
    ).fetchall()


def applied_migrations(db: psycopg.Connection) -> list[str]:
    return [r[0] for r in db.execute("SELECT migration_id FROM public._yoyo_migration ORDER BY 1")]


def test_migrating_a_migrated_database_is_a_no_op(
    database_url: str, db: psycopg.Connection, run_migrate: MigrateCli
) -> None:
    before = (schema_dump(database_url), applied_migrations(db), cron_jobs(db))
    proc = run_migrate(database_url)
    assert "0 migration(s) applied" in proc.stderr, proc.stderr
    after = (schema_dump(database_url), applied_migrations(db), cron_jobs(db))
    assert after[1] == before[1], "the applied-migration list changed"
    assert after[2] == before[2], "pg_cron jobs were added or changed (not idempotent)"
    assert after[0] == before[0], "the control_plane schema changed on a second migrate"


def _with_database(url: str, dbname: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path="/" + dbname))


@pytest.fixture(scope="session")
def background_drops() -> Iterator[list[threading.Thread]]:
    """DROP DATABASE runs in the background and is joined at the end of the test session
    (the rest of the suite runs meanwhile).

    On PostgreSQL 15, DROP DATABASE waits until every backend accepts a ProcSignalBarrier, and
    the pg_cron launcher does not while one of its jobs runs (citusdata/pg_cron#318): with
    pg_cron < 1.5 the sweep job runs for most of every minute, so a drop can wait ~55 s.
    """
    threads: list[threading.Thread] = []
    yield threads
    for thread in threads:
        thread.join(timeout=90)


@pytest.fixture
def empty_database(
    database_url: str, db: psycopg.Connection, background_drops: list[threading.Thread]
) -> Iterator[str]:
    name = f"cp_fresh_{secrets.token_hex(6)}"
    db.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))

    def drop() -> None:
        with psycopg.connect(database_url, autocommit=True) as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )

    try:
        yield _with_database(database_url, name)
    finally:
        thread = threading.Thread(target=drop, name=f"drop-{name}")
        thread.start()
        background_drops.append(thread)


def _needs_pg_cron(migration_sql: str) -> bool:
    """The migration creates the pg_cron extension or calls into the cron schema (comments
    do not count)."""
    code = re.sub(r"--[^\n]*", "", migration_sql)
    return re.search(r"\bpg_cron\b|\bcron\.", code) is not None


def test_a_database_from_zero_gets_the_same_schema(
    database_url: str, empty_database: str, run_migrate: MigrateCli
) -> None:
    """`python -m control_plane.migrate` on a brand-new database.

    pg_cron lives in exactly one database per cluster (`cron.database_name`, a restart-only
    setting), so on a shared test cluster a second database can never get the sweep job, and
    migrate must refuse it up front rather than half-migrate it. That refusal is the first
    thing asserted. The schema from zero is then built the way migrate builds it (the same
    yoyo migrations, then every `sql/functions` file via `migrate.apply_functions`), with the
    migrations that schedule pg_cron jobs marked applied instead of run: they touch only the
    `cron` schema, which the comparison leaves out; had one of them created anything in
    `control_plane`, the dumps would differ and this test would say so.
    """
    refused = run_migrate(empty_database, check=False)
    assert refused.returncode != 0
    assert "cron.database_name" in refused.stderr, refused.stderr
    with psycopg.connect(empty_database, autocommit=True) as fresh:
        leftovers = fresh.execute(
            "SELECT count(*) FROM pg_namespace WHERE nspname = 'control_plane'"
            " UNION ALL SELECT count(*) FROM pg_class WHERE relname LIKE '_yoyo%'"
        ).fetchall()
    assert leftovers == [(0,), (0,)], "a refused migrate must leave the database untouched"

    backend = get_backend(migrate._yoyo_url(empty_database))
    migrations = read_migrations(str(migrate.SQL_DIR / "migrations"))
    with backend.lock():
        pending = backend.to_apply(migrations)
        cron_only = [m for m in pending if _needs_pg_cron(Path(m.path).read_text())]
        backend.mark_migrations(MigrationList(cron_only))
        backend.apply_migrations(
            MigrationList([m for m in pending if m not in cron_only], pending.post_apply)
        )
    backend.connection.close()
    with psycopg.connect(empty_database, autocommit=True) as fresh:
        migrate.apply_functions(fresh)

    assert schema_dump(empty_database) == schema_dump(database_url)
