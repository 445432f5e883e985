"""Least privilege, proven by logging in as the API and admin roles the way the app does
(contract §8, §11).

tests/sql/14-privileges.sql and 15-admin-role.sql check the catalog; this file checks what real
sessions of control_plane_api and control_plane_admin can and cannot do. The point of the admin
role: a leaked API-role credential cannot mint participants, tokens or memberships.
"""

from __future__ import annotations

import hashlib
import os
import secrets
from collections.abc import Callable, Iterator

import psycopg
import pytest
from psycopg import errors, sql

from control_plane.config import Settings, load_settings
from control_plane.database import ADMIN_ROLE, API_ROLE, admin_dsn, api_dsn

PRIVILEGES = ("SELECT", "INSERT", "UPDATE", "DELETE", "TRUNCATE")


def _login(database_url: str, dsn_of: Callable[[Settings], str]) -> psycopg.Connection:
    """A connection with exactly the app's login: DATABASE_URL with the user swapped."""
    settings = load_settings({**os.environ, "DATABASE_URL": database_url})
    return psycopg.connect(dsn_of(settings), autocommit=True)


@pytest.fixture(scope="module")
def api(database_url: str, migrated: None) -> Iterator[psycopg.Connection]:
    with _login(database_url, api_dsn) as conn:
        yield conn


@pytest.fixture(scope="module")
def admin_db(database_url: str, migrated: None) -> Iterator[psycopg.Connection]:
    with _login(database_url, admin_dsn) as conn:
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


# --- the admin role, and the API role's refusal of every admin function --------------------------


def admin_functions(db: psycopg.Connection) -> list[tuple[str, str]]:
    """Every admin_* function with a call of it on NULL arguments (EXECUTE is checked first)."""
    rows = db.execute(
        "SELECT p.oid::regprocedure::text, format('SELECT %s(%s)', p.oid::regproc,"
        "   (SELECT string_agg(format('NULL::%s', format_type(t, NULL)), ', ' ORDER BY i)"
        "      FROM unnest(p.proargtypes::oid[]) WITH ORDINALITY a (t, i)))"
        " FROM pg_proc p WHERE p.pronamespace = 'control_plane'::regnamespace"
        " AND p.proname LIKE 'admin\\_%' ORDER BY 1"
    ).fetchall()
    return [(sig, call) for sig, call in rows]


def test_a_leaked_api_credential_cannot_act_as_the_admin(
    api: psycopg.Connection, db: psycopg.Connection
) -> None:
    calls = admin_functions(db)
    names = {sig.split("(")[0] for sig, _ in calls}
    assert {
        "control_plane.admin_create_participant",
        "control_plane.admin_issue_token",
        "control_plane.admin_put_membership",
        "control_plane.admin_revoke_runtime_node",
        "control_plane.admin_list_participants",
    } <= names
    accepted = []
    for sig, call in calls:
        try:
            api.execute(call)
        except errors.InsufficientPrivilege:
            continue
        except psycopg.Error as exc:  # the function ran and refused its arguments
            accepted.append(f"{sig}: {exc.sqlstate}")
        else:
            accepted.append(f"{sig}: ran")
    assert accepted == []


def test_the_api_role_cannot_mint_a_token_for_itself(
    api: psycopg.Connection, db: psycopg.Connection
) -> None:
    pid = db.execute("SELECT gen_random_uuid()").fetchone()[0]
    with pytest.raises(errors.InsufficientPrivilege):
        api.execute("SELECT control_plane.admin_create_participant('intruder')")
    with pytest.raises(errors.InsufficientPrivilege):
        api.execute("SELECT control_plane.admin_issue_token(%s)", (pid,))
    with pytest.raises(errors.InsufficientPrivilege):
        api.execute(
            "SELECT control_plane.admin_put_membership(%s, %s, 'owner', 'active')", (pid, pid)
        )
    assert db.execute(
        "SELECT count(*) FROM control_plane.participants WHERE display_name = 'intruder'"
    ).fetchone() == (0,)


