"""Failover behaviour of the pool over real HTTP (contract §13, docs/deploy.md).

A connection to a server that has become (or still is) read-only — a demoted primary, or a
promoted standby a proxy routed to a moment early — answers every write with 25006. Emulated on
the real server by making the API role's new sessions read-only (`ALTER ROLE ... SET
default_transaction_read_only`), exactly what a standby's sessions are for writes.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Callable, Iterator

import httpx
import psycopg
import pytest

from control_plane.database import API_ROLE
from tests.conftest import assert_problem


@pytest.fixture
def read_only_api_role(db: psycopg.Connection) -> Iterator[Callable[[bool], None]]:
    def set_read_only(on: bool) -> None:
        if on:
            db.execute(f"ALTER ROLE {API_ROLE} SET default_transaction_read_only = on")
        else:
            db.execute(f"ALTER ROLE {API_ROLE} RESET default_transaction_read_only")

    try:
        yield set_read_only
    finally:
        set_read_only(False)


def attached_node(db: psycopg.Connection) -> tuple[str, str]:
    """(node id, token) of a node attached through the product's SQL functions."""
    participant = db.execute(
        "SELECT (control_plane.admin_create_participant('ro')->>'participantId')::uuid"
    ).fetchone()[0]
    token = db.execute(
        "SELECT control_plane.admin_issue_token(%s, 'ro')->>'token'", [participant]
    ).fetchone()[0]
    session = db.execute(
        "SELECT (control_plane.admin_create_session(NULL, 'active')->>'sessionId')::uuid"
    ).fetchone()[0]
    db.execute(
        "SELECT control_plane.admin_put_membership(%s, %s, 'runtime_contributor', 'active')",
        [session, participant],
    )
    node = f"ro-{secrets.token_hex(6)}"
    db.execute(
        "SELECT control_plane.runtime_node_attach(%s, %s, %s, %s, '1.0', '{}'::jsonb)",
        [hashlib.sha256(token.encode()).digest(), session, participant, node],
    )
    return node, token


def test_a_connection_to_a_read_only_server_is_dropped_not_reused(
    db: psycopg.Connection,
    spawn_server: Callable[[str | None], str],
    read_only_api_role: Callable[[bool], None],
) -> None:
    node, token = attached_node(db)
    read_only_api_role(True)
    base = spawn_server(None)  # its pool is empty: every connection it opens is read-only
    with httpx.Client(
        base_url=base, timeout=30.0, headers={"Authorization": f"Bearer {token}"}
    ) as http:
        beat = f"/v1/runtime-nodes/{node}/heartbeat"
        refused = http.post(beat, json={"healthState": "online"})
        assert_problem(refused, 503, "service.unavailable")
        assert refused.headers["Retry-After"].isdigit()

        # The server is writable again. Had the pool kept its read-only connection, this beat
        # would be served by it and fail again.
        read_only_api_role(False)
        accepted = http.post(beat, json={"healthState": "online"})
        assert accepted.status_code == 204, accepted.text
