"""Drill: PostgreSQL stopped (fast or immediate) for ~20 s under load, then started again.

A fleet beats every 2 s while churn workers attach/declare/detach other nodes; the server is
never restarted. Timings are shortened (offline_after 12 s) so the outage outlasts
offline_after: without the sweep's gap guard the first sweep after the restart would mark the
whole fleet offline. That sweep is run explicitly the moment the database is back, before the
fleet's next beats land: the worst case.

Pass:
- every request sent during the outage gets a 2xx (answered before the stop took effect) or a
  503 `service.unavailable` with a numeric Retry-After; no 500, no other status, no client
  timeout, no transport error, at any point of the drill;
- the same server process answers 2xx again within a few seconds of the restart;
- every attach/declare/detach acknowledged before the stop is in the database afterwards (read
  before anyone writes those nodes again), and every one acknowledged after it at the end;
- every heartbeat acknowledged before the restart is still recorded (read while the fleet's
  beats are held back for that moment; heartbeats commit synchronously since 8cc9e38);
- no beating node is offline after the restart; the first sweep noticed the gap (it set
  sweep_state.resumed_at) and ran guarded: mode gap_grace, or stall_hold since no beat has
  landed yet at that moment (>= stall_min_nodes live nodes, none fresh).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import TypedDict

from drills import fleet, seed
from drills.harness import FAST_TIMINGS, Context, Verdict, connect, log, sweep_state, timings

BEATERS = 150
CHURN_WORKERS = 10
NODES_PER_WORKER = 2
WARM_SECONDS = 8.0
OUTAGE_SECONDS = 20.0
RECOVERY_GRACE = 5.0  # 503s allowed this long after the restart (pooled connections die once)
RECOVERY_SECONDS = 15.0  # > offline_after (12 s): any false offline would have happened


async def drill(ctx: Context, mode: str) -> Verdict:
    verdict = Verdict("db-freeze" if mode == "freeze" else f"db-restart-{mode}")
    if ctx.cluster is None:
        verdict.failures.append("no local cluster to stop and start (see the log above)")
        return verdict
    url = ctx.database_url
    server = ctx.ensure_server()
    pid = server.pid
    rid = seed.run_id()
    with timings(url, FAST_TIMINGS):
        beaters = seed.fleet(url, BEATERS, prefix=f"rs{mode[:2]}b-{rid}")
        # Churn nodes: members, not attached yet; `pre` before the stop, `post` from it on.
        churners = seed.fleet(
            url, 2 * CHURN_WORKERS * NODES_PER_WORKER, prefix=f"rs{mode[:2]}c-{rid}", attached=False
        )
        half = CHURN_WORKERS * NODES_PER_WORKER
        pre, post = churners[:half], churners[half:]
        try:
            await _run(ctx, verdict, mode, beaters, pre, post, pid)
        finally:
            ctx.cluster.recover()  # failed or interrupted mid-outage: the database comes back
            seed.detach_all(url, beaters + churners)
    return verdict


async def _run(
    ctx: Context,
    verdict: Verdict,
    mode: str,
    beaters: list[seed.Node],
    pre: list[seed.Node],
    post: list[seed.Node],
    pid: int,
) -> None:
    assert ctx.cluster is not None and ctx.server is not None
    cluster, url, server = ctx.cluster, ctx.database_url, ctx.server
    rec = fleet.Recorder()
    ledger = fleet.Ledger()
    stats = fleet.BeatStats()
    done = False
    outage = False
    hold = False  # beats held back while the restarted database is inspected

    def until() -> bool:
        return done

    def slices(worker: int) -> Callable[[], list[seed.Node]]:
        lo, hi = worker * NODES_PER_WORKER, (worker + 1) * NODES_PER_WORKER
        pre_slice, post_slice = pre[lo:hi], post[lo:hi]
        return lambda: post_slice if outage else pre_slice

    probes = fleet.Recorder()
    async with (
        fleet.client(server.base_url, connections=64) as http,
        fleet.client(server.base_url, connections=2) as ops,
    ):
        tasks = [asyncio.create_task(_probe(ops, probes, until))]
        tasks += [
            asyncio.create_task(
                fleet.beat_forever(
                    http,
                    rec,
                    node,
                    interval=2.0,
                    jitter=0.3,
                    until=until,
                    stats=stats,
                    paused=lambda: hold,
                )
            )
            for node in beaters
        ]
        tasks += [
            asyncio.create_task(fleet.churn(http, rec, ledger, slices(w), until=until))
            for w in range(CHURN_WORKERS)
        ]
        await asyncio.sleep(WARM_SECONDS)
        unbeaten = [n.node_id for n in beaters if n.node_id not in stats.last_ok]
        verdict.check(not unbeaten, f"{len(unbeaten)} node(s) never beat before the stop")

        # --- the outage -------------------------------------------------------------------
        pre_acked = dict(ledger.acked)
        t_stop = time.monotonic()
        outage = True  # churn moves to the `post` nodes: `pre` stays as the stop left it
        if mode == "freeze":
            log("freezing PostgreSQL (SIGSTOP)")
            cluster.freeze()
        else:
            log(f"stopping PostgreSQL (-m {mode})")
            await asyncio.to_thread(cluster.stop, mode)
        t_stopped = time.monotonic()
        await asyncio.sleep(max(0.0, t_stop + OUTAGE_SECONDS - time.monotonic()))
        hold = True
        t_start = time.monotonic()
        if mode == "freeze":
            log("thawing PostgreSQL (SIGCONT)")
            cluster.thaw()
        else:
            log("starting PostgreSQL")
            await asyncio.to_thread(cluster.start)
        t_started = time.monotonic()

        # The worst moment for the sweep: every node's last beat is older than offline_after.
        swept = await asyncio.to_thread(_sweep_now, url, [n.node_id for n in beaters])
        # `pre` nodes: nobody has written them since the stop. Compare with the ledger.
        lost = _lost_writes(url, pre, ledger)
        beats_lost = _lost_beats(url, rec, t_start)
        hold = False

        offline_seen = 0
        while time.monotonic() < t_started + RECOVERY_SECONDS:
            await asyncio.sleep(1.0)
            offline_seen = max(offline_seen, await asyncio.to_thread(_offline, url, beaters))
        done = True
        await asyncio.gather(*tasks)

    # --- verdict ------------------------------------------------------------------------------
    outcomes = rec.outcomes
    during = rec.between(t_stop, t_started)
    bad_during = [o for o in during if not (o.ok or o.unavailable)]
    # Answered with a 2xx while the server was fully down: impossible unless a write was faked.
    ok_while_down = [o for o in outcomes if o.ok and t_stopped < o.sent and o.done < t_start]
    others = [o for o in outcomes if not (o.ok or o.unavailable)]
    late_503 = [o for o in outcomes if o.status == 503 and o.sent > t_started + RECOVERY_GRACE]
    first_ok = min((o.done for o in outcomes if o.ok and o.sent >= t_started), default=None)
    post_lost = _lost_writes(url, post, ledger)
    final = seed.states(url, [n.node_id for n in beaters])
    not_online = [n for n, (_, health) in final.items() if health != "online"]
    with connect(url) as conn:
        state = sweep_state(conn)

    readyz = [o for o in probes.outcomes if o.op == "readyz"]
    bad_probes = [
        o
        for o in probes.outcomes
        if not (o.status == 200 or (o.op == "readyz" and o.status == 503))
    ]
    verdict.figures.update(
        requests=len(outcomes),
        outage_s=round(t_started - t_stop, 1),
        outage_503=sum(1 for o in during if o.unavailable),
        outage_other=len(bad_during),
        errors=len(others),
        recovered_s=round(first_ok - t_started, 2) if first_ok else "never",
        acked_before=len(pre_acked),
        acked_writes=ledger.acked_writes,
        lost=len(lost) + len(post_lost),
        beats_lost=len(beats_lost),
        swept_offline=swept["offline"],
        offline_after=offline_seen,
        sweep_mode=swept["mode"],
        readyz_503=sum(1 for o in readyz if o.status == 503),
        probe_errors=len(bad_probes),
    )
    verdict.check(not bad_probes, f"/healthz or /readyz answers: {_show(bad_probes)}")
    verdict.check(
        not bad_during, f"outage answers other than 2xx/503+Retry-After: {_show(bad_during)}"
    )
    verdict.check(not others, f"non-2xx/503 answers, timeouts or transport errors: {_show(others)}")
    verdict.check(not ok_while_down, f"{len(ok_while_down)} request(s) acknowledged while down")
    verdict.check(first_ok is not None, "no request succeeded after the restart")
    verdict.check(not late_503, f"{len(late_503)} 503(s) later than {RECOVERY_GRACE}s after start")
    verdict.check(server.alive() and server.pid == pid, "the server process did not survive")
    verdict.check(not lost, f"acknowledged writes missing after the restart: {lost[:5]}")
    verdict.check(not post_lost, f"acknowledged writes missing at the end: {post_lost[:5]}")
    verdict.check(
        swept["offline"] == 0, f"the first sweep marked {swept['offline']} node(s) offline"
    )
    verdict.check(swept["resumed"], "the first sweep after the restart did not set resumed_at")
    verdict.check(
        swept["mode"] in ("gap_grace", "stall_hold"),
        f"first sweep after the restart in mode {swept['mode']}, not an outage-guard mode",
    )
    verdict.check(not beats_lost, f"acknowledged heartbeats lost: {beats_lost[:3]}")
    verdict.check(offline_seen == 0, f"{offline_seen} beating node(s) offline after the restart")
    verdict.check(not not_online, f"{len(not_online)} beating node(s) not online at the end")
    rec.dump(ctx.work_dir / f"{verdict.name}.jsonl", t_stop)
    log(f"{verdict.name}: stop took {t_stopped - t_stop:.1f}s, start {t_started - t_start:.1f}s")
    log(f"{verdict.name}: tally {dict(rec.tally())}, sweep_state {state}")


async def _probe(http: fleet.Client, rec: fleet.Recorder, until: Callable[[], bool]) -> None:
    """A load balancer's view: /healthz stays 200, /readyz answers (503 while the database is
    away) and never hangs."""
    while not until():
        await fleet.call(http, rec, "healthz", "GET", "/healthz")
        await fleet.call(http, rec, "readyz", "GET", "/readyz")
        await asyncio.sleep(1.0)


class _Swept(TypedDict):
    offline: int
    mode: str
    resumed: bool


def _sweep_now(url: str, node_ids: list[str]) -> _Swept:
    with connect(url) as conn:
        rows = conn.execute(
            "SELECT node_id, health_state FROM control_plane.runtime_node_sweep()"
        ).fetchall()
        state = sweep_state(conn)
    mine = set(node_ids)
    return {
        "offline": sum(1 for r in rows if r["node_id"] in mine and r["health_state"] == "offline"),
        "mode": state["mode"],
        # The gap guard noticed the outage: this very sweep set resumed_at.
        "resumed": state["resumed_at"] is not None
        and abs((state["db_now"] - state["resumed_at"]).total_seconds()) < 5,
    }


def _lost_beats(url: str, rec: fleet.Recorder, before: float) -> list[str]:
    """Nodes whose presence is older than the last heartbeat acknowledged to them (heartbeats
    commit synchronously: an acknowledged beat must survive a crash). A beat is stamped with
    the database's now() after it was sent, so last_heartbeat_at >= its send time (same host
    clock) unless it was lost."""
    last_sent: dict[str, float] = {}
    for o in list(rec.outcomes):
        if o.op == "heartbeat" and o.status == 204 and o.sent < before:
            last_sent[o.node_id] = max(last_sent.get(o.node_id, 0.0), o.sent)
    with connect(url) as conn:
        rows = conn.execute(
            "SELECT node_id, extract(epoch FROM last_heartbeat_at)::float8 AS at"
            " FROM control_plane.runtime_node_presence WHERE node_id = ANY(%s)",
            (list(last_sent),),
        ).fetchall()
    stored = {r["node_id"]: r["at"] for r in rows}
    return [
        f"{node}: stored {stored.get(node)} < sent {fleet.wall(sent):.3f}"
        for node, sent in last_sent.items()
        if stored.get(node) is None or stored[node] < fleet.wall(sent) - 0.05
    ]


def _offline(url: str, nodes: list[seed.Node]) -> int:
    with connect(url) as conn:
        row = conn.execute(
            "SELECT count(*) AS n FROM control_plane.runtime_node_presence"
            " WHERE node_id = ANY(%s) AND health_state = 'offline'",
            ([n.node_id for n in nodes],),
        ).fetchone()
    return int(row["n"]) if row else 0


def _lost_writes(url: str, nodes: list[seed.Node], ledger: fleet.Ledger) -> list[str]:
    """Nodes whose slot state is not what their acknowledged writes (and ambiguous attempts
    since) allow."""
    actual = seed.states(url, [n.node_id for n in nodes])
    return [
        f"{n.node_id}: {actual[n.node_id][0]} not in {sorted(map(str, ledger.allowed(n.node_id)))}"
        for n in nodes
        if actual[n.node_id][0] not in ledger.allowed(n.node_id)
    ]


def _show(outcomes: list[fleet.Outcome], limit: int = 3) -> str:
    sample = [f"{o.op} {o.status or o.error} {o.code or ''}".strip() for o in outcomes[:limit]]
    return f"{len(outcomes)} e.g. {sample}"
