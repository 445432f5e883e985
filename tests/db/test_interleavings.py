"""Interleavings of the runtime-node functions on real connections (contract §5, §8 concurrency).

Each test drives two (or more) PostgreSQL connections with explicit transactions: one holds its
locks inside an open transaction while another calls a function in a thread; the test waits until
the database reports the second one blocked by the first (pg_blocking_pids), then commits and
checks the outcome. Nothing asserts timings; a short lock_timeout on every waiting connection makes
a locking bug fail fast instead of hanging.
"""

from __future__ import annotations

import hashlib
import random
import secrets
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import psycopg
import pytest
from psycopg.types.json import Jsonb

LOCK_TIMEOUT = "5s"  # far above any expected wait, far below a hung test
BLOCK_DEADLINE = 5.0


# --- fixtures ---------------------------------------------------------------------------------


def _connect(url: str) -> psycopg.Connection:
    conn = psycopg.connect(url, autocommit=True)
    conn.execute(f"SET lock_timeout = '{LOCK_TIMEOUT}'")
    conn.execute("SET statement_timeout = '10s'")
    return conn


@pytest.fixture
def connect(database_url: str, migrated: None) -> Iterator[Callable[[], psycopg.Connection]]:
    """`connect()` → a fresh autocommit connection (closed after the test)."""
    opened: list[psycopg.Connection] = []

    def make() -> psycopg.Connection:
        conn = _connect(database_url)
        opened.append(conn)
        return conn

    yield make
    for conn in opened:
        conn.close()


@pytest.fixture
def pool() -> Iterator[ThreadPoolExecutor]:
    with ThreadPoolExecutor(max_workers=16) as executor:
        yield executor


@dataclass(frozen=True)
class Who:
    participant_id: str
    digest: bytes


class Fixtures:
    """Rows created through the admin functions, with random ids (the database is shared)."""

    def __init__(self, conn: psycopg.Connection) -> None:
        self.conn = conn

    def one(self, sql: str, *params: Any) -> Any:
        row = self.conn.execute(sql, params).fetchone()
        assert row is not None
        return row[0]

    def participant(self) -> Who:
        pid = self.one("SELECT control_plane.admin_create_participant() ->> 'participantId'")
        token = self.one("SELECT control_plane.admin_issue_token(%s) ->> 'token'", pid)
        return Who(pid, hashlib.sha256(token.encode()).digest())

    def session(self, floor: str | None = None) -> str:
        return str(self.one("SELECT control_plane.admin_create_session(%s) ->> 'sessionId'", floor))

    def member(self, session_id: str, who: Who, role: str = "runtime_contributor") -> None:
        self.conn.execute(
            "SELECT control_plane.admin_put_membership(%s, %s, %s, 'active')",
            (session_id, who.participant_id, role),
        )

    def attach(
        self, who: Who, session_id: str, node_id: str, version: str = "1.0"
    ) -> dict[str, Any]:
        return attach(self.conn, who, session_id, node_id, version)

    def slot_state(self, session_id: str, node_id: str) -> str | None:
        row = self.conn.execute(
            "SELECT state FROM control_plane.runtime_node_attachments"
            " WHERE session_id = %s AND node_id = %s",
            (session_id, node_id),
        ).fetchone()
        return None if row is None else str(row[0])

    def presence(self, node_id: str) -> str | None:
        row = self.conn.execute(
            "SELECT health_state FROM control_plane.runtime_node_presence WHERE node_id = %s",
            (node_id,),
        ).fetchone()
        return None if row is None else str(row[0])


@pytest.fixture
def fx(connect: Callable[[], psycopg.Connection]) -> Fixtures:
    return Fixtures(connect())


def node_id() -> str:
    return f"node-{secrets.token_hex(8)}"


# --- the API calls ------------------------------------------------------------------------------


def attach(
    conn: psycopg.Connection, who: Who, session_id: str, node: str, version: str = "1.0"
) -> dict[str, Any]:
    row = conn.execute(
        "SELECT control_plane.runtime_node_attach(%s, %s, %s, %s, %s, %s)",
        (who.digest, session_id, who.participant_id, node, version, Jsonb({"cpu": 1})),
    ).fetchone()
    assert row is not None
    return dict(row[0])


