"""Drill: noisy neighbour — one token floods rosters and attaches at 10× its rate limit while
the fleet beats.

Shortened timings (heartbeat 2 s, degraded 6 s, offline 12 s). DRILLS_NOISY_NODES (500) nodes
beat every 2 s ± 0.3 s over persistent connections. After two beat cycles of warm-up (in which
the neighbour's routes are used a few times too: the first call on each pooled connection
compiles and plans its functions, a cold start and not load), ROUNDS
rounds alternate PHASE_S seconds of quiet (the unloaded heartbeat latency) and PHASE_S seconds
of flood, in which one participant's token sends rosters of a 100-node session and attaches of
its own node, each at 10 × the server's per-token limit (RATE_LIMIT_READS_PER_S /
RATE_LIMIT_WRITES_PER_S defaults: 10/s each → 100/s each). Alternating phases puts the same
background noise of a shared machine into both measurements.

Pass: heartbeat p99 during the flood ≤ 2 × its unloaded p99; every beat answered 204; no
healthy node is ever seen degraded or offline (sampled every second); the flood is answered only
200 or 429/503 with a numeric Retry-After, and the requests it gets through stay within its
limit (rate × time + burst, with 20 % slack for the per-worker shares).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import multiprocessing as mp
import os
import random
import time
from collections import Counter
from collections.abc import Callable

from drills import fleet, rawhttp, seed
from drills.harness import FAST_TIMINGS, Context, Verdict, connect, log, timings

NODES = int(os.environ.get("DRILLS_NOISY_NODES", "500"))
PHASE_S = float(os.environ.get("DRILLS_NOISY_PHASE_S", "8"))
ROUNDS = int(os.environ.get("DRILLS_NOISY_ROUNDS", "3"))
FLOOD_S = PHASE_S * ROUNDS
INTERVAL, JITTER = 2.0, 0.3
LIMIT_PER_S = 10.0  # the server's default RATE_LIMIT_READS_PER_S and RATE_LIMIT_WRITES_PER_S
BURST_S = 3.0  # its RATE_LIMIT_BURST_S
FLOOD_FACTOR = 10
WARMUP_REQUESTS = 16  # per kind, before the first round (within the rate limit's burst)
# What the neighbour floods (diagnosis: one kind at a time).
KINDS = tuple(os.environ.get("DRILLS_NOISY_KINDS", "roster,attach").split(","))


async def drill(ctx: Context) -> Verdict:
    verdict = Verdict("noisy-neighbour")
    url = ctx.database_url
    server = ctx.ensure_server()
    rid = seed.run_id()
    prefix = f"nn-{rid}"
    with timings(url, FAST_TIMINGS):
        nodes = seed.fleet(url, NODES, prefix=prefix)
        with connect(url) as conn:
            ((noisy_pid, noisy_token),) = seed.participants(conn, 1, f"drill noisy {rid}")
            seed.memberships(conn, [(nodes[0].session_id, noisy_pid)])
        noisy = seed.Node(f"{prefix}-noisy", noisy_token, noisy_pid, nodes[0].session_id)
        try:
            await _run(server.port, verdict, nodes, noisy, url, prefix)
        finally:
            seed.detach_all(url, [*nodes, noisy])
    return verdict


async def _run(
    port: int, verdict: Verdict, nodes: list[seed.Node], noisy: seed.Node, url: str, prefix: str
) -> None:
    beats_rec = fleet.Recorder()
    stats = fleet.BeatStats()
    pool = rawhttp.RawPool("127.0.0.1", port, connections=max(32, NODES // 20))
    t0 = time.monotonic()
    # Two beat cycles of warm-up, in which the neighbour also sends a few admitted rosters and
    # attaches (WARMUP_REQUESTS): the first use of each route on each pooled connection compiles
    # its PL/pgSQL and plans (a one-off ~0.15 s stall of the beats, measured), which is a cold
    # start, not the flood's load.
    t_start = t0 + 2 * (INTERVAL + JITTER)
    # (quiet start, flood start, flood end) per round
    rounds = [
        (
            t_start + 2 * r * PHASE_S,
            t_start + (2 * r + 1) * PHASE_S,
            t_start + (2 * r + 2) * PHASE_S,
        )
        for r in range(ROUNDS)
    ]
    t_end = rounds[-1][2]

    def until() -> bool:
        return time.monotonic() >= t_end

    beaters = [
        asyncio.create_task(
            rawhttp.beat_forever(
                pool, beats_rec, n, interval=INTERVAL, jitter=JITTER, until=until, stats=stats
            )
        )
        for n in nodes
    ]
    unhealthy = 0
    log(f"noisy: {ROUNDS} rounds of {PHASE_S:.0f} s quiet, {PHASE_S:.0f} s flood "
        f"({FLOOD_FACTOR}× the limit on rosters and attaches)")  # fmt: skip
    # The neighbour is another client: its own process (CLOCK_MONOTONIC is system-wide), so
    # its event loop does not delay the fleet's and the beats measure the server.
    with concurrent.futures.ProcessPoolExecutor(1, mp_context=mp.get_context("spawn")) as ex:
        flood = asyncio.get_running_loop().run_in_executor(ex, _flood_process, port, noisy, rounds)
        while not until():
            health = await asyncio.to_thread(_health, url, prefix)
            if time.monotonic() > t0 + INTERVAL + JITTER:
                unhealthy = max(unhealthy, health.get("degraded", 0) + health.get("offline", 0))
            await asyncio.sleep(1.0)
        await asyncio.gather(*beaters, return_exceptions=True)
        await pool.close()
        flood_rec = fleet.Recorder()
        for outcome in await flood:
            flood_rec.add(outcome)

    if dump := os.environ.get("DRILLS_NOISY_DUMP"):  # diagnosis: op, sent (s), ms, status
        with open(dump, "w") as out:
            for o in (*beats_rec.outcomes, *flood_rec.outcomes):
                at, ms = o.sent - t_start, 1000 * (o.done - o.sent)
                out.write(f"{o.op}\t{at:.4f}\t{ms:.2f}\t{o.status}\n")
    quiet = [o.done - o.sent for q, f, _ in rounds for o in beats_rec.between(q, f) if o.ok]
    loaded = [o.done - o.sent for _, f, e in rounds for o in beats_rec.between(f, e) if o.ok]
    failed_beats = [o for o in beats_rec.outcomes if not o.ok]
    p99_quiet = fleet.percentile(quiet, 0.99)
    p99_loaded = fleet.percentile(loaded, 0.99)
    flood_answers = Counter(f"{o.op}:{o.code or o.status}" for o in flood_rec.outcomes)
    bad_flood = [
        o
        for o in flood_rec.outcomes
        if not (o.ok or (o.status in (429, 503) and (o.retry_after or "").isdigit()))
    ]
    allowed = LIMIT_PER_S * FLOOD_S + LIMIT_PER_S * BURST_S * ROUNDS  # refilled when quiet
    through = {kind: sum(1 for o in flood_rec.outcomes if o.op == kind and o.ok) for kind in KINDS}
    sent = {kind: sum(1 for o in flood_rec.outcomes if o.op == kind) for kind in through}
    verdict.figures.update(
        nodes=NODES,
        beats=len(quiet) + len(loaded),
        beat_p50_quiet_ms=round(1000 * fleet.percentile(quiet, 0.5), 1),
        beat_p99_quiet_ms=round(1000 * p99_quiet, 1),
        beat_p99_flood_ms=round(1000 * p99_loaded, 1),
        beat_p50_flood_ms=round(1000 * fleet.percentile(loaded, 0.5), 1),
        flood_sent="+".join(str(sent[k]) for k in KINDS),
        flood_ok="+".join(str(through[k]) for k in KINDS),
        limited=sum(1 for o in flood_rec.outcomes if o.status == 429),
        shed=sum(1 for o in flood_rec.outcomes if o.status == 503),
        beat_failures=len(failed_beats),
        unhealthy_seen=unhealthy,
    )
    log(f"noisy: flood answers {dict(flood_answers)}")
    verdict.check(
        p99_loaded <= 2 * p99_quiet,
        f"heartbeat p99 {1000 * p99_loaded:.1f} ms under the flood > 2 × {1000 * p99_quiet:.1f} ms",
    )
    verdict.check(not failed_beats, f"{len(failed_beats)} beats not 204: "
                  f"{[(o.status, o.code, o.error) for o in failed_beats[:3]]}")  # fmt: skip
    verdict.check(unhealthy == 0, f"{unhealthy} healthy node(s) seen degraded/offline")
    verdict.check(not bad_flood, f"flood answers other than 200/429/503+Retry-After: "
                  f"{[(o.op, o.status, o.code) for o in bad_flood[:3]]}")  # fmt: skip
    for kind, n in through.items():
        verdict.check(n <= 1.2 * allowed, f"{n} {kind}s got through, limit allows ~{allowed:.0f}")
        enough = sent[kind] >= 0.8 * FLOOD_FACTOR * LIMIT_PER_S * FLOOD_S
        verdict.check(enough, f"the flood sent only {sent[kind]} {kind}s: the drill is invalid")


def _flood_process(
    port: int, noisy: seed.Node, rounds: list[tuple[float, float, float]]
) -> list[fleet.Outcome]:
    """In a child process: both floods during the flood phases; every outcome. At the lowest
    CPU priority: the neighbour is another machine, whose own CPU is not the server's (on this
    shared box it would otherwise slow the server and the fleet's generator alike)."""
    os.nice(19)

    def until() -> bool:
        return time.monotonic() >= rounds[-1][2]

    def flooding() -> bool:
        now = time.monotonic()
        return any(f <= now < e for _, f, e in rounds)

    async def main() -> list[fleet.Outcome]:
        rec = fleet.Recorder()
        pool = rawhttp.RawPool("127.0.0.1", port, connections=32)
        warm_until = rounds[0][0] - 0.5  # never inside a measured phase
        if time.monotonic() < warm_until:
            warm = fleet.Recorder()  # not the flood's: its outcomes are not counted
            await asyncio.gather(
                *(
                    pool.send(warm, kind, noisy.node_id, _request(pool, noisy, kind))
                    for kind in KINDS
                    for _ in range(WARMUP_REQUESTS)
                )
            )
        await asyncio.sleep(max(0.0, rounds[0][0] - time.monotonic()))
        await asyncio.gather(*(_flood(pool, rec, noisy, kind, until, flooding) for kind in KINDS))
        await pool.close()
        return rec.outcomes

    return asyncio.run(main())


