"""Failover behaviour of the pool over real HTTP (contract §13, docs/deploy.md).

A connection to a server that has become (or still is) read-only — a demoted primary, or a
promoted standby a proxy routed to a moment early — answers every write with 25006. Emulated on
the real server by making the API role's new sessions read-only (`ALTER ROLE ... SET
default_transaction_read_only`), exactly what a standby's sessions are for writes.
"""

from __future__ import annotations

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


def test_a_connection_to_a_read_only_server_is_dropped_not_reused(
    spawn_server: Callable[[str | None], str],
    read_only_api_role: Callable[[bool], None],
    admin_token: str,
) -> None:
    read_only_api_role(True)
    base = spawn_server(admin_token)  # its pool is empty: every connection it opens is read-only
    with httpx.Client(
        base_url=base, timeout=30.0, headers={"Authorization": f"Bearer {admin_token}"}
    ) as http:
        refused = http.post("/v1/admin/participants", json={"displayName": "ro"})
        assert_problem(refused, 503, "service.unavailable")
        assert refused.headers["Retry-After"].isdigit()

        # The server is writable again. Had the pool kept its read-only connection, this request
        # would be served by it and fail again.
        read_only_api_role(False)
        created = http.post("/v1/admin/participants", json={"displayName": "rw"})
        assert created.status_code == 201, created.text