def heartbeat(conn: psycopg.Connection, who: Who, node: str, health: str = "online") -> None:
    conn.execute(
        "SELECT control_plane.runtime_node_heartbeat(%s, %s, %s)", (who.digest, node, health)
    )


def detach(conn: psycopg.Connection, who: Who, node: str) -> None:
    conn.execute("SELECT control_plane.runtime_node_detach(%s, %s)", (who.digest, node))


def update_capabilities(
    conn: psycopg.Connection, who: Who, node: str, caps: dict[str, Any]
) -> dict[str, Any]:
    row = conn.execute(
        "SELECT control_plane.runtime_node_update_capabilities(%s, %s, %s)",
        (who.digest, node, Jsonb(caps)),
    ).fetchone()
    assert row is not None
    return dict(row[0])


def batch(conn: psycopg.Connection, items: list[tuple[Who, str, str]]) -> list[str | None]:
    """One SQLSTATE per item (None = accepted)."""
    row = conn.execute(
        "SELECT control_plane.runtime_node_heartbeat_batch(%s::bytea[], %s::text[], %s::text[])",
        ([w.digest for w, _, _ in items], [n for _, n, _ in items], [h for _, _, h in items]),
    ).fetchone()
    assert row is not None
    return list(row[0])


# --- helpers ------------------------------------------------------------------------------------


def backend_pid(conn: psycopg.Connection) -> int:
    return int(conn.info.backend_pid)


def wait_until_blocked(
    monitor: psycopg.Connection, waiter: int, holder: int, job: Future[Any]
) -> None:
    """Returns once `waiter`'s backend waits for a lock held by `holder`'s; fails if the job ends
    (it should not have been able to proceed) or if it never blocks."""
    deadline = time.monotonic() + BLOCK_DEADLINE
    while time.monotonic() < deadline:
        if job.done():
            job.result()  # re-raises its error, if any
            pytest.fail("the second call completed instead of waiting for the first transaction")
        row = monitor.execute("SELECT %s = ANY (pg_blocking_pids(%s))", (holder, waiter)).fetchone()
        if row is not None and row[0]:
            return
        time.sleep(0.01)
    pytest.fail("the second call never blocked on the first transaction")


def sqlstate_of(job: Future[Any]) -> str | None:
    """The SQLSTATE the job failed with, or None if it succeeded."""
    try:
        job.result(timeout=BLOCK_DEADLINE * 2)
    except psycopg.Error as exc:
        return exc.sqlstate
    return None


@dataclass
class Node:
    who: Who
    session_id: str
    node_id: str


@pytest.fixture
def active_node(fx: Fixtures) -> Node:
    """An attached (registering) node of a runtime contributor in a fresh session."""
    who = fx.participant()
    session_id = fx.session()
    fx.member(session_id, who)
    node = node_id()
    fx.attach(who, session_id, node)
    return Node(who, session_id, node)


# --- heartbeat vs detach -------------------------------------------------------------------------


def test_detach_waits_for_an_open_heartbeat_then_presence_ends_offline(
    connect: Callable[[], psycopg.Connection],
    pool: ThreadPoolExecutor,
    fx: Fixtures,
    active_node: Node,
) -> None:
    n = active_node
    beating, detaching = connect(), connect()
    beating.execute("BEGIN")
    heartbeat(beating, n.who, n.node_id, "online")  # holds KEY SHARE on the slot
    job = pool.submit(detach, detaching, n.who, n.node_id)
    wait_until_blocked(fx.conn, backend_pid(detaching), backend_pid(beating), job)
    beating.execute("COMMIT")
    assert sqlstate_of(job) is None
    assert fx.slot_state(n.session_id, n.node_id) == "offline"
    assert fx.presence(n.node_id) == "offline", "a detached node must never be left online"


