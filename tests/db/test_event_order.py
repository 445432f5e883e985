"""The change feed's ordering guarantee under concurrent writers (contract §9).

"No reader ever misses an event": event ids are taken under a transaction-level advisory lock
held to commit (runtime_node_events_append), so commit order = id order. The first tests show,
with two sessions, that a writer that would take a later id cannot commit first: it waits for the
event lock (pg_blocking_pids), a reader sees neither event meanwhile, then both in id order. The
randomized test runs ≥ 8 writers doing real operations (each in a transaction held open a random
moment after its write, the window in which a naive "id > cursor" reader loses events) plus
sweeps, while followers read with the cursor; they must end with exactly the table's events, in
order, without duplicates, and the events must chain (each event's previous values are the
previous event's values, on both axes).
"""

from __future__ import annotations

import random
import select
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import psycopg
from psycopg.types.json import Jsonb
from test_interleavings import (  # the two-session fixtures and helpers
    Fixtures,
    Node,
    Who,
    active_node,
    attach,
    backend_pid,
    connect,
    detach,
    fx,
    heartbeat,
    node_id,
    pool,
    sqlstate_of,
    update_capabilities,
    wait_until_blocked,
)

__all__ = ["active_node", "connect", "fx", "pool"]  # fixtures used by name

ACTIVE = ("registering", "online", "degraded")


def read_page(
    conn: psycopg.Connection, who: Who, session_id: str, after: int | None, limit: int = 100
) -> dict[str, Any]:
    row = conn.execute(
        "SELECT control_plane.runtime_node_events_read(%s, %s, %s, %s)::jsonb",
        (who.digest, session_id, after, limit),
    ).fetchone()
    assert row is not None
    return dict(row[0])


def revision(conn: psycopg.Connection, who: Who, session_id: str) -> int:
    row = conn.execute(
        "SELECT control_plane.runtime_node_roster(%s, %s)::json ->> 'revision'",
        (who.digest, session_id),
    ).fetchone()
    assert row is not None
    return int(row[0])


def declare(conn: psycopg.Connection, who: Who, node: str, caps: dict[str, Any]) -> None:
    conn.execute(
        "SELECT control_plane.runtime_node_declare(%s, %s, %s)", (who.digest, node, Jsonb(caps))
    )


def lock_waits(monitor: psycopg.Connection, pid: int) -> list[str]:
    rows = monitor.execute(
        "SELECT locktype FROM pg_locks WHERE pid = %s AND NOT granted", (pid,)
    ).fetchall()
    return [r[0] for r in rows]


# --- two sessions: a later id never commits first ------------------------------------------------


def test_a_later_writer_waits_and_the_reader_never_sees_a_gap(
    connect: Callable[[], psycopg.Connection],
    pool: ThreadPoolExecutor,
    fx: Fixtures,
    active_node: Node,
) -> None:
    n = active_node
    other = node_id()
    fx.attach(n.who, n.session_id, other)
    reader = connect()
    start = revision(reader, n.who, n.session_id)

    first, second = connect(), connect()
    first.execute("BEGIN")
    update_capabilities(first, n.who, n.node_id, {"first": 1})  # event written, lock held
    job = pool.submit(update_capabilities, second, n.who, other, {"second": 2})
    wait_until_blocked(fx.conn, backend_pid(second), backend_pid(first), job)
    assert lock_waits(fx.conn, backend_pid(second)) == ["advisory"], (
        "the second writer waits for the event lock, after its own row locks"
    )
    # Neither event is visible: not the uncommitted first, and the second has no id yet.
    assert read_page(reader, n.who, n.session_id, start)["events"] == []
    assert revision(reader, n.who, n.session_id) == start

    first.execute("COMMIT")
    assert sqlstate_of(job) is None
    page = read_page(reader, n.who, n.session_id, start)
    assert [(e["nodeId"], e["kind"]) for e in page["events"]] == [
        (n.node_id, "capabilities_updated"),
        (other, "capabilities_updated"),
    ], "both, in commit order"
    ids = [e["id"] for e in page["events"]]
    assert ids == sorted(ids) and page["next"] >= ids[-1]


