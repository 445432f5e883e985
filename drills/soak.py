"""Drill: a soak at the contract's timings — 10,000 nodes beating every 15 s (± 1.5 s jitter) for
three minutes, plus churn: workers that attach, declare, beat, update capabilities and detach or
revoke fresh nodes, a floor raiser (healthy sessions included: heartbeats are exempt), and a
roster reader; and change-feed followers (SSE and long-poll, drills/followers.py) on the churn
sessions and a few healthy ones.

Pass: zero 5xx, timeouts or transport errors and only the answers each operation may give
(declaration and capability update may meet a floor raised meanwhile: 409
version.floor_exceeded); no healthy node is ever seen degraded or offline (sampled every 5 s)
and the sweep made no transition while the fleet beat (sweep_state.total_transitions delta 0,
when nothing else live is in the database); pg_cron kept sweeping; the load generator kept its
schedule (otherwise the drill proves nothing); the app's RSS (server + workers, VmRSS) grows by
less than SOAK_RSS_GROWTH_MIB between the end of the first beat cycle and the end; every
follower observed every event the soak caused in its session, once and in order (compared with
runtime_node_events at the end).
"""

from __future__ import annotations

import asyncio
import os
import random
import time
from collections import Counter
from typing import Any

import httpx

from drills import fleet, followers, rawhttp, seed
from drills.harness import CONTRACT_TIMINGS, Context, Verdict, connect, log, sweep_state, timings

NODES = int(os.environ.get("DRILLS_SOAK_NODES", "10000"))
SECONDS = float(os.environ.get("DRILLS_SOAK_SECONDS", "180"))
INTERVAL, JITTER = 15.0, 1.5
CHURN_WORKERS = 8
SAMPLE_EVERY = 5.0
MAX_LATENESS = 5.0  # a beat sent this late means the generator, not the server, fell behind
RSS_GROWTH_MIB = float(os.environ.get("SOAK_RSS_GROWTH_MIB", "64"))

# What each operation may answer during the soak: status, or status:code.
ALLOWED = {
    "heartbeat": {"204"},
    "attach": {"200"},
    "declare": {"200", "version.floor_exceeded"},
    "capabilities": {"200", "version.floor_exceeded"},
    "detach": {"204"},
    "revoke": {"204"},
    "floor": {"200"},
    "roster": {"200"},
}


async def drill(ctx: Context) -> Verdict:
    verdict = Verdict("soak")
    url = ctx.database_url
    server = ctx.ensure_server()
    rid = seed.run_id()
    prefix = f"sk-{rid}"
    with timings(url, CONTRACT_TIMINGS):
        t0 = time.monotonic()
        healthy = seed.fleet(url, NODES, prefix=prefix)
        with connect(url) as conn:
            churners = seed.participants(conn, CHURN_WORKERS, f"drill soak churn {rid}")
            churn_sids = seed.sessions(conn, CHURN_WORKERS)
            seed.memberships(conn, [(s, p) for s, (p, _) in zip(churn_sids, churners, strict=True)])
        log(f"seeded {NODES} nodes in {time.monotonic() - t0:.1f}s")
        churn_nodes: list[seed.Node] = []
        try:
            await _run(ctx, verdict, prefix, healthy, churners, churn_sids, churn_nodes)
        finally:
            seed.detach_all(url, healthy + churn_nodes)
    verdict.figures["server_pid"] = server.pid
    return verdict


