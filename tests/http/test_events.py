"""The change feed over real HTTP (contract §9): pages, long-poll wake-ups through the worker's
LISTEN connection, SSE with resume and keep-alives, re-authorization, 400/403/410, and the LISTEN
connection being killed."""

from __future__ import annotations

import asyncio
import json
import queue
import secrets
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from tests.conftest import Member, ServerProcess, attach_node, bearer, start_server

Problem = Callable[[httpx.Response, int, str], dict[str, Any]]
EVENT_KEYS = {
    "id",
    "at",
    "sessionId",
    "nodeId",
    "attachmentId",
    "kind",
    "state",
    "previousState",
    "healthState",
    "previousHealthState",
    "actor",
    "actorParticipantId",
    "reason",
    "capabilities",
}
KEEPALIVE_SECONDS = 1


def events_path(session_id: str) -> str:
    return f"/v1/sessions/{session_id}/runtime-nodes/events"


def attach(client: httpx.Client, member: Member, node_id: str | None = None) -> str:
    return attach_node(client, member, node_id or f"ev-{secrets.token_hex(6)}", {"os": "linux"})


def declare(client: httpx.Client, member: Member, node_id: str) -> None:
    r = client.post(
        f"/v1/runtime-nodes/{node_id}/declaration",
        json={"capabilities": {"os": "linux", "gpu": True}},
        headers=member.auth,
    )
    assert r.status_code == 200, r.text


def page(client: httpx.Client, member: Member, **params: Any) -> dict[str, Any]:
    r = client.get(events_path(member.session_id), params=params, headers=member.auth)
    assert r.status_code == 200, r.text
    return r.json()


