"""Overload protection through the real server: admission shedding per request class, the
heartbeat backlog bound, per-token rate limits, and the connection guard's deadlines, each
against a server started with small limits (control_plane/admission.py, rate_limit.py,
connection_limits.py).

Database calls are held deterministically with row locks taken from a test connection: the
API role's lock_timeout (3 s) bounds every hold, so a test that goes wrong still ends.
"""

from __future__ import annotations

import asyncio
import re
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from tests.conftest import ServerProcess, attach_node, random_node_id, start_server

Problem = Callable[[httpx.Response, int, str], dict[str, Any]]

HEADER_TIMEOUT = 1.0
BODY_TIMEOUT = 1.5
SMALL_LIMITS = {
    "ADMISSION_WRITES": "1",
    "ADMISSION_QUEUE": "1",
    "ADMISSION_QUEUE_WAIT_MS": "300",
    "HEARTBEAT_MAX_QUEUED": "1",
    "RATE_LIMIT_READS_PER_S": "1",
    "RATE_LIMIT_BURST_S": "2",
    "RATE_LIMIT_WRITES_PER_S": "1000",
    "HTTP_HEADER_TIMEOUT_S": str(HEADER_TIMEOUT),
    "HTTP_BODY_TIMEOUT_S": str(BODY_TIMEOUT),
}


def _spawn(
    database_url: str, admin_token: str, tmp: Path, name: str, env: dict[str, str]
) -> ServerProcess:
    with pytest.MonkeyPatch.context() as mp:
        for key, value in env.items():
            mp.setenv(key, value)
        return start_server(database_url, admin_token, tmp, name)


