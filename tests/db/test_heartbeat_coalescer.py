"""HeartbeatCoalescer against the real database, logged in as the API role like the app.

Concurrent beats share round trips (fewer calls than beats) and each gets its own item's
verdict; a database fault reaches every waiter of the batch instead of leaving one hanging.
"""

from __future__ import annotations

import asyncio
import hashlib
import secrets
from typing import Any

import asyncpg
import psycopg

from control_plane.config import load_settings
from control_plane.database import create_pool
from control_plane.heartbeats import HeartbeatCoalescer
from control_plane.metrics import process_registry


def _counter(name: str) -> float:
    return process_registry().get_sample_value(name) or 0.0


def _fleet(db: psycopg.Connection, nodes: int) -> tuple[str, list[str]]:
    """A participant (token) who owns `nodes` attached nodes in an active session."""
    pid = db.execute(
        "SELECT control_plane.admin_create_participant() ->> 'participantId'"
    ).fetchone()[0]
    token = db.execute("SELECT control_plane.admin_issue_token(%s) ->> 'token'", (pid,)).fetchone()[
        0
    ]
    sid = db.execute("SELECT control_plane.admin_create_session() ->> 'sessionId'").fetchone()[0]
    db.execute("SELECT control_plane.admin_put_membership(%s, %s, 'owner', 'active')", (sid, pid))
    digest = hashlib.sha256(token.encode()).digest()
    names = [f"coalescer-{i}-{secrets.token_hex(4)}" for i in range(nodes)]
    for node in names:
        db.execute(
            "SELECT control_plane.runtime_node_attach(%s, %s, %s, %s, '1.0', '{}')",
            (digest, sid, pid, node),
        )
    db.commit()
    return token, names


def test_concurrent_beats_share_round_trips(database_url: str, db: psycopg.Connection) -> None:
    token, nodes = _fleet(db, 40)
    digest = hashlib.sha256(token.encode()).digest()
    stranger = hashlib.sha256(secrets.token_bytes(16)).digest()

    async def run() -> tuple[list[str | None], float, float]:
        pool = await create_pool(load_settings({"DATABASE_URL": database_url}))
        try:
            coalescer = HeartbeatCoalescer(pool, max_batch=16, max_in_flight=1)
            batches0 = _counter("control_plane_heartbeat_batches_total")
            beats0 = _counter("control_plane_heartbeat_batch_beats_total")
            beats: list[Any] = [coalescer.beat(digest, node, "online") for node in nodes]
            beats.append(coalescer.beat(stranger, nodes[0], "online"))
            beats.append(coalescer.beat(digest, "coalescer-not-attached", "online"))
            verdicts = await asyncio.gather(*beats)
            return (
                list(verdicts),
                _counter("control_plane_heartbeat_batches_total") - batches0,
                _counter("control_plane_heartbeat_batch_beats_total") - beats0,
            )
        finally:
            await pool.close()

    verdicts, batches, carried = asyncio.run(run())
    # One SQLSTATE per item: None accepted, CP401 unknown token, CP403 someone else's node.
    assert verdicts == [None] * len(nodes) + ["CP401", "CP403"]
    assert carried == len(nodes) + 2
    # 42 beats enqueued at once with max_batch 16: three round trips, not 42.
    assert batches == 3
    beaten = db.execute(
        "SELECT count(*) FROM control_plane.runtime_node_presence WHERE node_id = ANY(%s)",
        (nodes + ["coalescer-not-attached"],),
    ).fetchone()[0]
    assert beaten == len(nodes)


def test_a_database_fault_reaches_every_waiter(database_url: str) -> None:
    settings = load_settings(
        {
            "DATABASE_URL": database_url,
            # Nothing listens there: every connection attempt fails at once.
            "CONTROL_PLANE_API_DATABASE_URL": "postgresql://control_plane_api@127.0.0.1:9/x",
        }
    )

    async def run() -> list[BaseException | str | None]:
        pool = await create_pool(settings)
        try:
            coalescer = HeartbeatCoalescer(pool, max_batch=4, max_in_flight=1)
            beats = [coalescer.beat(b"\0" * 32, f"n{i}", "online") for i in range(10)]
            return list(await asyncio.gather(*beats, return_exceptions=True))
        finally:
            await pool.close()

    outcomes = asyncio.run(run())
    assert len(outcomes) == 10
    assert all(isinstance(o, OSError | asyncpg.PostgresError) for o in outcomes), outcomes