def test_logged_in_as_the_admin_role_not_a_superuser(admin_db: psycopg.Connection) -> None:
    user, superuser = admin_db.execute(
        "SELECT current_user, current_setting('is_superuser')"
    ).fetchone()
    assert (user, superuser) == (ADMIN_ROLE, "off")


def test_the_admin_role_may_execute_every_admin_function(
    admin_db: psycopg.Connection, db: psycopg.Connection
) -> None:
    refused = []
    for sig, call in admin_functions(db):
        admin_db.execute("BEGIN")
        try:
            admin_db.execute(call)
        except errors.InsufficientPrivilege:
            refused.append(sig)
        except psycopg.Error:
            pass  # it ran: NULL arguments are refused by the function itself
        finally:
            admin_db.execute("ROLLBACK")  # NULL arguments may still create a row
    assert refused == []


def test_the_admin_role_works_end_to_end(admin_db: psycopg.Connection) -> None:
    pid = admin_db.execute("SELECT control_plane.admin_create_participant('via admin role')")
    participant = pid.fetchone()[0]["participantId"]
    issued = admin_db.execute(
        "SELECT control_plane.admin_issue_token(%s, 'admin-role test')", (participant,)
    ).fetchone()[0]
    detail = admin_db.execute(
        "SELECT control_plane.admin_get_participant(%s)", (participant,)
    ).fetchone()[0]
    assert [t["tokenId"] for t in detail["tokens"]] == [issued["tokenId"]]


@pytest.mark.parametrize(
    "call",
    [
        "SELECT control_plane.runtime_node_heartbeat('\\x00'::bytea, 'n', 'online')",
        "SELECT control_plane.runtime_node_roster('\\x00'::bytea, gen_random_uuid())",
        "SELECT control_plane.ops_status()",
        "SELECT control_plane.runtime_node_revoke_slot(gen_random_uuid(), 'n', NULL, NULL)",
        "SELECT count(*) FROM control_plane.participant_tokens",
        "SELECT count(*) FROM control_plane.sessions",
    ],
)
def test_the_admin_role_may_do_nothing_else(admin_db: psycopg.Connection, call: str) -> None:
    with pytest.raises(errors.InsufficientPrivilege):
        admin_db.execute(call)


@pytest.mark.parametrize("role", ["control_plane_owner", "control_plane_api", "postgres"])
def test_the_admin_role_cannot_become_another_role(admin_db: psycopg.Connection, role: str) -> None:
    with pytest.raises(errors.InsufficientPrivilege):
        admin_db.execute(sql.SQL("SET ROLE {}").format(sql.Identifier(role)))
    assert admin_db.execute("SELECT current_user").fetchone()[0] == ADMIN_ROLE


def test_the_api_role_cannot_become_the_admin(api: psycopg.Connection) -> None:
    with pytest.raises(errors.InsufficientPrivilege):
        api.execute(sql.SQL("SET ROLE {}").format(sql.Identifier(ADMIN_ROLE)))


def test_an_explicit_admin_login_is_honoured_and_a_wrong_one_fails_closed(
    database_url: str, migrated: None
) -> None:
    """CONTROL_PLANE_ADMIN_DATABASE_URL is used as given (no user swap): pointed at the API
    role by mistake, the admin surface cannot act as the admin."""
    wrong = api_dsn(load_settings({**os.environ, "DATABASE_URL": database_url}))
    settings = load_settings(
        {**os.environ, "DATABASE_URL": database_url, "CONTROL_PLANE_ADMIN_DATABASE_URL": wrong}
    )
    assert admin_dsn(settings) == wrong
    with (
        psycopg.connect(admin_dsn(settings), autocommit=True) as conn,
        pytest.raises(errors.InsufficientPrivilege),
    ):
        assert conn.execute("SELECT current_user").fetchone() == (API_ROLE,)
        conn.execute("SELECT control_plane.admin_list_participants(1, NULL)")