async def _run(
    ctx: Context,
    verdict: Verdict,
    prefix: str,
    healthy: list[seed.Node],
    churners: list[tuple[str, str]],
    churn_sids: list[str],
    churn_nodes: list[seed.Node],
) -> None:
    url = ctx.database_url
    assert ctx.server is not None
    server = ctx.server
    rec = fleet.Recorder(keep_all=False)
    stats = fleet.BeatStats()
    sessions = sorted({n.session_id for n in healthy}) + churn_sids
    floors = dict.fromkeys(sessions, 0)  # session → minor of its floor "1.<minor>" (0: none)
    with connect(url) as conn:
        before = sweep_state(conn)
        feed_start = followers.start_cursor(conn)
        foreign = conn.execute(
            "SELECT count(*) AS n FROM control_plane.runtime_node_presence"
            " WHERE health_state <> 'offline' AND left(node_id, %s) <> %s",
            (len(prefix), prefix),
        ).fetchone()
    foreign_live = int(foreign["n"]) if foreign else 0
    rss = {"start": server.rss_kib()}
    samples: list[dict[str, int]] = []
    end = time.monotonic() + SECONDS

    def until() -> bool:
        return time.monotonic() >= end

    limits = max(64, NODES // 100)
    beats = rawhttp.RawPool("127.0.0.1", server.port, connections=limits)
    watched = [(sid, token) for sid, (_, token) in zip(churn_sids, churners, strict=True)]
    watched += [(n.session_id, n.token) for n in {n.session_id: n for n in healthy}.values()][:4]
    subscribers = [
        followers.Follower(kind, sid, token, feed_start)
        for sid, token in watched
        for kind in ("sse", "poll")
    ]
    feed_done = False
    async with (
        fleet.client(server.base_url, connections=32) as http,
        httpx.AsyncClient(base_url=server.base_url) as feed_http,
    ):
        following = [
            asyncio.create_task(followers.run(feed_http, f, lambda: feed_done)) for f in subscribers
        ]
        tasks = [
            asyncio.create_task(
                rawhttp.beat_forever(
                    beats, rec, n, interval=INTERVAL, jitter=JITTER, until=until, stats=stats
                )
            )
            for n in healthy
        ]
        tasks += [
            asyncio.create_task(_churn(http, rec, w, churners[w], churn_sids[w], prefix,
                                       floors, churn_nodes, ctx.admin_token, until))
            for w in range(CHURN_WORKERS)
        ]  # fmt: skip
        tasks.append(asyncio.create_task(_raise_floors(http, rec, floors, ctx.admin_token, until)))
        tasks.append(asyncio.create_task(_read_rosters(http, rec, healthy, until)))
        warm_at = time.monotonic() + INTERVAL + JITTER + 5
        while not until():
            await asyncio.sleep(SAMPLE_EVERY)
            samples.append(await asyncio.to_thread(_health, url, f"{prefix}-"))
            if "warm" not in rss and time.monotonic() >= warm_at:
                rss["warm"] = server.rss_kib()
            log(f"soak: {samples[-1]} rss {server.rss_kib() // 1024} MiB")
        rss["end"] = server.rss_kib()
        # Read the end state while the fleet is still beating: a node whose next beat was due
        # after the end would otherwise age past degraded_after while the drill winds down.
        with connect(url) as conn:
            after = sweep_state(conn)
            slots = conn.execute(
                "SELECT count(*) AS n FROM control_plane.runtime_node_attachments"
                " WHERE node_id = ANY(%s) AND state <> 'online'",
                ([n.node_id for n in healthy],),
            ).fetchone()
        final = await asyncio.to_thread(_health, url, f"{prefix}-")
        for task in tasks[: len(healthy)]:
            task.cancel()  # beat loops sleep until their next slot: do not wait for it
        await asyncio.gather(*tasks, return_exceptions=True)
        await beats.close()
        with connect(url) as conn:
            feed_end = followers.start_cursor(conn)
        await asyncio.sleep(3)  # long-polls answer within 1 s of a commit, SSE at once
        feed_done = True
        await followers.stop_all(following)
        with connect(url) as conn:
            feed_check = followers.check(conn, subscribers, feed_end)
            feed_events = conn.execute(
                "SELECT count(*) AS n FROM control_plane.runtime_node_events"
                " WHERE id > %s AND id <= %s AND session_id = ANY(%s::uuid[])",
                (feed_start, feed_end, sorted({f.session_id for f in subscribers})),
            ).fetchone()
    unexpected = Counter(
        f"{o.op}:{o.error or o.code or o.status}"
        for o in rec.outcomes
        if not o.ok and (o.code or str(o.status)) not in ALLOWED.get(o.op, set())
    )
    beat_latencies = rec.latencies.get("heartbeat", [])
    transitions = after["total_transitions"] - before["total_transitions"]
    runs = after["total_runs"] - before["total_runs"]
    bad_health = max((s.get("degraded", 0) + s.get("offline", 0) for s in samples), default=0)
    growth_mib = (rss["end"] - rss.get("warm", rss["start"])) / 1024
    verdict.figures.update(
        nodes=NODES,
        seconds=SECONDS,
        requests=sum(rec.counts.values()),
        beats=len(beat_latencies),
        beat_p50_ms=round(1000 * fleet.percentile(beat_latencies, 0.5), 1),
        beat_p99_ms=round(1000 * fleet.percentile(beat_latencies, 0.99), 1),
        churn_ops=sum(n for (op, _), n in rec.counts.items() if op != "heartbeat"),
        floor_refusals=sum(n for (_, c), n in rec.counts.items() if c == "version.floor_exceeded"),
        unexpected=sum(unexpected.values()),
        unhealthy_seen=bad_health,
        online_end=final.get("online", 0),
        sweeps=runs,
        transitions=transitions,
        foreign_live=foreign_live,
        lateness_s=round(stats.max_lateness, 2),
        rss_start_mib=rss["start"] // 1024,
        rss_warm_mib=rss.get("warm", 0) // 1024,
        rss_end_mib=rss["end"] // 1024,
        followers=len(subscribers),
        feed_events=int(feed_events["n"]) if feed_events else 0,
        feed_deliveries=sum(len(f.ids) for f in subscribers),
        feed_reconnects=sum(f.reconnects for f in subscribers),
        feed_errors=sum(len(f.errors) for f in subscribers),
        **{f"feed_{k}": v for k, v in feed_check.items()},
    )
    verdict.check(not unexpected, f"unexpected answers: {dict(unexpected.most_common(5))}")
    verdict.check(bad_health == 0, f"healthy nodes seen degraded/offline: {samples}")
    verdict.check(final.get("online", 0) == NODES, f"at the end: {final} of {NODES}")
    verdict.check(slots is not None and slots["n"] == 0, "healthy slots left online state")
    verdict.check(runs >= SECONDS / 5 / 2, f"only {runs} sweeps in {SECONDS}s: pg_cron?")
    if foreign_live == 0:
        verdict.check(transitions == 0, f"the sweep made {transitions} transition(s)")
    verdict.check(
        stats.max_lateness < MAX_LATENESS,
        f"the load generator fell {stats.max_lateness:.1f}s behind: the drill is not valid",
    )
    verdict.check(
        growth_mib < RSS_GROWTH_MIB, f"app RSS grew {growth_mib:.0f} MiB after warm-up: {rss}"
    )
    verdict.check(
        not any(feed_check.values()),
        f"followers missed or repeated events: {feed_check}",
    )
    verdict.check(
        bool(feed_events and feed_events["n"]), "the soak caused no event in the watched sessions"
    )
    log(f"soak counts: {dict(rec.counts.most_common(12))}")


def _health(url: str, prefix: str) -> dict[str, int]:
    with connect(url) as conn:
        rows = conn.execute(
            "SELECT health_state, count(*) AS n FROM control_plane.runtime_node_presence"
            " WHERE left(node_id, %s) = %s GROUP BY health_state",
            (len(prefix), prefix),
        ).fetchall()
    return {r["health_state"]: int(r["n"]) for r in rows}


async def _churn(
    http: httpx.AsyncClient,
    rec: fleet.Recorder,
    worker: int,
    member: tuple[str, str],
    session_id: str,
    prefix: str,
    floors: dict[str, int],
    created: list[seed.Node],
    admin_token: str,
    until: Any,
) -> None:
    """Fresh node per cycle (a revoked node id is dead for good): attach (at or below the
    session's floor), declare, beat, update capabilities, then detach or revoke."""
    pid, token = member
    cycle = 0
    await asyncio.sleep(random.uniform(0, 2))
    while not until():
        node = seed.Node(f"{prefix}c-w{worker}-{cycle}", token, pid, session_id)
        created.append(node)
        cycle += 1
        version = random.choice(["1.0", f"1.{floors[session_id] + 1}"])
        if not (await fleet.attach(http, rec, node, version)).ok:
            await asyncio.sleep(1)
            continue
        await fleet.declare(http, rec, node)
        for _ in range(2):
            await fleet.heartbeat(http, rec, node)
            await asyncio.sleep(1)
        await fleet.update_capabilities(http, rec, node, {"cycle": cycle})
        if random.random() < 0.25:
            await fleet.revoke(http, rec, node, admin_token)
        else:
            await fleet.detach(http, rec, node)
        await asyncio.sleep(0.5)


async def _raise_floors(
    http: httpx.AsyncClient, rec: fleet.Recorder, floors: dict[str, int], admin: str, until: Any
) -> None:
    """Every 2 s raise one session's floor by a minor version (healthy sessions too)."""
    while not until():
        await asyncio.sleep(2)
        session_id = random.choice(list(floors))
        floors[session_id] += 1
        await fleet.raise_floor(http, rec, session_id, f"1.{floors[session_id]}", admin)


async def _read_rosters(
    http: httpx.AsyncClient, rec: fleet.Recorder, healthy: list[seed.Node], until: Any
) -> None:
    """A scheduler reading a session's roster (100 nodes) every second."""
    while not until():
        await asyncio.sleep(1)
        reader = random.choice(healthy)
        await fleet.call(
            http, rec, "roster", "GET", f"/v1/sessions/{reader.session_id}/runtime-nodes",
            reader.node_id, reader.headers,
        )  # fmt: skip