def test_heartbeat_after_an_open_detach_is_refused_and_writes_no_presence(
    connect: Callable[[], psycopg.Connection],
    pool: ThreadPoolExecutor,
    fx: Fixtures,
    active_node: Node,
) -> None:
    n = active_node
    detaching, beating = connect(), connect()
    detaching.execute("BEGIN")
    detach(detaching, n.who, n.node_id)  # holds FOR UPDATE on the slot
    job = pool.submit(heartbeat, beating, n.who, n.node_id, "online")
    wait_until_blocked(fx.conn, backend_pid(beating), backend_pid(detaching), job)
    detaching.execute("COMMIT")
    assert sqlstate_of(job) == "CP403"
    assert fx.slot_state(n.session_id, n.node_id) == "offline"
    assert fx.presence(n.node_id) is None, "a refused beat writes no presence row"


def test_heartbeat_after_an_open_detach_leaves_existing_presence_offline(
    connect: Callable[[], psycopg.Connection],
    pool: ThreadPoolExecutor,
    fx: Fixtures,
    active_node: Node,
) -> None:
    n = active_node
    heartbeat(fx.conn, n.who, n.node_id, "online")
    detaching, beating = connect(), connect()
    detaching.execute("BEGIN")
    detach(detaching, n.who, n.node_id)
    job = pool.submit(batch, beating, [(n.who, n.node_id, "online")])
    wait_until_blocked(fx.conn, backend_pid(beating), backend_pid(detaching), job)
    detaching.execute("COMMIT")
    assert job.result(timeout=BLOCK_DEADLINE) == ["CP403"]
    assert fx.presence(n.node_id) == "offline"


def test_revoke_waits_for_an_open_heartbeat_then_presence_ends_offline(
    connect: Callable[[], psycopg.Connection],
    pool: ThreadPoolExecutor,
    fx: Fixtures,
    active_node: Node,
) -> None:
    n = active_node
    beating, revoking = connect(), connect()
    beating.execute("BEGIN")
    heartbeat(beating, n.who, n.node_id, "degraded")
    job = pool.submit(
        revoking.execute,
        "SELECT control_plane.admin_revoke_runtime_node(%s, %s)",
        (n.session_id, n.node_id),
    )
    wait_until_blocked(fx.conn, backend_pid(revoking), backend_pid(beating), job)
    beating.execute("COMMIT")
    assert sqlstate_of(job) is None
    assert fx.slot_state(n.session_id, n.node_id) == "revoked"
    assert fx.presence(n.node_id) == "offline"


# --- attach vs attach ----------------------------------------------------------------------------


def test_attach_of_one_node_to_two_sessions_second_gets_conflict_after_first_commits(
    connect: Callable[[], psycopg.Connection], pool: ThreadPoolExecutor, fx: Fixtures
) -> None:
    who = fx.participant()
    s1, s2 = fx.session(), fx.session()
    fx.member(s1, who)
    fx.member(s2, who)
    node = node_id()
    first, second = connect(), connect()
    first.execute("BEGIN")
    attach(first, who, s1, node)
    job = pool.submit(attach, second, who, s2, node)
    # The second INSERT waits on the first's uncommitted entry in the partial unique index.
    wait_until_blocked(fx.conn, backend_pid(second), backend_pid(first), job)
    first.execute("COMMIT")
    assert sqlstate_of(job) == "CPC01"
    assert fx.slot_state(s1, node) == "registering"
    assert fx.slot_state(s2, node) is None


def test_attach_to_a_second_session_succeeds_when_the_first_rolls_back(
    connect: Callable[[], psycopg.Connection], pool: ThreadPoolExecutor, fx: Fixtures
) -> None:
    who = fx.participant()
    s1, s2 = fx.session(), fx.session()
    fx.member(s1, who)
    fx.member(s2, who)
    node = node_id()
    first, second = connect(), connect()
    first.execute("BEGIN")
    attach(first, who, s1, node)
    job = pool.submit(attach, second, who, s2, node)
    wait_until_blocked(fx.conn, backend_pid(second), backend_pid(first), job)
    first.execute("ROLLBACK")
    assert job.result(timeout=BLOCK_DEADLINE)["state"] == "registering"
    assert fx.slot_state(s1, node) is None
    assert fx.slot_state(s2, node) == "registering"