@pytest.fixture(scope="module")
def feed_server(
    database_url: str, migrated: None, admin_token: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    """A server of its own with a short keep-alive/re-authorization interval."""
    proc = start_server(
        database_url,
        admin_token,
        tmp_path_factory.mktemp("feed"),
        "feed",
        # A long queue wait: the batching test holds the read slots on a lock for a moment.
        {"FEED_KEEPALIVE_SECONDS": str(KEEPALIVE_SECONDS), "ADMISSION_QUEUE_WAIT_MS": "8000"},
    )
    try:
        yield proc
    finally:
        proc.stop()


@pytest.fixture
def feed(feed_server: ServerProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=feed_server.base_url, timeout=30.0) as c:
        yield c


@pytest.fixture
def pool() -> Iterator[ThreadPoolExecutor]:
    with ThreadPoolExecutor(max_workers=4) as ex:
        yield ex


# --- pages -------------------------------------------------------------------------------------


def test_a_page_lists_the_sessions_events_in_order_with_every_field(
    feed: httpx.Client, make_member: Callable[..., Member]
) -> None:
    owner = make_member()
    node = attach(feed, owner)
    declare(feed, owner, node)
    body = page(feed, owner)
    assert set(body) == {"events", "next"}
    kinds = [(e["nodeId"], e["kind"]) for e in body["events"]]
    assert kinds == [(node, "attached"), (node, "declared")]
    assert all(set(e) == EVENT_KEYS for e in body["events"])
    ids = [e["id"] for e in body["events"]]
    assert ids == sorted(ids) and body["next"] >= ids[-1]
    assert body["events"][1]["state"] == "online"
    assert body["events"][1]["previousState"] == "registering"
    # Following from `next`: nothing new, the same cursor (or later) comes back.
    again = page(feed, owner, after=body["next"])
    assert again["events"] == [] and again["next"] >= body["next"]
    # limit pages through.
    first = page(feed, owner, limit=1)
    assert [e["kind"] for e in first["events"]] == ["attached"]
    rest = page(feed, owner, after=first["next"])
    assert [e["kind"] for e in rest["events"]] == ["declared"]


def test_long_poll_is_woken_by_a_commit_of_that_session(
    feed: httpx.Client, make_member: Callable[..., Member], pool: ThreadPoolExecutor
) -> None:
    owner = make_member()
    node = attach(feed, owner)
    cursor = page(feed, owner)["next"]
    other = make_member()
    started = time.monotonic()
    waiting: Future[dict[str, Any]] = pool.submit(page, feed, owner, after=cursor, wait=30)
    time.sleep(0.5)  # the request is parked now (it would return at once otherwise)
    assert not waiting.done()
    attach(feed, other)  # another session's event does not answer this one
    time.sleep(0.3)
    assert not waiting.done()
    declare(feed, owner, node)
    body = waiting.result(timeout=10)
    # Woken by the commit, long before the 30 s wait elapsed, with the new event in the answer.
    assert [e["kind"] for e in body["events"]] == ["declared"]
    assert time.monotonic() - started < 30


def _metric(client: httpx.Client, series: str) -> float:
    for line in client.get("/metrics").text.splitlines():
        if line.startswith(series + " "):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{series} is not exported")


def test_waiting_followers_and_delivery_lag_are_on_metrics(
    feed: httpx.Client, make_member: Callable[..., Member], pool: ThreadPoolExecutor
) -> None:
    owner = make_member()
    node = attach(feed, owner)
    cursor = page(feed, owner)["next"]
    waiting_series = 'control_plane_feed_subscribers{transport="long_poll"}'
    lag_count = "control_plane_feed_delivery_lag_seconds_count"
    idle, delivered = _metric(feed, waiting_series), _metric(feed, lag_count)
    waiting: Future[dict[str, Any]] = pool.submit(page, feed, owner, after=cursor, wait=30)
    deadline = time.monotonic() + 5
    while _metric(feed, waiting_series) < idle + 1 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _metric(feed, waiting_series) >= idle + 1, "a parked long-poll is counted"
    declare(feed, owner, node)
    assert [e["kind"] for e in waiting.result(timeout=10)["events"]] == ["declared"]
    assert _metric(feed, lag_count) >= delivered + 1, "the woken delivery's lag is observed"
    assert 'control_plane_feed_subscribers{transport="sse"}' in feed.get("/metrics").text


def test_long_poll_times_out_with_an_empty_page(
    feed: httpx.Client, make_member: Callable[..., Member]
) -> None:
    owner = make_member()
    attach(feed, owner)
    cursor = page(feed, owner)["next"]
    started = time.monotonic()
    body = page(feed, owner, after=cursor, wait=1)
    assert body["events"] == [] and body["next"] >= cursor
    assert time.monotonic() - started >= 0.9  # it did wait


def test_long_poll_answers_at_once_when_events_are_there(
    feed: httpx.Client, make_member: Callable[..., Member]
) -> None:
    owner = make_member()
    attach(feed, owner)
    body = page(feed, owner, wait=30)  # there is an event already: no waiting
    assert [e["kind"] for e in body["events"]] == ["attached"]


# --- refusals ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "params",
    [
        {"limit": "0"},
        {"limit": "1001"},
        {"limit": "ten"},
        {"after": "-1"},
        {"after": "1.5"},
        {"after": "99999999999999999999"},
        {"wait": "61"},
        {"wait": "-1"},
        {"wait": "soon"},
    ],
)
def test_bad_parameters_are_400(
    feed: httpx.Client,
    make_member: Callable[..., Member],
    problem: Problem,
    params: dict[str, str],
) -> None:
    owner = make_member()
    r = feed.get(events_path(owner.session_id), params=params, headers=owner.auth)
    problem(r, 400, "request.invalid")


def test_bad_session_id_and_last_event_id_are_400(
    feed: httpx.Client, make_member: Callable[..., Member], problem: Problem
) -> None:
    owner = make_member()
    problem(feed.get(events_path("not-a-uuid"), headers=owner.auth), 400, "request.invalid")
    r = feed.get(
        events_path(owner.session_id),
        headers={**owner.auth, "Accept": "text/event-stream", "Last-Event-ID": "x"},
    )
    problem(r, 400, "request.invalid")


