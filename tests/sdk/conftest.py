"""Fixtures for the SDK and CLI tests: a participant, a session and a membership made through the
SDK's own admin calls, and short timings so a keep-alive loop can be watched in seconds."""

from __future__ import annotations

import asyncio
import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
from runtime_node_client import ControlPlaneClient

REPO_ROOT = Path(__file__).resolve().parents[2]
# heartbeat 1 s, degraded after 3 s, offline after 6 s (the settings CHECKs keep the order).
FAST = {
    "heartbeat_interval": "1 second",
    "degraded_after": "3 seconds",
    "offline_after": "6 seconds",
}


@dataclass(frozen=True)
class World:
    base_url: str
    admin_token: str
    participant_id: str
    token: str
    session_id: str


async def make_world(base_url: str, admin_token: str, *, floor: str | None = None) -> World:
    """A participant with a token, owner of a new active session — through the SDK's admin calls."""
    async with ControlPlaneClient(base_url, admin_token) as admin:
        participant = await admin.create_participant("sdk-test")
        issued = await admin.issue_token(participant.participant_id, label="sdk")
        session = await admin.create_session(min_client_version=floor)
        await admin.put_membership(
            session.session_id, participant.participant_id, role="owner", state="active"
        )
    return World(
        base_url,
        admin_token,
        str(participant.participant_id),
        issued.token,
        str(session.session_id),
    )


@pytest.fixture
def world(server: str, admin_token: str) -> World:
    return asyncio.run(make_world(server, admin_token))


@pytest.fixture
def fast_timings(db: psycopg.Connection) -> Iterator[None]:
    """Short heartbeat/degraded/offline timings for this test, the previous ones restored after."""
    columns = ", ".join(FAST)
    before = db.execute(f"SELECT {columns} FROM control_plane.settings").fetchone()
    assert before is not None
    assignments = ", ".join(f"{name} = %s::interval" for name in FAST)
    db.execute(f"UPDATE control_plane.settings SET {assignments}", list(FAST.values()))
    try:
        yield
    finally:
        # offline_after first goes back up, so each step satisfies the ordering CHECKs.
        db.execute(
            "UPDATE control_plane.settings SET offline_after = %s, degraded_after = %s,"
            " heartbeat_interval = %s",
            (before[2], before[1], before[0]),
        )


def local_cluster(action: str) -> None:
    """Stop or start the private test cluster (`scripts/local-db.sh down|up test`)."""
    subprocess.run(
        ["bash", str(REPO_ROOT / "scripts/local-db.sh"), action, "test"],
        check=True,
        capture_output=True,
        timeout=120,
    )


@pytest.fixture
def test_cluster() -> Iterator[None]:
    """The test may stop the private test cluster; it is running again afterwards."""
    if os.environ.get("CONTROL_PLANE_LOCAL_CLUSTER") != "test":
        pytest.skip("needs the private test cluster of `make test` (DATABASE_URL is external)")
    try:
        yield
    finally:
        local_cluster("up")