def test_concurrent_attaches_of_one_node_to_many_sessions_admit_exactly_one(
    connect: Callable[[], psycopg.Connection], pool: ThreadPoolExecutor, fx: Fixtures
) -> None:
    who = fx.participant()
    sessions = [fx.session() for _ in range(8)]
    for s in sessions:
        fx.member(s, who)
    node = node_id()
    conns = [connect() for _ in sessions]
    jobs = [pool.submit(attach, c, who, s, node) for c, s in zip(conns, sessions, strict=True)]
    outcomes = [sqlstate_of(j) for j in jobs]
    assert outcomes.count(None) == 1, outcomes
    assert sorted(o for o in outcomes if o is not None) == ["CPC01"] * 7
    states = [fx.slot_state(s, node) for s in sessions]
    assert states.count("registering") == 1
    assert states.count(None) == 7


def test_reactivating_attach_races_a_fresh_attach_elsewhere(
    connect: Callable[[], psycopg.Connection], pool: ThreadPoolExecutor, fx: Fixtures
) -> None:
    """The UPDATE path: offline in s1, a fresh attach to s2 in flight; re-attaching to s1 waits
    and then loses with CPC01 (the reactivating UPDATE trips the partial unique index)."""
    who = fx.participant()
    s1, s2 = fx.session(), fx.session()
    fx.member(s1, who)
    fx.member(s2, who)
    node = node_id()
    fx.attach(who, s1, node)
    detach(fx.conn, who, node)
    first, second = connect(), connect()
    first.execute("BEGIN")
    attach(first, who, s2, node)
    job = pool.submit(attach, second, who, s1, node)
    wait_until_blocked(fx.conn, backend_pid(second), backend_pid(first), job)
    first.execute("COMMIT")
    assert sqlstate_of(job) == "CPC01"
    assert fx.slot_state(s1, node) == "offline"
    assert fx.slot_state(s2, node) == "registering"


# --- capability update vs floor raise -------------------------------------------------------------


def test_floor_raise_waits_for_an_open_capability_update(
    connect: Callable[[], psycopg.Connection],
    pool: ThreadPoolExecutor,
    fx: Fixtures,
    active_node: Node,
) -> None:
    """The update commits under the floor in force then (none); the raise applies after it."""
    n = active_node
    updating, raising = connect(), connect()
    updating.execute("BEGIN")
    update_capabilities(updating, n.who, n.node_id, {"v": 1})  # holds the session FOR SHARE
    job = pool.submit(
        raising.execute,
        "SELECT control_plane.admin_raise_floor(%s, '2.0')",
        (n.session_id,),
    )
    wait_until_blocked(fx.conn, backend_pid(raising), backend_pid(updating), job)
    updating.execute("COMMIT")
    assert sqlstate_of(job) is None
    with pytest.raises(psycopg.Error) as refused:
        update_capabilities(fx.conn, n.who, n.node_id, {"v": 2})
    assert refused.value.sqlstate == "CPC04"
    caps = fx.one(
        "SELECT capabilities FROM control_plane.runtime_node_attachments"
        " WHERE session_id = %s AND node_id = %s",
        n.session_id,
        n.node_id,
    )
    assert caps == {"v": 1}


def test_capability_update_waiting_on_a_floor_raise_is_judged_by_the_new_floor(
    connect: Callable[[], psycopg.Connection],
    pool: ThreadPoolExecutor,
    fx: Fixtures,
    active_node: Node,
) -> None:
    """No write is accepted below the floor in force when it commits."""
    n = active_node
    raising, updating = connect(), connect()
    raising.execute("BEGIN")
    raising.execute("SELECT control_plane.admin_raise_floor(%s, '2.0')", (n.session_id,))
    job = pool.submit(update_capabilities, updating, n.who, n.node_id, {"v": 9})
    wait_until_blocked(fx.conn, backend_pid(updating), backend_pid(raising), job)
    raising.execute("COMMIT")
    assert sqlstate_of(job) == "CPC04"
    caps = fx.one(
        "SELECT capabilities FROM control_plane.runtime_node_attachments"
        " WHERE session_id = %s AND node_id = %s",
        n.session_id,
        n.node_id,
    )
    assert caps == {"cpu": 1}, "the refused update changed nothing"