def test_refusals_are_one_byte_identical_403(
    feed: httpx.Client,
    make_member: Callable[..., Member],
    make_participant: Callable[..., tuple[str, str]],
    problem: Problem,
) -> None:
    owner = make_member()
    attach(feed, owner)
    _, stranger = make_participant()
    suspended = make_member(owner.session_id, role="collaborator", state="suspended")
    pending = make_member(owner.session_id, role="viewer", state="pending")
    cases = [
        (owner.session_id, stranger),  # not a member
        (owner.session_id, suspended.token),  # inactive membership
        (owner.session_id, pending.token),
        (str(uuid.uuid4()), owner.token),  # unknown session
    ]
    bodies = set()
    for sid, token in cases:
        for accept in ("application/json", "text/event-stream"):
            for params in ({}, {"wait": "5"}):
                r = feed.get(
                    events_path(sid), params=params, headers={**bearer(token), "Accept": accept}
                )
                problem(r, 403, "runtimenode.permission_denied")
                bodies.add(r.content)
    assert len(bodies) == 1, bodies
    assert owner.session_id.encode() not in next(iter(bodies))


def test_own_reads_of_one_page_share_a_call_and_each_caller_gets_its_own_verdict(
    feed: httpx.Client,
    feed_server: ServerProcess,
    make_member: Callable[..., Member],
    make_participant: Callable[..., tuple[str, str]],
    db: psycopg.Connection,
    problem: Problem,
) -> None:
    owner = make_member()
    attach(feed, owner)
    cursor = page(feed, owner)["next"] - 1  # the page holds the last event
    members = [make_member(owner.session_id, role="viewer") for _ in range(12)]
    strangers = [make_participant()[1] for _ in range(6)]
    suspended = make_member(owner.session_id, role="viewer", state="suspended")
    tokens = [m.token for m in members] + strangers + [suspended.token, "cpt_" + "0" * 43]
    calls, callers = (
        "control_plane_feed_own_reads_total",
        "control_plane_feed_own_read_callers_total",
    )
    calls_before, callers_before = _metric(feed, calls), _metric(feed, callers)

    async def read_all() -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=feed_server.base_url, timeout=30.0) as client:
            return await asyncio.gather(*(
                client.get(events_path(owner.session_id), params={"after": cursor},
                           headers=bearer(token))
                for token in tokens
            ))  # fmt: skip

    # Hold the first reads on a lock (the feed's horizon table) so that the others arrive
    # while every read slot is taken: they must share the next call.
    with ThreadPoolExecutor(max_workers=1) as ex:
        with db.transaction():
            db.execute(
                "LOCK TABLE control_plane.runtime_node_event_retention IN ACCESS EXCLUSIVE MODE"
            )
            responses = ex.submit(asyncio.run, read_all())
            time.sleep(1.0)  # below the API role's lock_timeout (3 s)
        answers = responses.result(timeout=30)
    bodies = {r.content for r in answers[: len(members)]}
    assert [r.status_code for r in answers[: len(members)]] == [200] * len(members), answers[0].text
    assert len(bodies) == 1 and json.loads(next(iter(bodies)))["events"], bodies
    refused = {problem(r, 403, "runtimenode.permission_denied") and r.content
               for r in answers[len(members) : -1]}  # fmt: skip
    assert len(refused) == 1, refused  # the uniform 403, whoever shared the call
    problem(answers[-1], 401, "auth.unauthenticated")
    assert _metric(feed, callers) - callers_before == len(tokens)
    assert _metric(feed, calls) - calls_before <= len(tokens) / 2, "the reads were not shared"


def test_no_or_unknown_token_is_401(
    feed: httpx.Client, make_member: Callable[..., Member], problem: Problem
) -> None:
    owner = make_member()
    problem(feed.get(events_path(owner.session_id)), 401, "auth.unauthenticated")
    r = feed.get(events_path(owner.session_id), headers=bearer("cpt_nope"))
    problem(r, 401, "auth.unauthenticated")