@pytest.fixture(scope="module")
def limited(
    database_url: str, migrated: None, admin_token: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    proc = _spawn(
        database_url, admin_token, tmp_path_factory.mktemp("limited"), "limited", SMALL_LIMITS
    )
    try:
        yield proc
    finally:
        proc.stop()


@pytest.fixture
def lclient(limited: ServerProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=limited.base_url, timeout=15.0) as c:
        yield c


def _attach(client: httpx.Client, member: Any, node: str, declare: bool = True) -> None:
    attach_node(client, member, node)
    if declare:
        r = client.post(
            f"/v1/runtime-nodes/{node}/declaration",
            json={"capabilities": {"gpu": 1}},
            headers=member.auth,
        )
        assert r.status_code == 200, r.text


def _retry_after(response: httpx.Response, low: int, high: int) -> int:
    value = response.headers.get("retry-after", "")
    assert value.isdigit() and low <= int(value) <= high, response.headers
    return int(value)


def _lock(database_url: str, table: str, node: str) -> psycopg.Connection:
    """A transaction holding `table`'s row of `node` FOR UPDATE (commit or close releases)."""
    conn = psycopg.connect(database_url)
    conn.execute(f"SELECT 1 FROM control_plane.{table} WHERE node_id = %s FOR UPDATE", (node,))
    return conn


async def _in_background(coro: Any) -> asyncio.Task[Any]:
    task = asyncio.ensure_future(coro)
    await asyncio.sleep(0.4)  # it has reached the server and waits on the lock
    return task


def test_writes_are_shed_while_their_class_is_saturated_and_other_classes_are_served(
    limited: ServerProcess,
    lclient: httpx.Client,
    database_url: str,
    make_member: Callable[..., Any],
    problem: Problem,
) -> None:
    held, other = make_member(), make_member()
    held_node, other_node = random_node_id("held"), random_node_id("other")
    _attach(lclient, held, held_node)
    _attach(lclient, other, other_node)

    async def scenario() -> None:
        async with httpx.AsyncClient(base_url=limited.base_url, timeout=15.0) as c:
            lock = _lock(database_url, "runtime_node_attachments", held_node)
            try:
                # The one write slot: a capability update waiting on the row lock in PostgreSQL.
                slot = await _in_background(
                    c.put(
                        f"/v1/runtime-nodes/{held_node}/capabilities",
                        json={"capabilities": {"gpu": 2}},
                        headers=held.auth,
                    )
                )
                # The one queue place: waits ADMISSION_QUEUE_WAIT_MS, then shed.
                t0 = time.monotonic()
                queued = asyncio.ensure_future(
                    c.post(
                        f"/v1/runtime-nodes/{other_node}/declaration",
                        json={"capabilities": {"gpu": 3}},
                        headers=other.auth,
                    )
                )
                await asyncio.sleep(0.05)
                # Beyond slot and queue: shed at once, no database call.
                t1 = time.monotonic()
                beyond = await c.post(
                    f"/v1/runtime-nodes/{other_node}/declaration",
                    json={"capabilities": {"gpu": 4}},
                    headers=other.auth,
                )
                beyond_s = time.monotonic() - t1
                # Other classes have their own capacity: a beat and a roster are served.
                beat = await c.post(
                    f"/v1/runtime-nodes/{other_node}/heartbeat",
                    json={"healthState": "online"},
                    headers=other.auth,
                )
                roster = await c.get(
                    f"/v1/sessions/{other.session_id}/runtime-nodes", headers=other.auth
                )
                queued_response = await queued
                queued_s = time.monotonic() - t0
                assert not slot.done()
            finally:
                lock.commit()
                lock.close()
            held_response = await slot

        problem(beyond, 503, "service.unavailable")
        _retry_after(beyond, 1, 60)  # [base, 2 × base]; base grows with shed / admitted
        assert beyond_s < 0.25, beyond_s
        problem(queued_response, 503, "service.unavailable")
        assert 0.25 <= queued_s < 2.0, queued_s
        assert beat.status_code == 204, beat.text
        assert roster.status_code == 200, roster.text
        assert held_response.status_code == 200, held_response.text

    asyncio.run(scenario())

    # The slot is free again: writes are admitted.
    r = lclient.post(
        f"/v1/runtime-nodes/{other_node}/declaration",
        json={"capabilities": {"gpu": 5}},
        headers=other.auth,
    )
    assert r.status_code == 200, r.text
    metrics = lclient.get("/metrics").text
    assert _counter(metrics, "control_plane_requests_shed_total", 'class="write"') >= 2
    assert 'control_plane_admission_in_flight{class="write"}' in metrics


def test_beats_wait_for_the_next_batch_and_only_beyond_the_backlog_bound_are_shed(
    limited: ServerProcess,
    lclient: httpx.Client,
    database_url: str,
    make_member: Callable[..., Any],
    problem: Problem,
) -> None:
    member = make_member()
    nodes = [random_node_id("beat") for _ in range(3)]
    for node in nodes:
        _attach(lclient, member, node)
        beat = lclient.post(
            f"/v1/runtime-nodes/{node}/heartbeat",
            json={"healthState": "online"},
            headers=member.auth,
        )
        assert beat.status_code == 204, beat.text

    async def scenario() -> tuple[httpx.Response, httpx.Response, httpx.Response, float]:
        async with httpx.AsyncClient(base_url=limited.base_url, timeout=15.0) as c:

            def beat(node: str) -> Any:
                return c.post(
                    f"/v1/runtime-nodes/{node}/heartbeat",
                    json={"healthState": "online"},
                    headers=member.auth,
                )

            lock = _lock(database_url, "runtime_node_presence", nodes[0])
            try:
                in_batch = await _in_background(beat(nodes[0]))  # the batch out, blocked
                waiting = await _in_background(beat(nodes[1]))  # waits for the next batch
                t0 = time.monotonic()
                beyond = await beat(nodes[2])  # HEARTBEAT_MAX_QUEUED=1 already wait: shed
                beyond_s = time.monotonic() - t0
                assert not in_batch.done() and not waiting.done()
            finally:
                lock.commit()
                lock.close()
            return await in_batch, await waiting, beyond, beyond_s

    in_batch, waiting, beyond, beyond_s = asyncio.run(scenario())
    assert in_batch.status_code == 204, in_batch.text
    assert waiting.status_code == 204, waiting.text
    problem(beyond, 503, "service.unavailable")
    _retry_after(beyond, 1, 2)
    assert beyond_s < 0.25, beyond_s
    metrics = lclient.get("/metrics").text
    assert _counter(metrics, "control_plane_requests_shed_total", 'class="heartbeat"') >= 1


def test_a_token_over_its_rate_gets_429_with_retry_after_and_recovers(
    lclient: httpx.Client, make_member: Callable[..., Any], problem: Problem
) -> None:
    # RATE_LIMIT_READS_PER_S=1 with a 2 s burst: two rosters at once, the third is refused.
    noisy, quiet = make_member(), make_member()
    node = random_node_id("rl")
    _attach(lclient, noisy, node)
    roster = f"/v1/sessions/{noisy.session_id}/runtime-nodes"
    answers = [lclient.get(roster, headers=noisy.auth) for _ in range(3)]
    assert [r.status_code for r in answers[:2]] == [200, 200], [r.text for r in answers]
    problem(answers[2], 429, "request.rate_limited")
    _retry_after(answers[2], 1, 2)

    # Another token is not affected, nor are the noisy token's heartbeats (never limited:
    # beating faster than advertised is coalesced, not refused).
    quiet_roster = lclient.get(f"/v1/sessions/{quiet.session_id}/runtime-nodes", headers=quiet.auth)
    assert quiet_roster.status_code == 200, quiet_roster.text
    beats = [
        lclient.post(
            f"/v1/runtime-nodes/{node}/heartbeat",
            json={"healthState": "online"},
            headers=noisy.auth,
        ).status_code
        for _ in range(20)
    ]
    assert beats == [204] * 20

    time.sleep(1.1)  # one token refilled
    again = lclient.get(roster, headers=noisy.auth)
    assert again.status_code == 200, again.text
    metrics = lclient.get("/metrics").text
    assert _counter(metrics, "control_plane_requests_rate_limited_total", 'class="read"') >= 1


def test_429_is_documented_on_limited_routes_and_not_on_the_heartbeat(
    lclient: httpx.Client,
) -> None:
    paths = lclient.get("/schema/openapi.json").json()["paths"]
    beat = paths["/v1/runtime-nodes/{node_id}/heartbeat"]["post"]["responses"]
    assert "429" not in beat and "503" in beat
    for path, method in [
        ("/v1/sessions/{session_id}/runtime-nodes", "post"),
        ("/v1/sessions/{session_id}/runtime-nodes", "get"),
        ("/v1/admin/sessions", "post"),
    ]:
        assert "429" in paths[path][method]["responses"], (path, method)


# --- the connection guard --------------------------------------------------------------------


def _connect(server: ServerProcess) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def _closed_after(sock: socket.socket, drip: bytes, every: float, limit: float) -> float:
    """Send `drip` a byte every `every` seconds until the server closes; seconds until then."""
    t0 = time.monotonic()
    sock.settimeout(every)
    for i in range(10_000):
        if time.monotonic() - t0 > limit:
            raise AssertionError(f"still open after {limit}s")
        if i < len(drip):
            try:
                sock.sendall(drip[i : i + 1])
            except OSError:
                return time.monotonic() - t0
        try:
            if sock.recv(4096) == b"":
                return time.monotonic() - t0
        except TimeoutError:
            continue
        except OSError:
            return time.monotonic() - t0
    raise AssertionError("unreachable")


def test_slow_headers_silent_connections_and_slow_bodies_are_closed_at_their_deadlines(
    limited: ServerProcess,
    lclient: httpx.Client,
    make_member: Callable[..., Any],
) -> None:
    member = make_member()
    node = random_node_id("slow")
    _attach(lclient, member, node)
    head = (
        f"POST /v1/runtime-nodes/{node}/heartbeat HTTP/1.1\r\nHost: x\r\n"
        f"Authorization: Bearer {member.token}\r\nContent-Type: application/json\r\n"
    ).encode()
    body = b'{"healthState":"online"}'
    slack = 0.25 + 0.6  # the guard's check period, plus a loaded machine

    silent = _connect(limited)
    slow_head = _connect(limited)
    t_silent = _closed_after(silent, b"", 0.1, 10)
    t_head = _closed_after(slow_head, head, 0.1, 10)
    assert HEADER_TIMEOUT <= t_silent <= HEADER_TIMEOUT + slack, t_silent
    # The deadline counts from the connection's opening (this one opened with `silent`).
    assert t_head <= HEADER_TIMEOUT + slack, t_head

    slow_body = _connect(limited)
    slow_body.sendall(head + f"Content-Length: {len(body)}\r\n\r\n".encode())
    t_body = _closed_after(slow_body, body, 0.1, 10)
    assert BODY_TIMEOUT <= t_body + 0.05 <= BODY_TIMEOUT + slack, t_body

    # Heartbeats were served meanwhile and after; no server error was logged for the cut body.
    beat = lclient.post(
        f"/v1/runtime-nodes/{node}/heartbeat", json={"healthState": "online"}, headers=member.auth
    )
    assert beat.status_code == 204, beat.text
    log = limited.log()
    assert "unhandled error" not in log and "HTTP exception 500" not in log
    metrics = lclient.get("/metrics").text
    assert (
        _counter(metrics, "control_plane_http_connections_closed_total", 'reason="header_timeout"')
        >= 2
    )
    assert (
        _counter(metrics, "control_plane_http_connections_closed_total", 'reason="body_timeout"')
        >= 1
    )
    for sock in (silent, slow_head, slow_body):
        sock.close()


def test_a_connection_beyond_the_limit_gets_503_with_retry_after_and_is_closed(
    database_url: str, migrated: None, admin_token: str, tmp_path: Path
) -> None:
    server = _spawn(
        database_url,
        admin_token,
        tmp_path,
        "connlimit",
        {"HTTP_MAX_CONNECTIONS": "3", "HTTP_HEADER_TIMEOUT_S": "10"},
    )
    socks: list[socket.socket] = []
    try:
        socks = [_connect(server) for _ in range(3)]
        time.sleep(0.3)
        extra = _connect(server)
        socks.append(extra)
        extra.settimeout(5)
        data = b""
        while chunk := extra.recv(4096):
            data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 503 "), data
        assert re.search(rb"(?im)^retry-after: [12]\r?$", head), head
        assert b'"code":"service.unavailable"' in body, body
        for sock in socks[:3]:  # the three admitted ones still work
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            assert sock.recv(4096).startswith(b"HTTP/1.1 200 "), "an admitted connection failed"
    finally:
        for sock in socks:
            sock.close()
        server.stop()


def _counter(metrics: str, name: str, label: str) -> float:
    for line in metrics.splitlines():
        if line.startswith(name + "{") and label in line:
            return float(line.rsplit(" ", 1)[1])
    return 0.0
