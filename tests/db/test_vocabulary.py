"""One vocabulary per concern, checked against the source of truth.

- Every SQLSTATE the SQL raises (or the heartbeat batch returns) has a row in the one mapping
  table (control_plane/errors.py): an unmapped one would be a 500.
- The Python enumerations and the node-id/version rules of the schema boundary say exactly what
  the database's CHECK constraints and domains say.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import get_args

import asyncpg
import msgspec
import psycopg
import pytest

from control_plane import errors, schemas

SQL_DIR = Path(__file__).resolve().parents[2] / "sql"
ERRCODE = re.compile(r"\bERRCODE\s*=\s*'([^']+)'", re.IGNORECASE)
CUSTOM_SQLSTATE = re.compile(r"'(CP[0-9A-Z]{3})'")
RAISE_EXCEPTION = re.compile(r"\bRAISE\s+EXCEPTION\b(.*?);", re.IGNORECASE | re.DOTALL)


def _sql_texts() -> dict[str, str]:
    files = sorted(SQL_DIR.rglob("*.sql"))
    assert files, f"no SQL files under {SQL_DIR}"
    return {str(p.relative_to(SQL_DIR)): p.read_text() for p in files}


def _condition_sqlstate(name: str) -> str | None:
    """A PL/pgSQL condition name (check_violation) → its SQLSTATE, via asyncpg's error classes
    (one per SQLSTATE, named after the condition)."""
    if re.fullmatch(r"[0-9A-Z]{5}", name):
        return name
    cls = getattr(asyncpg.exceptions, "".join(w.title() for w in name.split("_")) + "Error", None)
    return getattr(cls, "sqlstate", None)


def test_every_sqlstate_under_sql_has_a_row_in_the_table() -> None:
    found: dict[str, set[str]] = {}
    for path, text in _sql_texts().items():
        for code in ERRCODE.findall(text) + CUSTOM_SQLSTATE.findall(text):
            found.setdefault(code, set()).add(path)
    assert "CP403" in found and "check_violation" in found, found  # the grep itself works
    unmapped = {}
    for code, paths in found.items():
        sqlstate = _condition_sqlstate(code)
        # Custom codes need their own row, not a class fallback.
        if (
            sqlstate is None
            or errors.kind_for_sqlstate(sqlstate) is None
            or (sqlstate.startswith("CP") and sqlstate not in errors.SQLSTATE_ERRORS)
        ):
            unmapped[code] = sorted(paths)
    assert not unmapped, f"SQLSTATEs without a row in control_plane/errors.py: {unmapped}"


def test_every_raise_exception_names_its_sqlstate() -> None:
    """Without ERRCODE a RAISE is P0001, which no row maps: the client would get a 500."""
    missing = [
        f"{path}: RAISE EXCEPTION{stmt[:60]!r}"
        for path, text in _sql_texts().items()
        for stmt in RAISE_EXCEPTION.findall(text)
        if not re.search(r"\bERRCODE\b", stmt, re.IGNORECASE)
    ]
    assert not missing, missing


def _check_values(db: psycopg.Connection, table: str, column: str) -> set[str]:
    """The string literals of the CHECK constraint(s) of `table` that mention `column`."""
    rows = db.execute(
        "SELECT pg_get_constraintdef(c.oid) FROM pg_constraint c"
        " WHERE c.conrelid = %s::regclass AND c.contype = 'c'",
        (f"control_plane.{table}",),
    ).fetchall()
    defs = [r[0] for r in rows if re.search(rf"\b{column}\b", r[0])]
    assert len(defs) == 1, (table, column, defs)
    return set(re.findall(r"'([^']*)'::text", defs[0]))


@pytest.mark.parametrize(
    ("table", "column", "python"),
    [
        ("sessions", "state", schemas.SessionState),
        ("session_memberships", "role", schemas.MembershipRole),
        ("session_memberships", "state", schemas.MembershipState),
        ("runtime_node_attachments", "state", schemas.SlotState),
        ("runtime_node_presence", "health_state", schemas.HealthState),
    ],
)
def test_python_enumerations_match_the_sql_checks(
    db: psycopg.Connection, table: str, column: str, python: object
) -> None:
    assert set(get_args(python)) == _check_values(db, table, column)


def test_sweep_modes_match_the_sql_check(db: psycopg.Connection) -> None:
    assert set(get_args(schemas.SweepMode)) == _check_values(db, "sweep_state", "mode")


def test_self_reported_health_is_presence_health_minus_offline() -> None:
    assert set(get_args(schemas.SelfReportedHealth)) == set(schemas.HEALTH_STATES) - {"offline"}


def _domain_accepts(db: psycopg.Connection, domain: str, value: str) -> bool:
    try:
        with db.transaction():
            db.execute(f"SELECT %s::control_plane.{domain}", (value,))
        return True
    except psycopg.errors.CheckViolation:
        return False


def _schema_accepts(type_: object, value: str) -> bool:
    try:
        msgspec.convert(value, type_)
    except msgspec.ValidationError:
        return False
    return True


# Every C0/C1 control character and its neighbours, multi-byte characters, length boundaries.
NODE_IDS = [f"n{chr(c)}x" for c in range(1, 0xA2)] + [
    "a",
    "é" * 256,
    "é" * 257,
    "x" * 256,
    "x" * 257,
    "\u2028",
    "node-🚀",
    " ",
    "n\n",
]


def test_node_id_rule_matches_the_sql_domain(db: psycopg.Connection) -> None:
    """Python (path check and body schema) and the node_id domain accept the same values.
    NUL is excluded: PostgreSQL text cannot hold it (the schema boundary refuses it)."""
    drift = [
        (value[:12], sql, path, body)
        for value in NODE_IDS
        if len(
            {
                sql := _domain_accepts(db, "node_id", value),
                path := schemas.is_valid_node_id(value),
                body := _schema_accepts(schemas.NodeId, value),
            }
        )
        > 1
    ]
    assert not drift, drift
    assert not schemas.is_valid_node_id("") and not _domain_accepts(db, "node_id", "")


VERSIONS = ["0.0", "1.0", "10.9", "01.0", "1.01", "1", "1.0.0", "a.b", "1.0\n", " 1.0"]
# 64 and 65 characters; signs; Arabic-Indic digits (Python's \d would take them).
VERSIONS += ["1." + "9" * 62, "1." + "9" * 63, "-1.0", "1.-0", "١.٢"]


def test_version_rule_matches_the_sql_domain(db: psycopg.Connection) -> None:
    drift = [
        (value, sql, body)
        for value in VERSIONS
        if (sql := _domain_accepts(db, "client_version", value))
        != (body := _schema_accepts(schemas.Version, value))
    ]
    assert not drift, drift