def test_a_cursor_below_the_retention_horizon_is_410(
    feed: httpx.Client,
    make_member: Callable[..., Member],
    db: psycopg.Connection,
    problem: Problem,
) -> None:
    owner = make_member()
    attach(feed, owner)
    # Move the horizon past at least one event (the oldest; retention's own function).
    db.execute(
        "SELECT control_plane.runtime_node_events_purge("
        " now() + (SELECT event_retention FROM control_plane.settings) + interval '1 day', 1)"
    )
    horizon = db.execute(
        "SELECT purged_through FROM control_plane.runtime_node_event_retention"
    ).fetchone()[0]
    assert horizon >= 1
    r = feed.get(events_path(owner.session_id), params={"after": horizon - 1}, headers=owner.auth)
    problem(r, 410, "events.cursor_expired")
    r = feed.get(
        events_path(owner.session_id),
        params={"after": horizon - 1, "wait": "5"},
        headers={**owner.auth, "Accept": "text/event-stream"},
    )
    problem(r, 410, "events.cursor_expired")


def test_the_admin_token_reads_any_sessions_feed(
    feed: httpx.Client, make_member: Callable[..., Member], admin_token: str, problem: Problem
) -> None:
    owner = make_member()
    node = attach(feed, owner)
    r = feed.get(events_path(owner.session_id), headers=bearer(admin_token))
    assert r.status_code == 200, r.text
    assert [e["nodeId"] for e in r.json()["events"]] == [node]
    unknown = str(uuid.uuid4())
    problem(feed.get(events_path(unknown), headers=bearer(admin_token)), 404, "not_found")


# --- SSE ---------------------------------------------------------------------------------------


@dataclass
class Stream:
    """An SSE response read line by line in a thread: records (`id`, `event`, `data`) and
    comments land in `items`; `ended` is set when the server closes the stream."""

    base_url: str
    session_id: str
    headers: dict[str, str]
    params: dict[str, Any] = field(default_factory=dict)
    items: queue.Queue[tuple[str, Any]] = field(default_factory=queue.Queue)
    ended: threading.Event = field(default_factory=threading.Event)
    status: int | None = None
    content_type: str = ""

    def run(self) -> None:
        try:
            with (
                httpx.Client(base_url=self.base_url, timeout=httpx.Timeout(60.0)) as c,
                c.stream(
                    "GET",
                    events_path(self.session_id),
                    params=self.params,
                    headers={**self.headers, "Accept": "text/event-stream"},
                ) as r,
            ):
                self.status = r.status_code
                self.content_type = r.headers.get("content-type", "")
                record: dict[str, str] = {}
                for line in r.iter_lines():
                    if line.startswith(":"):
                        self.items.put(("comment", line))
                    elif line == "":
                        if record:
                            self.items.put(("event", record))
                            record = {}
                    else:
                        name, _, value = line.partition(":")
                        record[name] = value.removeprefix(" ")
        except httpx.HTTPError as exc:
            self.items.put(("error", repr(exc)))
        finally:
            self.ended.set()

    def next_event(self, timeout: float = 10.0) -> dict[str, str]:
        deadline = time.monotonic() + timeout
        while True:
            kind, value = self.items.get(timeout=max(0.01, deadline - time.monotonic()))
            if kind == "event":
                return value
            assert kind == "comment", value


def open_stream(base_url: str, member: Member, **kw: Any) -> Stream:
    stream = Stream(base_url, member.session_id, {**member.auth, **kw.pop("headers", {})}, **kw)
    threading.Thread(target=stream.run, daemon=True).start()
    return stream