# --- NOTIFY ---------------------------------------------------------------------------------


def notifications(conn: psycopg.Connection, timeout: float) -> list[str]:
    """Payloads on control_plane_events that arrive within `timeout` seconds."""
    got: list[str] = []
    deadline = time.monotonic() + timeout
    while (left := deadline - time.monotonic()) > 0:
        select.select([conn.fileno()], [], [], left)
        conn.execute("SELECT 1")  # lets psycopg read pending notifies
        got.extend(n.payload for n in conn.notifies(timeout=0, stop_after=100))
    return got


def test_notify_once_per_session_per_transaction(
    connect: Callable[[], psycopg.Connection], fx: Fixtures, active_node: Node
) -> None:
    n = active_node
    listener = connect()
    listener.execute("LISTEN control_plane_events")
    writer = connect()
    update_capabilities(writer, n.who, n.node_id, {"a": 1})
    mine = [p for p in notifications(listener, 1.0) if p.startswith(n.session_id)]
    last = fx.one(
        "SELECT max(id) FROM control_plane.runtime_node_events WHERE session_id = %s",
        n.session_id,
    )
    assert mine == [f"{n.session_id}:{last}"], "payload '<session>:<max event id>' at commit"

    # One statement writing three events of the session (a heartbeat batch, each node's first
    # beat): one notification, with the highest of the three ids.
    extra = [node_id(), node_id()]
    for node in extra:
        fx.attach(n.who, n.session_id, node)
    notifications(listener, 0.3)  # drain the attaches'
    nodes = [n.node_id, *extra]
    writer.execute(
        "SELECT control_plane.runtime_node_heartbeat_batch(%s::bytea[], %s::text[], %s::text[])",
        ([n.who.digest] * 3, nodes, ["degraded"] * 3),
    )
    mine = [p for p in notifications(listener, 1.0) if p.startswith(n.session_id)]
    ids = [
        r[0]
        for r in fx.conn.execute(
            "SELECT id FROM control_plane.runtime_node_events"
            " WHERE session_id = %s AND kind = 'health_changed' ORDER BY id",
            (n.session_id,),
        )
    ]
    assert len(ids) == 3
    assert mine == [f"{n.session_id}:{ids[-1]}"]


# --- randomized: writers, sweeps and followers -------------------------------------------

WRITERS = 8
OPS_PER_WRITER = 40


