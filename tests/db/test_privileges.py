"""Least privilege, proven by logging in as the API role the way the app does (contract §8).

tests/sql/14-privileges.sql checks the catalog; this file checks what a real session of
control_plane_api can and cannot do.
"""

from __future__ import annotations

import hashlib
import os
import secrets
from collections.abc import Iterator

import psycopg
import pytest
from psycopg import errors, sql

from control_plane.config import load_settings
from control_plane.database import API_ROLE, api_dsn

PRIVILEGES = ("SELECT", "INSERT", "UPDATE", "DELETE", "TRUNCATE")


@pytest.fixture(scope="module")
def api(database_url: str, migrated: None) -> Iterator[psycopg.Connection]:
    """A connection with exactly the app's login: DATABASE_URL with the user swapped."""
    dsn = api_dsn(load_settings({**os.environ, "DATABASE_URL": database_url}))
    with psycopg.connect(dsn, autocommit=True) as conn:
        yield conn


def tables(db: psycopg.Connection) -> list[str]:
    rows = db.execute(
        "SELECT relname FROM pg_class WHERE relnamespace = 'control_plane'::regnamespace"
        " AND relkind IN ('r', 'p') ORDER BY 1"
    ).fetchall()
    return [r[0] for r in rows]


def statement(privilege: str, table: str, first_column: str) -> sql.Composed:
    target = sql.Identifier("control_plane", table)
    col = sql.Identifier(first_column)
    return {
        "SELECT": sql.SQL("SELECT * FROM {} LIMIT 1"),
        "INSERT": sql.SQL("INSERT INTO {} DEFAULT VALUES"),
        "UPDATE": sql.SQL("UPDATE {} SET {col} = {col} WHERE false"),
        "DELETE": sql.SQL("DELETE FROM {} WHERE false"),
        "TRUNCATE": sql.SQL("TRUNCATE {}"),
    }[privilege].format(target, col=col)


def test_logged_in_as_the_api_role_not_a_superuser(api: psycopg.Connection) -> None:
    user, superuser = api.execute("SELECT current_user, current_setting('is_superuser')").fetchone()
    assert user == API_ROLE
    assert superuser == "off"
    assert api.execute("SELECT rolsuper FROM pg_roles WHERE rolname = current_user").fetchone() == (
        False,
    )


def test_no_table_privilege_on_any_table(api: psycopg.Connection, db: psycopg.Connection) -> None:
    names = tables(db)
    assert "runtime_node_attachments" in names and "participant_tokens" in names
    allowed = []
    for table in names:
        first_column = db.execute(
            # The first ordinary column (an identity column refuses UPDATE before privileges).
            "SELECT attname FROM pg_attribute WHERE attrelid = %s::regclass AND attnum > 0"
            " AND NOT attisdropped AND attidentity = '' ORDER BY attnum LIMIT 1",
            (f"control_plane.{table}",),
        ).fetchone()[0]
        for privilege in PRIVILEGES:
            try:
                api.execute(statement(privilege, table, first_column))
            except errors.InsufficientPrivilege:
                continue
            allowed.append(f"{privilege} {table}")
    assert allowed == []


@pytest.mark.parametrize(
    "call",
    [
        "SELECT control_plane.caller_participant('\\x00'::bytea)",
        "SELECT control_plane.version_compare('1.0', '2.0')",
        "SELECT control_plane.version_below_floor('1.0', '2.0')",
    ],
)
def test_internal_functions_are_not_callable(api: psycopg.Connection, call: str) -> None:
    with pytest.raises(errors.InsufficientPrivilege):
        api.execute(call)


def test_the_sweep_is_not_callable(api: psycopg.Connection, db: psycopg.Connection) -> None:
    sweeps = db.execute(
        "SELECT p.oid::regprocedure::text, p.prokind FROM pg_proc p"
        " WHERE p.pronamespace = 'control_plane'::regnamespace"
        " AND p.proname LIKE 'runtime_node_sweep%'"
    ).fetchall()
    if not sweeps:
        pytest.skip("no sweep function in this schema yet")
    if any(sig.startswith("control_plane.runtime_node_sweep(") for sig, _ in sweeps):
        with pytest.raises(errors.InsufficientPrivilege):
            api.execute("SELECT * FROM control_plane.runtime_node_sweep()")
    for sig, kind in sweeps:
        # Whatever the arguments, EXECUTE is checked before they matter.
        assert not db.execute(
            "SELECT has_function_privilege(%s, %s::regprocedure, 'EXECUTE')", (API_ROLE, sig)
        ).fetchone()[0], f"{sig} ({kind}) is executable by the API role"


def test_api_functions_are_callable(api: psycopg.Connection) -> None:
    status = api.execute("SELECT control_plane.ops_status()").fetchone()[0]
    assert "migrations" in status and "sweep" in status
    # The function runs and refuses the unknown token itself: EXECUTE was granted.
    digest = hashlib.sha256(secrets.token_bytes(16)).digest()
    verdicts = api.execute(
        "SELECT control_plane.runtime_node_heartbeat_batch(ARRAY[%s], ARRAY[%s], ARRAY['online'])",
        (digest, f"priv-{secrets.token_hex(6)}"),
    ).fetchone()[0]
    assert verdicts == ["CP401"]
    # The single-beat function is for psql users only: the app never calls it.
    with pytest.raises(errors.InsufficientPrivilege):
        api.execute(
            "SELECT control_plane.runtime_node_heartbeat(%s, %s, 'online')",
            (digest, f"priv-{secrets.token_hex(6)}"),
        )


@pytest.mark.parametrize("role", ["control_plane_owner", "postgres"])
def test_cannot_become_another_role(api: psycopg.Connection, role: str) -> None:
    with pytest.raises(errors.InsufficientPrivilege):
        api.execute(sql.SQL("SET ROLE {}").format(sql.Identifier(role)))
    with pytest.raises(errors.InsufficientPrivilege):
        api.execute(sql.SQL("SET SESSION AUTHORIZATION {}").format(sql.Identifier(role)))
    assert api.execute("SELECT current_user").fetchone()[0] == API_ROLE


@pytest.mark.parametrize(
    "ddl",
    [
        "CREATE TABLE control_plane.intruder (x int)",
        "CREATE TABLE public.intruder (x int)",
        "CREATE FUNCTION control_plane.intruder() RETURNS int LANGUAGE sql RETURN 1",
        # Redefining an API function would let the role run anything as the owner.
        "CREATE OR REPLACE FUNCTION control_plane.ops_status() RETURNS jsonb LANGUAGE sql"
        " RETURN '{}'::jsonb",
        "ALTER FUNCTION control_plane.ops_status() SECURITY INVOKER",
        "CREATE SCHEMA intruder",
    ],
)
def test_cannot_create_or_alter_objects(api: psycopg.Connection, ddl: str) -> None:
    with pytest.raises(errors.InsufficientPrivilege):
        api.execute(ddl)


def test_owns_nothing(db: psycopg.Connection) -> None:
    owned = db.execute(
        "SELECT count(*) FROM pg_class WHERE relowner = %(r)s::regrole"
        " UNION ALL SELECT count(*) FROM pg_proc WHERE proowner = %(r)s::regrole"
        " UNION ALL SELECT count(*) FROM pg_namespace WHERE nspowner = %(r)s::regrole"
        " UNION ALL SELECT count(*) FROM pg_type WHERE typowner = %(r)s::regrole",
        {"r": API_ROLE},
    ).fetchall()
    assert owned == [(0,), (0,), (0,), (0,)]