def test_sse_streams_events_and_resumes_after_last_event_id(
    feed: httpx.Client, feed_server: ServerProcess, make_member: Callable[..., Member]
) -> None:
    owner = make_member()
    node = attach(feed, owner)
    declare(feed, owner, node)
    first = page(feed, owner)["events"]
    # Resume after the first event: only the second is replayed, then live ones follow.
    stream = open_stream(
        feed_server.base_url,
        owner,
        headers={"Last-Event-ID": str(first[0]["id"])},
        params={"after": 0},
    )
    replayed = stream.next_event()
    assert stream.status == 200 and stream.content_type.startswith("text/event-stream")
    assert replayed["id"] == str(first[1]["id"]) and replayed["event"] == "declared"
    assert json.loads(replayed["data"]) == first[1]
    r = feed.post(f"/v1/runtime-nodes/{node}/detach", json={"reason": "done"}, headers=owner.auth)
    assert r.status_code == 204
    live = stream.next_event()
    data = json.loads(live["data"])
    assert live["event"] == "detached" and data["reason"] == "done"
    assert int(live["id"]) == data["id"] > first[1]["id"]
    assert not stream.ended.is_set()


def test_sse_after_parameter_without_last_event_id(
    feed: httpx.Client, feed_server: ServerProcess, make_member: Callable[..., Member]
) -> None:
    owner = make_member()
    node = attach(feed, owner)
    declare(feed, owner, node)
    first = page(feed, owner)["events"]
    stream = open_stream(feed_server.base_url, owner, params={"after": first[0]["id"]})
    assert stream.next_event()["event"] == "declared"


def test_sse_sends_keep_alive_comments(
    feed: httpx.Client, feed_server: ServerProcess, make_member: Callable[..., Member]
) -> None:
    owner = make_member()
    attach(feed, owner)
    stream = open_stream(feed_server.base_url, owner)
    assert stream.next_event()["event"] == "attached"
    kind, value = stream.items.get(timeout=KEEPALIVE_SECONDS * 5)
    assert kind == "comment" and value.startswith(":"), (kind, value)
    kind, _ = stream.items.get(timeout=KEEPALIVE_SECONDS * 5)
    assert kind == "comment"  # and again: a steady keep-alive


def test_sse_ends_when_the_callers_membership_is_suspended(
    feed: httpx.Client,
    feed_server: ServerProcess,
    make_member: Callable[..., Member],
    add_member: Callable[..., dict[str, Any]],
) -> None:
    owner = make_member()
    viewer = make_member(owner.session_id, role="viewer")
    attach(feed, owner)
    stream = open_stream(feed_server.base_url, viewer)
    assert stream.next_event()["event"] == "attached"
    add_member(owner.session_id, viewer.participant_id, role="viewer", state="suspended")
    # Re-checked at the next keep-alive tick (1 s here, 15 s by default): the stream ends.
    assert stream.ended.wait(KEEPALIVE_SECONDS * 10), "the stream outlived the membership"
    # ... and a new one is refused.
    r = feed.get(events_path(owner.session_id), headers=viewer.auth)
    assert r.status_code == 403


def test_idle_streams_are_re_checked_together_and_each_ends_on_its_own_verdict(
    feed: httpx.Client,
    feed_server: ServerProcess,
    make_member: Callable[..., Member],
    add_member: Callable[..., dict[str, Any]],
) -> None:
    owners = [make_member() for _ in range(3)]  # three sessions
    viewers = [make_member(o.session_id, role="viewer") for o in owners for _ in range(2)]
    for o in owners:
        attach(feed, o)
    calls, streams = (
        "control_plane_feed_reauthorizations_total",
        "control_plane_feed_reauthorized_streams_total",
    )
    opened = [open_stream(feed_server.base_url, m) for m in owners + viewers]
    for stream in opened:
        assert stream.next_event()["event"] == "attached"
    calls_before, streams_before = _metric(feed, calls), _metric(feed, streams)
    time.sleep(KEEPALIVE_SECONDS * 3)  # idle: every stream is re-checked 3-4 times
    checked = _metric(feed, streams) - streams_before
    assert checked >= 2 * len(opened), "idle streams were not re-checked every keep-alive"
    # On the worker's grid, the streams of all three sessions share each call.
    assert _metric(feed, calls) - calls_before <= checked / 3
    # One viewer loses access: its stream ends at the next re-check, the others stay open.
    gone = viewers[0]
    add_member(gone.session_id, gone.participant_id, role="viewer", state="suspended")
    assert opened[len(owners)].ended.wait(KEEPALIVE_SECONDS * 10), "the stream outlived access"
    time.sleep(KEEPALIVE_SECONDS * 2)
    assert [s.ended.is_set() for s in opened].count(True) == 1