async def _flood(
    pool: rawhttp.RawPool,
    rec: fleet.Recorder,
    noisy: seed.Node,
    kind: str,
    until: Callable[[], bool],
    flooding: Callable[[], bool],
) -> None:
    """FLOOD_FACTOR × the limit, paced evenly, each request fired without waiting for the
    previous answer (a misbehaving client does not wait)."""
    request = _request(pool, noisy, kind)
    period = 1.0 / (FLOOD_FACTOR * LIMIT_PER_S)
    due = time.monotonic() + random.uniform(0, period)
    pending: set[asyncio.Task[fleet.Outcome]] = set()
    while not until():
        delay = due - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        if not flooding():
            due = time.monotonic() + period
            await asyncio.sleep(0.05)
            continue
        task = asyncio.create_task(pool.send(rec, kind, noisy.node_id, request))
        pending.add(task)
        task.add_done_callback(pending.discard)
        due += period
    await asyncio.gather(*pending, return_exceptions=True)


def _request(pool: rawhttp.RawPool, noisy: seed.Node, kind: str) -> bytes:
    """The neighbour's request of `kind`: a roster of its session, or an attach of its node."""
    if kind == "roster":
        return pool.request("GET", f"/v1/sessions/{noisy.session_id}/runtime-nodes", noisy.token)
    return pool.request(
        "POST",
        f"/v1/sessions/{noisy.session_id}/runtime-nodes",
        noisy.token,
        {
            "participantId": noisy.participant_id,
            "nodeId": noisy.node_id,
            "clientVersion": "1.0",
            "capabilities": {"noisy": True},
            "healthState": "online",
        },
    )


def _health(url: str, prefix: str) -> dict[str, int]:
    with connect(url) as conn:
        rows = conn.execute(
            "SELECT health_state, count(*) AS n FROM control_plane.runtime_node_presence"
            " WHERE left(node_id, %s) = %s AND node_id <> %s GROUP BY health_state",
            (len(prefix) + 1, prefix + "-", prefix + "-noisy"),
        ).fetchall()
    return {r["health_state"]: int(r["n"]) for r in rows}
