"""Change-feed benchmark (docs/performance.md, "Change feed"): many followers, real producers.

    python bench/feed.py BASE_URL DATABASE_URL ROSTER_ROWS BEAT_ROWS OUT.json

- ROSTER_ROWS lines "<token> <session id>": one member per bench session (100 sessions).
- BEAT_ROWS lines "<token> <node id>": the sessions' nodes with their owners' tokens.

Subscribers (SUBSCRIBERS, default 1000, half SSE, half long-poll with wait=60) follow the
sessions round-robin, over a minimal keep-alive HTTP/1.1 client (httpx would need a core of its
own here). Phases:
1. idle: database transactions per second (pg_stat_database xact_commit + xact_rollback) with
   nobody following (baseline: the sweep, pg_cron), then with only the long-poll half parked,
   then with everyone parked. What the followers cost while idle is the difference (a
   long-poll follower re-polls once per `wait` = 60 s, outside the windows; an SSE stream
   re-checks its caller once per 15 s, one round inside its 16 s window).
2. active (ROUNDS x DURATION s, 3 x 15 by default; latency percentiles per round by event id,
   reported with their median over the rounds: one noisy moment on a shared machine moves one
   round, not the result): ~RATE events/s from real operations — capability updates toggling
   nodes' slot state through HTTP, and heartbeats of nodes whose presence is then made stale
   so that the pg_cron sweep demotes them (health_changed by the sweep). Every follower records
   commit-to-client latency (arrival minus the event's `at`, the writing transaction's time on
   the database clock, same machine) and every event id it got; afterwards each follower's ids
   are compared with the table after a drain of at most 30 s (missed / duplicated must be 0).
App RSS (every process of the app) is sampled during the active phase. The server's own view of
the same phase is reported too: its delivery-lag histogram (commit → read of a woken follower)
read from /metrics before and after, since on a shared machine the followers' process adds its
own scheduling delay to what it measures (it runs on uvloop to keep that small).
BENCH_FEED_DUMP=<path> also writes every delivery (arrival time, event id, latency, follower,
transport) as TSV: where a tail sits in time and by transport (docs/performance.md §8).
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import datetime as dt
import json
import os
import random
import resource
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import psycopg

SUBSCRIBERS = int(os.environ.get("BENCH_FEED_SUBSCRIBERS", "1000"))
DURATION = float(os.environ.get("BENCH_FEED_DURATION", "15"))  # per round
ROUNDS = int(os.environ.get("BENCH_FEED_ROUNDS", "3"))
RATE = float(os.environ.get("BENCH_FEED_RATE", "200"))
IDLE_WINDOW = float(os.environ.get("BENCH_FEED_IDLE_WINDOW", "8"))
DUMP = os.environ.get("BENCH_FEED_DUMP", "")  # a TSV of every delivery, to find where a tail is
STATS_FLUSH = 11.0
DRAIN_S = 30.0
SWEEP_SHARE = 0.2  # of RATE: nodes made stale per second (each also recovers by a heartbeat)


# --- a minimal HTTP/1.1 client -----------------------------------------------------------------


class Conn:
    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def open(self) -> None:
        self.reader, self.writer = await asyncio.open_connection(self.host, self.port)

    async def send(
        self, method: str, path: str, headers: dict[str, str], body: bytes = b""
    ) -> None:
        if self.writer is None:
            await self.open()
        assert self.writer is not None
        head = f"{method} {path} HTTP/1.1\r\nHost: {self.host}\r\n"
        head += "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        if body:
            head += f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
        self.writer.write(head.encode() + b"\r\n" + body)

    async def head(self) -> tuple[int, dict[str, str]]:
        assert self.reader is not None
        status = int((await self.reader.readline()).split()[1])
        headers: dict[str, str] = {}
        while (line := await self.reader.readline()) not in (b"\r\n", b""):
            k, _, v = line.decode().partition(":")
            headers[k.strip().lower()] = v.strip()
        return status, headers

    async def response(self) -> tuple[int, bytes]:
        status, headers = await self.head()
        assert self.reader is not None
        n = int(headers.get("content-length", "0"))
        return status, (await self.reader.readexactly(n)) if n else b""

    async def request(
        self, method: str, path: str, headers: dict[str, str], body: bytes = b""
    ) -> tuple[int, bytes]:
        await self.send(method, path, headers, body)
        return await self.response()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None


# --- followers ---------------------------------------------------------------------------------


@dataclass
class Follower:
    kind: str  # sse | poll
    session: str
    token: str
    after: int
    ids: list[int] = field(default_factory=list)
    latencies_ms: list[float] = field(default_factory=list)
    by_event: dict[str, list[float]] = field(default_factory=dict)  # "kind/actor" → latencies
    trace: list[tuple[float, int, float]] = field(default_factory=list)  # BENCH_FEED_DUMP
    errors: int = 0
    ready: bool = False

    def record(self, event: dict[str, object], now: float) -> None:
        self.ids.append(int(event["id"]))  # type: ignore[call-overload]
        at = dt.datetime.fromisoformat(str(event["at"])).timestamp()
        latency = (now - at) * 1000
        self.latencies_ms.append(latency)
        self.by_event.setdefault(f"{event['kind']}/{event['actor']}", []).append(latency)
        if DUMP:
            self.trace.append((now, int(event["id"]), latency))  # type: ignore[call-overload]

    @property
    def path(self) -> str:
        return f"/v1/sessions/{self.session}/runtime-nodes/events"


async def follow_poll(f: Follower, host: str, port: int, stop: asyncio.Event) -> None:
    conn = Conn(host, port)
    cursor = f.after
    while not stop.is_set():
        try:
            f.ready = True
            status, body = await conn.request(
                "GET", f"{f.path}?after={cursor}&wait=60&limit=1000",
                {"Authorization": f"Bearer {f.token}"},
            )  # fmt: skip
            now = time.time()
            if status != 200:
                f.errors += 1
                await asyncio.sleep(0.5)
                continue
            page = json.loads(body)
            for event in page["events"]:
                f.record(event, now)
            cursor = page["next"]
        except (OSError, ValueError, IndexError, asyncio.IncompleteReadError):
            f.errors += 1
            conn.close()
            await asyncio.sleep(0.2)
    conn.close()


async def follow_sse(f: Follower, host: str, port: int, stop: asyncio.Event) -> None:
    conn = Conn(host, port)
    await conn.send(
        "GET", f"{f.path}?after={f.after}&limit=1000",
        {"Authorization": f"Bearer {f.token}", "Accept": "text/event-stream"},
    )  # fmt: skip
    status, headers = await conn.head()
    if status != 200 or headers.get("transfer-encoding") != "chunked":
        f.errors += 1
        conn.close()
        return
    f.ready = True
    reader = conn.reader
    assert reader is not None
    buffer = b""
    with contextlib.suppress(OSError, asyncio.IncompleteReadError, ValueError):
        while not stop.is_set():
            size = int((await reader.readline()).strip(), 16)
            if size == 0:
                break
            buffer += await reader.readexactly(size)
            await reader.readexactly(2)
            now = time.time()
            while b"\r\n\r\n" in buffer:
                record, buffer = buffer.split(b"\r\n\r\n", 1)
                for line in record.split(b"\r\n"):
                    if line.startswith(b"data: "):
                        f.record(json.loads(line[6:]), now)
    conn.close()


# --- producers ---------------------------------------------------------------------------------


async def produce(
    host: str, port: int, nodes: list[tuple[str, str]], database_url: str, stop: asyncio.Event
) -> dict[str, int]:
    """Capability updates toggling slot state, plus heartbeats of nodes then made stale for the
    sweep; ~RATE events/s in all. Returns request counts by status."""
    counts: dict[str, int] = {}
    degraded: set[str] = set()
    conns = [Conn(host, port) for _ in range(8)]
    queue: asyncio.Queue[tuple[str, str, dict[str, str], bytes] | None] = asyncio.Queue()

    async def worker(conn: Conn) -> None:
        while (item := await queue.get()) is not None:
            try:
                status, _ = await conn.request(*item)
            except (OSError, ValueError, asyncio.IncompleteReadError):
                conn.close()
                status = 0
            counts[str(status)] = counts.get(str(status), 0) + 1

    workers = [asyncio.create_task(worker(c)) for c in conns]
    stale_rate = RATE * SWEEP_SHARE / 2  # each stale node gives two events (recover, demote)
    caps_rate = RATE - 2 * stale_rate
    tick = 0.1
    with psycopg.connect(database_url, autocommit=True) as db:
        while not stop.is_set():
            started = time.monotonic()
            for _ in range(round(caps_rate * tick)):
                token, node = random.choice(nodes)
                target = "online" if node in degraded else "degraded"
                degraded.symmetric_difference_update({node})
                body = json.dumps({"capabilities": {"os": "linux", "load": random.random()},
                                   "healthChanges": {"state": target}}).encode()  # fmt: skip
                queue.put_nowait((
                    "PUT", f"/v1/runtime-nodes/{node}/capabilities",
                    {"Authorization": f"Bearer {token}"}, body,
                ))  # fmt: skip
            stale = random.sample(nodes, max(1, round(stale_rate * tick)))
            for token, node in stale:  # a beat: health back to online (an event if it was not)
                queue.put_nowait((
                    "POST", f"/v1/runtime-nodes/{node}/heartbeat",
                    {"Authorization": f"Bearer {token}"}, b'{"healthState":"online"}',
                ))  # fmt: skip
            await asyncio.sleep(0.02)
            # ... then silence: stale beyond degraded_after, the next sweep demotes it.
            db.execute(
                "UPDATE control_plane.runtime_node_presence"
                "   SET last_heartbeat_at = now() - interval '31 seconds'"
                " WHERE node_id = ANY(%s) AND health_state = 'online'",
                ([n for _, n in stale],),
            )
            await asyncio.sleep(max(0.0, tick - (time.monotonic() - started)))
    for _ in conns:
        queue.put_nowait(None)
    await asyncio.gather(*workers)
    for c in conns:
        c.close()
    return counts


# --- measuring ---------------------------------------------------------------------------------


def xacts(db: psycopg.Connection) -> int:
    row = db.execute(
        "SELECT xact_commit + xact_rollback FROM pg_stat_database"
        " WHERE datname = current_database()"
    ).fetchone()
    assert row is not None
    return int(row[0])


FEED_FUNCTIONS = (
    "runtime_node_events_read_v2",
    "runtime_node_events_read_batch_v2",
    "runtime_node_events_authorize_v2",
    "admin_session_events_v2",
)


def feed_calls(db: psycopg.Connection) -> int:
    """Calls of the feed's SQL functions so far (pg_stat_user_functions; track_functions = pl):
    exactly the queries followers make, whatever else the database is doing."""
    row = db.execute(
        "SELECT coalesce(sum(calls), 0) FROM pg_stat_user_functions"
        " WHERE schemaname = 'control_plane' AND funcname = ANY(%s)",
        (list(FEED_FUNCTIONS),),
    ).fetchone()
    return int(row[0]) if row else 0


async def xacts_per_s(db: psycopg.Connection, seconds: float) -> tuple[float, float]:
    """(transactions/s of the whole database, feed function calls/s) over `seconds`."""
    db.execute("SELECT pg_stat_clear_snapshot()")
    before, calls = xacts(db), feed_calls(db)
    await asyncio.sleep(seconds)
    db.execute("SELECT pg_stat_clear_snapshot()")
    return (xacts(db) - before - 3) / seconds, (feed_calls(db) - calls) / seconds


def app_rss_mib() -> float | None:
    root = os.environ.get("BENCH_APP_PID", "")
    if not root.isdigit():
        return None
    children: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                stat = Path(entry.path, "stat").read_text()
            except OSError:
                continue
            ppid = int(stat[stat.rindex(")") + 2 :].split()[1])
            children.setdefault(ppid, []).append(int(entry.name))
    total_kb, todo = 0, [int(root)]
    while todo:
        pid = todo.pop()
        todo.extend(children.get(pid, []))
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total_kb += int(line.split()[1])
    return round(total_kb / 1024, 1)


async def settle(db: psycopg.Connection, node_ids: list[str]) -> None:
    """Before measuring, take the (silent) bench fleet's presence offline, as a DBA would: the
    sweep then has nothing of it left to demote, and no burst of demotions lands in a measured
    window (a row the sweep demoted to degraded would go offline 30 s later). Only the nodes the
    producer beats come back (their recovery and later demotion are measured events).
    Bench setup, not an operation under test: it writes no event."""
    db.execute(
        "UPDATE control_plane.runtime_node_presence"
        "   SET health_state = 'offline',"
        "       last_heartbeat_at = least(last_heartbeat_at, now() - interval '5 minutes')"
        " WHERE node_id = ANY(%s) AND health_state <> 'offline'",
        (node_ids,),
    )
    await asyncio.sleep(6)  # a sweep that was under way when we wrote has committed


async def delivery_lag_buckets(host: str, port: int) -> dict[float, float]:
    """The server's own view: control_plane_feed_delivery_lag_seconds (a histogram of commit →
    read for woken followers, every worker) as {upper bound in s: cumulative count}."""
    conn = Conn(host, port)
    try:
        _, body = await conn.request("GET", "/metrics", {})
    finally:
        conn.close()
    buckets: dict[float, float] = {}
    for line in body.decode().splitlines():
        if line.startswith("control_plane_feed_delivery_lag_seconds_bucket{"):
            bound = line.split('le="', 1)[1].split('"', 1)[0]
            buckets[float(bound)] = float(line.rsplit(" ", 1)[1])
    return buckets


def bucket_quantile(
    before: dict[float, float], after: dict[float, float], q: float
) -> float | None:
    """The upper bound (ms) of the bucket holding quantile q of the observations in between."""
    counts = sorted((b, after[b] - before.get(b, 0.0)) for b in after)
    if not counts or counts[-1][1] <= 0:
        return None
    for bound, cumulative in counts:
        if cumulative >= q * counts[-1][1]:
            return bound * 1000
    return None


def max_event_id(db: psycopg.Connection) -> int:
    cur = db.execute("SELECT coalesce(max(id), 0) FROM control_plane.runtime_node_events")
    row = cur.fetchone()
    assert row is not None
    return int(row[0])


def pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 1)


async def main() -> None:
    base, database_url, roster_rows, beat_rows, out = sys.argv[1:6]
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 65536)), hard))
    url = urlsplit(base)
    host, port = url.hostname or "127.0.0.1", url.port or 80
    members = [line.split() for line in Path(roster_rows).read_text().splitlines() if line]
    nodes = [tuple(line.split()) for line in Path(beat_rows).read_text().splitlines() if line]
    db = psycopg.connect(database_url, autocommit=True)
    # Count the feed functions' calls (reloaded into every backend; reset at the end).
    db.execute("ALTER SYSTEM SET track_functions = 'pl'")
    db.execute("SELECT pg_reload_conf()")
    try:
        await measure(db, host, port, members, nodes, database_url, out)
    finally:
        db.execute("ALTER SYSTEM RESET track_functions")
        db.execute("SELECT pg_reload_conf()")
        db.close()


async def measure(
    db: psycopg.Connection,
    host: str,
    port: int,
    members: list[list[str]],
    nodes: list[tuple[str, ...]],
    database_url: str,
    out: str,
) -> None:
    await settle(db, [n for _, n in nodes])
    start_id = db.execute("SELECT coalesce(max(id), 0) FROM control_plane.runtime_node_events")
    after = int(start_id.fetchone()[0])  # type: ignore[index]
    followers = [
        Follower("sse" if i % 2 else "poll", members[i % len(members)][1],
                 members[i % len(members)][0], after)
        for i in range(SUBSCRIBERS)
    ]  # fmt: skip
    stop = asyncio.Event()
    result: dict[str, object] = {"subscribers": SUBSCRIBERS, "sessions": len(members)}

    # Backends report their transaction counts lazily (an idle one up to 10 s later): each
    # window starts STATS_FLUSH seconds after the activity before it.
    await asyncio.sleep(STATS_FLUSH)
    baseline, calls_baseline = await xacts_per_s(db, IDLE_WINDOW)
    polls = [f for f in followers if f.kind == "poll"]
    tasks = [asyncio.create_task(follow_poll(f, host, port, stop)) for f in polls]
    await asyncio.sleep(STATS_FLUSH)  # connected, parked, their first reads counted
    with_polls, calls_polls = await xacts_per_s(db, IDLE_WINDOW)
    sses = [f for f in followers if f.kind == "sse"]
    tasks += [asyncio.create_task(follow_sse(f, host, port, stop)) for f in sses]
    deadline = time.monotonic() + 60
    while not all(f.ready for f in sses) and time.monotonic() < deadline:
        await asyncio.sleep(0.5)
    await asyncio.sleep(STATS_FLUSH)
    # At least one keep-alive interval: each SSE stream re-checks its caller once per 15 s.
    with_all, calls_all = await xacts_per_s(db, max(IDLE_WINDOW, 16.0))
    result["idle_xacts_per_s"] = {
        "baseline": round(baseline, 1),
        "poll_followers_extra": round(with_polls - baseline, 1),
        "all_followers_extra": round(with_all - baseline, 1),
    }
    result["idle_feed_calls_per_s"] = {
        "none": round(calls_baseline, 1),
        "poll_followers": round(calls_polls, 1),
        "all_followers": round(calls_all, 1),
    }
    result["followers_ready"] = sum(f.ready for f in followers)

    produce_stop = asyncio.Event()
    lag_before = await delivery_lag_buckets(host, port)
    producer = asyncio.create_task(produce(host, port, nodes, database_url, produce_stop))  # type: ignore[arg-type]
    rss: list[float] = []
    boundaries = [after]  # round k holds the events with ids in (boundaries[k], boundaries[k+1]]
    for _ in range(ROUNDS):
        begun = time.monotonic()
        while time.monotonic() - begun < DURATION:
            await asyncio.sleep(1)
            if (value := app_rss_mib()) is not None:
                rss.append(value)
        boundaries.append(max_event_id(db))
    produce_stop.set()
    result["producer_requests"] = await producer
    last = max_event_id(db)
    boundaries[-1] = last  # requests in flight at the end belong to the last round
    expected: dict[str, set[int]] = {}
    for session, ids in db.execute(
        "SELECT session_id::text, array_agg(id) FROM control_plane.runtime_node_events"
        " WHERE id > %s AND id <= %s GROUP BY session_id",
        (after, last),
    ).fetchall():
        expected[session] = set(ids)
    # Drain: every follower has everything of its session, or DRAIN_S passed (then it missed).
    drain_until = time.monotonic() + DRAIN_S
    while time.monotonic() < drain_until and any(
        not expected.get(f.session, set()) <= set(f.ids) for f in followers
    ):
        await asyncio.sleep(0.5)
    result["drain_s"] = round(DRAIN_S - max(0.0, drain_until - time.monotonic()), 1)
    lag_after = await delivery_lag_buckets(host, port)
    result["server_delivery_lag_ms"] = {
        "p50_at_most": bucket_quantile(lag_before, lag_after, 0.5),
        "p99_at_most": bucket_quantile(lag_before, lag_after, 0.99),
        "within_200ms": round(
            (lag_after.get(0.2, 0) - lag_before.get(0.2, 0))
            / max(1.0, lag_after.get(float("inf"), 0) - lag_before.get(float("inf"), 0)),
            4,
        ),
    }
    stop.set()
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)

    kinds: dict[str, int] = dict(db.execute(
        "SELECT kind || '/' || actor, count(*) FROM control_plane.runtime_node_events"
        " WHERE id > %s AND id <= %s GROUP BY 1", (after, last),
    ).fetchall())  # fmt: skip
    missed = dup = 0
    for f in followers:
        got = [i for i in f.ids if i <= last]
        missed += len(expected.get(f.session, set()) - set(got))
        dup += len(got) - len(set(got))
    latencies = [x for f in followers for x in f.latencies_ms]
    per_round: list[list[float]] = [[] for _ in range(ROUNDS)]
    for f in followers:
        for event_id, latency in zip(f.ids, f.latencies_ms, strict=True):
            k = bisect.bisect_left(boundaries, event_id) - 1
            if 0 <= k < ROUNDS:
                per_round[k].append(latency)
    rounds = [{"p50": pct(v, 0.5), "p99": pct(v, 0.99), "deliveries": len(v)} for v in per_round]
    total_events = sum(len(v) for v in expected.values())
    result.update(
        {
            "duration_s": DURATION * ROUNDS,
            "events": total_events,
            "events_per_s": round(total_events / (DURATION * ROUNDS), 1),
            "events_by_kind": kinds,
            "deliveries": len(latencies),
            "latency_ms": {
                "p50": pct(latencies, 0.5),
                "p99": pct(latencies, 0.99),
                "max": pct(latencies, 1.0),
            },  # fmt: skip
            "latency_ms_rounds": rounds,
            "latency_ms_median_of_rounds": {
                q: statistics.median(x for r in rounds if (x := r[q]) is not None)
                if any(r[q] is not None for r in rounds)
                else None
                for q in ("p50", "p99")
            },  # fmt: skip
            "latency_ms_by_kind": {
                k: {"p50": pct(v, 0.5), "p99": pct(v, 0.99)}
                for k in ("sse", "poll")
                if (v := [x for f in followers if f.kind == k for x in f.latencies_ms])
            },
            "latency_ms_by_event": {
                k: {"n": len(v), "p50": pct(v, 0.5), "p99": pct(v, 0.99)}
                for k in sorted({k for f in followers for k in f.by_event})
                if (v := [x for f in followers for x in f.by_event.get(k, [])])
            },
            "missed": missed,
            "duplicated": dup,
            "follower_errors": sum(f.errors for f in followers),
            "app_rss_mib": {
                "median": statistics.median(rss) if rss else None,
                "max": max(rss) if rss else None,
            },  # fmt: skip
        }
    )
    if DUMP:
        with open(DUMP, "w") as dump:
            dump.write("arrival\tevent\tlatency_ms\tfollower\tkind\n")
            for i, f in enumerate(followers):
                for now, event_id, latency in f.trace:
                    dump.write(f"{now:.4f}\t{event_id}\t{latency:.1f}\t{i}\t{f.kind}\n")
    Path(out).write_text(json.dumps(result) + "\n")
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    with contextlib.suppress(ImportError):  # a faster loop: less of the measured lag is ours
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    asyncio.run(main())