def test_sse_ends_when_the_callers_token_is_revoked(
    feed: httpx.Client,
    feed_server: ServerProcess,
    make_member: Callable[..., Member],
    admin: httpx.Client,
    db: psycopg.Connection,
) -> None:
    owner = make_member()
    attach(feed, owner)
    stream = open_stream(feed_server.base_url, owner)
    assert stream.next_event()["event"] == "attached"
    token_id = db.execute(
        "SELECT id FROM control_plane.participant_tokens WHERE participant_id = %s",
        (owner.participant_id,),
    ).fetchone()[0]
    assert admin.delete(f"/v1/admin/tokens/{token_id}").status_code == 204
    assert stream.ended.wait(KEEPALIVE_SECONDS * 10), "the stream outlived the token"


def test_an_event_reaches_the_stream_without_waiting_for_a_tick(
    feed: httpx.Client,
    feed_server: ServerProcess,
    make_member: Callable[..., Member],
    database_url: str,
    tmp_path: Path,
    admin_token: str,
) -> None:
    # On a server whose keep-alive is the default 15 s, a live event is delivered on its
    # NOTIFY wake-up, not at the next tick.
    slow = start_server(database_url, admin_token, tmp_path, "slow-tick")
    try:
        owner = make_member()
        node = attach(feed, owner)
        stream = open_stream(slow.base_url, owner)
        assert stream.next_event()["event"] == "attached"
        declare(feed, owner, node)
        assert stream.next_event(timeout=10)["event"] == "declared"
    finally:
        slow.stop()


# --- the LISTEN connection ---------------------------------------------------------------------


def _feed_backends(db: psycopg.Connection) -> list[int]:
    return [
        r[0]
        for r in db.execute(
            "SELECT pid FROM pg_stat_activity WHERE application_name = 'control-plane-feed'"
            " AND datname = current_database()"
        ).fetchall()
    ]


def test_waiters_are_woken_after_the_listen_connection_is_killed(
    feed: httpx.Client,
    make_member: Callable[..., Member],
    db: psycopg.Connection,
    pool: ThreadPoolExecutor,
    database_url: str,
    tmp_path: Path,
    admin_token: str,
) -> None:
    server = start_server(database_url, admin_token, tmp_path, "listen-killed")
    try:
        with httpx.Client(base_url=server.base_url, timeout=60.0) as own:
            owner = make_member()
            node = attach(own, owner)
            cursor = page(own, owner)["next"]
            deadline = time.monotonic() + 10
            while not (before := _feed_backends(db)) and time.monotonic() < deadline:
                time.sleep(0.05)
            assert before, "no LISTEN connection"
            waiting = pool.submit(page, own, owner, after=cursor, wait=30)
            time.sleep(0.3)
            for pid in before:
                db.execute("SELECT pg_terminate_backend(%s)", (pid,))
            # The event commits while the worker is (probably) not listening: the reconnect's
            # wake-all makes the waiter re-read the table.
            declare(own, owner, node)
            body = waiting.result(timeout=20)
            assert [e["kind"] for e in body["events"]] == ["declared"]
            deadline = time.monotonic() + 10
            while not (after := _feed_backends(db)) and time.monotonic() < deadline:
                time.sleep(0.05)
            assert after and not set(after) & set(before), "LISTEN was not re-established"
            # And a fresh wait is woken by NOTIFY on the new connection.
            cursor = body["next"]
            waiting = pool.submit(page, own, owner, after=cursor, wait=30)
            time.sleep(0.3)
            r = own.post(f"/v1/runtime-nodes/{node}/detach", headers=owner.auth)
            assert r.status_code == 204
            assert [e["kind"] for e in waiting.result(timeout=20)["events"]] == ["detached"]
    finally:
        server.stop()