def test_followers_see_exactly_the_tables_events_in_order(
    connect: Callable[[], psycopg.Connection], fx: Fixtures
) -> None:
    rng = random.Random()
    seed = rng.randrange(1 << 30)
    rng.seed(seed)
    sessions = [fx.session(), fx.session()]
    reader_who = fx.participant()
    for s in sessions:
        fx.member(s, reader_who, role="viewer")
    writers: list[tuple[Who, str, list[str]]] = []
    for i in range(WRITERS):
        who = fx.participant()
        session = sessions[i % 2]
        fx.member(session, who)
        nodes = [node_id(), node_id()]
        for node in nodes:
            fx.attach(who, session, node)
        writers.append((who, session, nodes))
    all_nodes = [node for _, _, nodes in writers for node in nodes]
    start = {s: revision(fx.conn, reader_who, s) for s in sessions}
    done = threading.Event()
    errors: list[BaseException] = []

    def write(who: Who, session: str, nodes: list[str], wseed: int) -> None:
        r = random.Random(wseed)
        conn = connect()
        for _ in range(OPS_PER_WRITER):
            node = r.choice(nodes)
            op = r.choice(["beat", "beat", "caps", "state", "declare", "detach", "attach"])
            conn.execute("BEGIN")
            try:
                if op == "beat":
                    heartbeat(conn, who, node, r.choice(["online", "degraded"]))
                elif op == "caps":
                    update_capabilities(conn, who, node, {"v": r.randrange(3)})
                elif op == "state":
                    conn.execute(
                        "SELECT control_plane.runtime_node_update_capabilities(%s, %s, %s, %s, %s)",
                        (who.digest, node, Jsonb({"v": 1}), r.choice(["online", "degraded"]), "r"),
                    )
                elif op == "declare":
                    declare(conn, who, node, {"v": r.randrange(3)})
                elif op == "detach":
                    detach(conn, who, node)
                else:
                    attach(conn, who, session, node, r.choice(["1.0", "1.1"]))
                # Commit late: the window in which a later id could otherwise commit first.
                time.sleep(r.random() * 0.004)
                conn.execute("COMMIT")
            except psycopg.Error as exc:
                conn.execute("ROLLBACK")
                # Legitimate refusals of a random walk: not the node's turn (403 after a
                # detach), registering → online by update (CPC03). Anything else is a bug.
                assert exc.sqlstate in ("CP403", "CPC03"), (op, exc.sqlstate, str(exc))

    def sweep(sseed: int) -> None:
        r = random.Random(sseed)
        conn = connect()
        while not done.is_set():
            aged = r.sample(all_nodes, 3)
            conn.execute(
                "UPDATE control_plane.runtime_node_presence"
                " SET last_heartbeat_at = now() - interval '45 seconds' WHERE node_id = ANY(%s)",
                (aged,),
            )
            conn.execute("SELECT count(*) FROM control_plane.runtime_node_sweep(now())")
            time.sleep(r.random() * 0.02)

    followed: dict[str, list[dict[str, Any]]] = {s: [] for s in sessions}

    def follow(session: str) -> None:
        conn = connect()
        cursor = start[session]
        idle_after_done = 0
        while idle_after_done < 2:
            finished = done.is_set()
            page = read_page(conn, reader_who, session, cursor, limit=7)
            followed[session].extend(page["events"])
            cursor = page["next"]
            if finished and not page["events"]:
                idle_after_done += 1
            time.sleep(0.002)

    def guarded(fn: Callable[..., None], *args: Any) -> Callable[[], None]:
        def run() -> None:
            try:
                fn(*args)
            except BaseException as exc:  # noqa: BLE001 - reported by the test below
                errors.append(exc)

        return run

    followers = [threading.Thread(target=guarded(follow, s)) for s in sessions]
    sweeper = threading.Thread(target=guarded(sweep, rng.randrange(1 << 30)))
    writer_threads = [
        threading.Thread(target=guarded(write, who, s, nodes, rng.randrange(1 << 30)))
        for who, s, nodes in writers
    ]
    for t in [*followers, sweeper, *writer_threads]:
        t.start()
    for t in writer_threads:
        t.join(timeout=120)
    done.set()
    for t in [sweeper, *followers]:
        t.join(timeout=60)
    assert not errors, f"seed {seed}: {errors[0]!r}"

    for session in sessions:
        got = [e["id"] for e in followed[session]]
        table = [
            r[0]
            for r in fx.conn.execute(
                "SELECT id FROM control_plane.runtime_node_events"
                " WHERE session_id = %s AND id > %s ORDER BY id",
                (session, start[session]),
            )
        ]
        assert len(table) > 50, "the writers wrote events"
        assert len(got) == len(set(got)), f"seed {seed}: a follower got a duplicate"
        assert got == table, f"seed {seed}: the follower's events differ from the table's"
        check_chains(fx.conn, session, followed[session])


def check_chains(db: psycopg.Connection, session: str, events: list[dict[str, Any]]) -> None:
    """Each event's previous values are the values the node's previous event left, on both
    axes, and the last event of each node is the node's state now."""
    slot: dict[str, str] = {}
    health: dict[str, str | None] = {}
    for e in events:
        node = e["nodeId"]
        if node in slot:
            assert e["previousState"] == slot[node], e
            assert e["previousHealthState"] == health[node], e
        slot[node], health[node] = e["state"], e["healthState"]
    rows = db.execute(
        "SELECT a.node_id, a.state, p.health_state FROM control_plane.runtime_node_attachments a"
        " LEFT JOIN control_plane.runtime_node_presence p ON p.node_id = a.node_id"
        " WHERE a.session_id = %s",
        (session,),
    ).fetchall()
    for node, state, node_health in rows:
        if node in slot:
            assert (slot[node], health[node]) == (state, node_health), node