def test_declaration_waiting_on_a_floor_raise_is_judged_by_the_new_floor(
    connect: Callable[[], psycopg.Connection],
    pool: ThreadPoolExecutor,
    fx: Fixtures,
    active_node: Node,
) -> None:
    n = active_node
    raising, declaring = connect(), connect()
    raising.execute("BEGIN")
    raising.execute("SELECT control_plane.admin_raise_floor(%s, '1.1')", (n.session_id,))
    job = pool.submit(
        declaring.execute,
        "SELECT control_plane.runtime_node_declare(%s, %s, %s)",
        (n.who.digest, n.node_id, Jsonb({"cpu": 2})),
    )
    wait_until_blocked(fx.conn, backend_pid(declaring), backend_pid(raising), job)
    raising.execute("COMMIT")
    assert sqlstate_of(job) == "CPC04"
    assert fx.slot_state(n.session_id, n.node_id) == "registering"


# --- no deadlock -------------------------------------------------------------------------------


def test_concurrent_overlapping_batches_never_deadlock(
    connect: Callable[[], psycopg.Connection], pool: ThreadPoolExecutor, fx: Fixtures
) -> None:
    """Many single-statement batches over the same nodes, each in its own shuffled order, run at
    once: presence rows are locked in node_id order, so none deadlocks (40P01) or times out."""
    who = fx.participant()
    session_id = fx.session()
    fx.member(session_id, who)
    nodes = [node_id() for _ in range(60)]
    for node in nodes:
        fx.attach(who, session_id, node)
    workers = 8
    conns = [connect() for _ in range(workers)]

    def run(conn: psycopg.Connection, seed: int) -> list[list[int]]:
        rng = random.Random(seed)
        verdicts = []
        for _ in range(15):
            chosen = rng.sample(nodes, 40)
            verdicts.append(
                batch(conn, [(who, n, rng.choice(["online", "degraded"])) for n in chosen])
            )
        return verdicts

    jobs = [pool.submit(run, c, i) for i, c in enumerate(conns)]
    for job in jobs:
        for verdicts in job.result(timeout=60):
            assert verdicts == [None] * 40
    health = fx.conn.execute(
        "SELECT count(*) FROM control_plane.runtime_node_presence WHERE node_id = ANY(%s)", (nodes,)
    ).fetchone()
    assert health is not None and health[0] == len(nodes)


def test_detaches_and_heartbeats_of_many_nodes_interleave_without_deadlock(
    connect: Callable[[], psycopg.Connection], pool: ThreadPoolExecutor, fx: Fixtures
) -> None:
    """Batches beat every node while other connections detach them one by one: every beat
    either lands before its node's detach or is refused, and every node ends offline."""
    who = fx.participant()
    session_id = fx.session()
    fx.member(session_id, who)
    nodes = [node_id() for _ in range(40)]
    for node in nodes:
        fx.attach(who, session_id, node)
    beaters = [connect() for _ in range(4)]
    detachers = [connect() for _ in range(2)]

    def beat_all(conn: psycopg.Connection, seed: int) -> None:
        rng = random.Random(seed)
        for _ in range(10):
            verdicts = batch(conn, [(who, n, "online") for n in rng.sample(nodes, len(nodes))])
            assert set(verdicts) <= {None, "CP403"}

    def detach_half(conn: psycopg.Connection, part: list[str]) -> None:
        for node in part:
            detach(conn, who, node)

    jobs = [pool.submit(beat_all, c, i) for i, c in enumerate(beaters)]
    jobs += [
        pool.submit(detach_half, c, nodes[i :: len(detachers)]) for i, c in enumerate(detachers)
    ]
    for job in jobs:
        job.result(timeout=60)
    rows = fx.conn.execute(
        "SELECT a.state, p.health_state FROM control_plane.runtime_node_attachments a"
        " LEFT JOIN control_plane.runtime_node_presence p ON p.node_id = a.node_id"
        " WHERE a.session_id = %s",
        (session_id,),
    ).fetchall()
    assert len(rows) == len(nodes)
    assert {state for state, _ in rows} == {"offline"}
    assert {health for _, health in rows} <= {"offline", None}, "a detached node was left online"
