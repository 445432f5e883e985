"""The sweep as it really runs: driven by pg_cron, through the < 1.5 loop procedure, and racing
heartbeats on other connections.

The database is shared with other tests and with the live pg_cron job, so these tests only look
at rows they create (random node ids) and delete them afterwards. Rows other tests left behind
can hold the outage guard's stall mode (≥ stall_min_nodes silent nodes, nobody beating): a test
that needs real demotions keeps a "witness" node beating, which is exactly how the guard is
meant to be released — by a heartbeat arriving.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Iterator

import psycopg
import pytest

POLL_SECONDS = 0.2
# pg_cron < 1.5 starts the loop only at the next full minute (≤ 60 s); if the outage guard was
# holding, the witness's beat grants a grace during which demotion waits degraded_after (30 s).
LIVE_TIMEOUT_SECONDS = 180.0
WITNESS_BEAT_SECONDS = 5.0


def node_id(kind: str) -> str:
    return f"sweep-{kind}-{secrets.token_hex(6)}"


@pytest.fixture
def own_nodes(db: psycopg.Connection) -> Iterator[list[str]]:
    """Node ids whose presence rows this test creates; deleted afterwards."""
    nodes: list[str] = []
    yield nodes
    db.execute("DELETE FROM control_plane.runtime_node_presence WHERE node_id = ANY(%s)", [nodes])


def plant(db: psycopg.Connection, node: str, age_seconds: float, health: str = "online") -> None:
    db.execute(
        "INSERT INTO control_plane.runtime_node_presence (node_id, last_heartbeat_at, health_state)"
        " VALUES (%s, now() - make_interval(secs => %s), %s)",
        [node, age_seconds, health],
    )


def beat(conn: psycopg.Connection, node: str) -> None:
    """What a heartbeat does to presence."""
    conn.execute(
        "UPDATE control_plane.runtime_node_presence"
        " SET last_heartbeat_at = now(), health_state = 'online' WHERE node_id = %s",
        [node],
    )


def health(db: psycopg.Connection, node: str) -> str:
    row = db.execute(
        "SELECT health_state FROM control_plane.runtime_node_presence WHERE node_id = %s", [node]
    ).fetchone()
    assert row is not None
    return str(row[0])


def total_runs(db: psycopg.Connection) -> int:
    return int(db.execute("SELECT total_runs FROM control_plane.sweep_state").fetchone()[0])


@pytest.mark.timeout(LIVE_TIMEOUT_SECONDS + 60)
def test_pg_cron_demotes_a_silent_node(db: psycopg.Connection, own_nodes: list[str]) -> None:
    """A committed presence row 45 s old is demoted to degraded by the scheduled sweep alone."""
    job = db.execute(
        "SELECT active, database FROM cron.job WHERE jobname = 'runtime-node-staleness-sweep'"
    ).fetchone()
    assert job is not None, "migration 0002 did not schedule the sweep"
    assert job == (True, db.info.dbname)

    witness, silent = node_id("witness"), node_id("silent")
    own_nodes.extend([witness, silent])
    plant(db, witness, 0)
    plant(db, silent, 45)
    runs_before = total_runs(db)

    deadline = time.monotonic() + LIVE_TIMEOUT_SECONDS
    last_beat = time.monotonic()
    state = health(db, silent)
    while state == "online" and time.monotonic() < deadline:
        time.sleep(POLL_SECONDS)
        if time.monotonic() - last_beat >= WITNESS_BEAT_SECONDS:
            beat(db, witness)
            last_beat = time.monotonic()
        state = health(db, silent)

    assert state == "degraded", (
        f"no sweep demoted the node within {LIVE_TIMEOUT_SECONDS:.0f} s: is pg_cron running?"
    )
    assert total_runs(db) > runs_before
    assert health(db, witness) == "online", "a beating node was demoted"


def test_loop_procedure_sweeps_repeatedly_and_commits(
    database_url: str, db: psycopg.Connection
) -> None:
    """The pg_cron < 1.5 driver: several sweeps within its window, then it returns."""
    runs_before = total_runs(db)
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(
            "CALL control_plane.runtime_node_sweep_loop("
            " interval '0.25 seconds', clock_timestamp() + interval '0.8 seconds')"
        )
    # The first sweep at once, then one per 0.25 s slot until 0.8 s: at least three.
    assert total_runs(db) - runs_before >= 3


def test_loop_procedure_refuses_an_enclosing_transaction(database_url: str) -> None:
    """It COMMITs between sweeps (so each pass is visible at once), which PostgreSQL allows only
    outside a transaction block."""
    with psycopg.connect(database_url) as conn:  # not autocommit: an open transaction
        conn.execute("SELECT 1")
        with pytest.raises(psycopg.errors.InvalidTransactionTermination):
            conn.execute(
                "CALL control_plane.runtime_node_sweep_loop("
                " interval '0.1 seconds', clock_timestamp() + interval '0.1 seconds')"
            )


def test_a_heartbeat_racing_the_sweep_is_never_lost(
    database_url: str, db: psycopg.Connection, own_nodes: list[str]
) -> None:
    """A sweep never waits for (nor overwrites) a row a heartbeat is writing: it skips it, and
    the beat, once committed, leaves the node online for the next pass."""
    racing, silent = node_id("racing"), node_id("control")
    own_nodes.extend([racing, silent])

    with (
        psycopg.connect(database_url) as heartbeat,
        psycopg.connect(database_url) as sweeper,
    ):
        # The sweeper's own transaction, rolled back at the end. It locks sweep_state first, so
        # the live cron sweep waits and cannot demote the rows planted next; and it sets "no
        # guard", so that demotions happen whatever state the shared database is in.
        sweeper.execute(
            "UPDATE control_plane.sweep_state SET last_finished_at = now() - interval '1 second',"
            " mode = 'normal', resumed_at = NULL, stall_since = NULL"
        )
        plant(db, racing, 45)
        plant(db, silent, 45)
        beat(heartbeat, racing)  # in flight: row locked, not committed
        sweeper.execute("SET LOCAL lock_timeout = '10s'")  # a wait would show as an error
        first = dict(
            sweeper.execute("SELECT * FROM control_plane.runtime_node_sweep(now())").fetchall()
        )
        assert first.get(silent) == "degraded", "the pass demoted nothing: the test proves nothing"
        assert racing not in first, "the sweep demoted a row a heartbeat was writing"

        heartbeat.commit()
        second = dict(
            sweeper.execute(
                "SELECT * FROM control_plane.runtime_node_sweep(now() + interval '1 second')"
            ).fetchall()
        )
        assert racing not in second
        assert sweeper.execute(
            "SELECT health_state FROM control_plane.runtime_node_presence WHERE node_id = %s",
            [racing],
        ).fetchone() == ("online",)
        sweeper.rollback()

    assert health(db, racing) == "online"


def test_concurrent_sweeps_serialize(database_url: str, db: psycopg.Connection) -> None:
    """Two sweeps at once (the cron job and a DBA): the second waits for the first's commit and
    both are counted."""
    runs_before = total_runs(db)
    holder = psycopg.connect(database_url)
    try:
        holder.execute("SELECT * FROM control_plane.runtime_node_sweep()")  # holds sweep_state
        done = threading.Event()

        def second_sweep() -> None:
            with psycopg.connect(database_url, autocommit=True) as conn:
                conn.execute("SELECT * FROM control_plane.runtime_node_sweep()")
            done.set()

        thread = threading.Thread(target=second_sweep)
        thread.start()
        assert not done.wait(0.5), "a second sweep ran while the first was uncommitted"
        holder.commit()
        thread.join(timeout=30)
        assert done.is_set()
    finally:
        holder.close()
    assert total_runs(db) - runs_before >= 2
