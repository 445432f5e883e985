"""The HA drills (docs/deploy.md): each returns a Verdict whose line is
`drill <name>: pass|fail <figures>`.

Bounds, and why:
- FAILOVER_BOUND_S = 30: a hard-killed primary holds the leader key until its TTL (20 s) runs
  out; a replica notices within one loop_wait (2 s), promotes (~1 s), and the pools reconnect at
  the next request. 30 s leaves ~7 s for a loaded 2-core machine. It is well inside
  offline_after (60 s): no daemon can be marked offline by a failover alone.
- SWITCHOVER_503_BOUND_S = 8: a planned switchover stops the old primary cleanly and promotes the
  synchronous standby at once (measured 2.5-4.2 s); 8 s is "a few seconds" with margin.
- HANG_BOUND_S = 12: the pool's deadline (8 s) plus 4 s for the client side of a machine whose
  2 cores are shared with other work (load average 7-8 measured during runs).
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from typing import Any

from drills.ha.load import Load, now
from drills.ha.topology import MEMBERS, Topology
from drills.harness import REPO_ROOT, Verdict, connect, log
from drills.restart import _offline, _show

FAILOVER_BOUND_S = 30.0
SWITCHOVER_503_BOUND_S = 8.0
HANG_BOUND_S = 12.0
SWEEP_RESUME_BOUND_S = 80.0  # pg_cron 1.4 starts its loop on the next full minute (+ failover)
WATCH_AFTER_SWEEP_S = 22.0  # > offline_after of the drill timings (HA_TIMINGS: 20 s)
# Drill timings: beats every 2 s, offline after 20 s (10 missed beats: a starved load generator
# on a shared machine is not mistaken for a dead fleet), sweep every second.
HA_TIMINGS: dict[str, Any] = {
    "heartbeat_interval": "2 seconds",
    "degraded_after": "10 seconds",
    "offline_after": "20 seconds",
    "sweep_interval": "1 second",
    "gap_grace": "15 seconds",
    "stall_min_nodes": 10,
}
WARM_S = 5.0


def _sweep_finished_epoch(url: str) -> float | None:
    try:
        with connect(url) as conn:
            row = conn.execute(
                "SELECT extract(epoch FROM last_finished_at)::float8 AS t, mode,"
                " extract(epoch FROM resumed_at)::float8 AS resumed"
                " FROM control_plane.sweep_state"
            ).fetchone()
    except Exception:  # noqa: BLE001 - the primary may be between members
        return None
    return float(row["t"]) if row and row["t"] is not None else None


async def wait_sweep_after(url: str, wall: float, timeout: float) -> float | None:
    """Seconds until a sweep finished after wall-clock `wall` (None: not within timeout)."""
    start = now()
    while now() - start < timeout:
        t = await asyncio.to_thread(_sweep_finished_epoch, url)
        if t is not None and t > wall:
            return t - wall
        await asyncio.sleep(1.0)
    return None


def _sweep_state(url: str) -> dict[str, Any]:
    with connect(url) as conn:
        row = conn.execute(
            "SELECT mode, resumed_at, last_finished_at, now() AS db_now"
            " FROM control_plane.sweep_state"
        ).fetchone()
    return dict(row) if row else {}


async def wait_writes_back(load: Load, after: float, timeout: float) -> list[float | None]:
    start = now()
    while now() - start < timeout:
        back = load.writes_back(after)
        if all(b is not None for b in back):
            return back
        await asyncio.sleep(0.2)
    return load.writes_back(after)


async def watch_offline(url: str, load: Load, seconds: float) -> int:
    worst = 0
    end = now() + seconds
    while now() < end:
        worst = max(worst, await asyncio.to_thread(_offline, url, load.beaters))
        await asyncio.sleep(1.0)
    return worst


def _fmt_back(back: list[float | None]) -> str:
    return "/".join("never" if b is None else f"{b:.1f}" for b in back)


def _common_checks(v: Verdict, load: Load, url: str) -> None:
    bad = load.bad()
    hangs = [o for o in load.outcomes if o.done - o.sent > HANG_BOUND_S or o.error == "timeout"]
    lost_writes, lost_beats = load.lost(url, now())
    v.figures.update(
        requests=len(load.outcomes),
        acked_writes=load.ledger.acked_writes,
        status_503=len(load.unavailable()),
        other_errors=len(bad),
        lost=len(lost_writes) + len(lost_beats),
        max_latency_s=round(load.max_latency(), 2),
    )
    v.check(not bad, f"answers other than 2xx / 503 + Retry-After: {_show(bad)}")
    v.check(
        not hangs,
        f"{len(hangs)} request(s) took longer than {HANG_BOUND_S}s: "
        + ", ".join(f"{o.op} {o.status or o.error} {o.done - o.sent:.1f}s" for o in hangs[:4]),
    )
    if hangs:
        t0 = min(o.sent for o in load.outcomes)
        log("slow: " + ", ".join(f"{o.op}@{o.sent - t0:.1f}+{o.done - o.sent:.1f}" for o in hangs))
    v.check(not lost_writes, f"acknowledged slot writes missing: {lost_writes[:3]}")
    v.check(not lost_beats, f"acknowledged heartbeats missing: {lost_beats[:3]}")


# --- rolling app restart ---------------------------------------------------------------------


async def rolling_restart(topo: Topology, rid: str) -> Verdict:
    """Both app instances restarted one after the other (SIGTERM → stop accepting → drain →
    exit, then start) under load through HAProxy."""
    v = Verdict("rolling-app-restart")
    url = topo.database_url
    load = Load([topo.lb_url], url, f"hr{rid}")
    load.seed()
    try:
        await load.start()
        await asyncio.sleep(WARM_S)
        restarts: list[float] = []
        for app in ("a1", "a2"):
            old_pid = topo.app_pid(app)
            t0 = now()
            await asyncio.to_thread(topo.stop_app, app)
            drained = now() - t0
            await asyncio.to_thread(topo.start_app, app)
            restarts.append(now() - t0)
            v.check(topo.app_pid(app) not in (None, old_pid), f"{app} was not restarted")
            log(f"{app}: drained and exited in {drained:.1f}s, serving again {restarts[-1]:.1f}s")
            await asyncio.sleep(3.0)  # HAProxy marks it up (rise 2 x 500 ms) before the next
        await load.stop()
        _common_checks(v, load, url)
        v.figures["restart_s"] = "/".join(f"{r:.1f}" for r in restarts)
        v.check(not load.unavailable(), f"{len(load.unavailable())} 503(s) during the restarts")
    finally:
        await load.stop()
        load.cleanup()
    return v


# --- planned switchover ----------------------------------------------------------------------


async def switchover(topo: Topology, rid: str) -> Verdict:
    v = Verdict("switchover")
    url = topo.database_url
    load = Load(topo.app_urls, url, f"hs{rid}")
    load.seed()
    try:
        await load.start()
        await asyncio.sleep(WARM_S)
        leader, candidate = topo.primary(), topo.sync_standby()
        if leader is None or candidate is None:
            v.failures.append(f"no primary/sync standby to switch over ({leader}, {candidate})")
            return v
        t0 = now()
        status, body = await asyncio.to_thread(topo.switchover, leader, candidate)
        v.check(status == 200, f"switchover refused: {status} {body}")
        new, t_primary = await asyncio.to_thread(topo.wait_primary, (candidate,), 30.0)
        back = await wait_writes_back(load, t_primary, 20.0)
        await asyncio.sleep(3.0)
        await load.stop()
        _common_checks(v, load, url)
        window = load.unavailable_window()
        v.figures.update(
            switched=f"{leader}->{new}",
            new_primary_s=round(t_primary - t0, 1),
            writes_back_s=_fmt_back([None if b is None else b + t_primary - t0 for b in back]),
            window_503_s=round(window, 1),
        )
        v.check(new == candidate, f"{candidate} did not become primary")
        v.check(window <= SWITCHOVER_503_BOUND_S, f"503s over {window:.1f}s")
        v.check(all(b is not None for b in back), "an app instance did not write again")
        v.check(
            await asyncio.to_thread(topo.wait_healthy, 60.0),
            "the old primary did not rejoin as a streaming replica",
        )
    finally:
        await load.stop()
        load.cleanup()
    return v


# --- primary crash, then the old primary returns --------------------------------------------


async def primary_crash(topo: Topology, rid: str) -> tuple[Verdict, Verdict]:
    v = Verdict("primary-crash")
    back_v = Verdict("old-primary-returns")
    url = topo.database_url
    load = Load(topo.app_urls, url, f"hk{rid}")
    load.seed()
    old: str | None = None
    try:
        await load.start()
        await asyncio.sleep(WARM_S)
        old = topo.primary()
        if old is None:
            v.failures.append("no primary before the crash")
            return v, back_v
        pids_before = [topo.app_pid(a) for a in ("a1", "a2")]
        t_kill, wall_kill = now(), time.time()
        topo.kill_member(old)
        others = tuple(m for m in MEMBERS if m != old)
        new, t_primary = await asyncio.to_thread(topo.wait_primary, others, 60.0)
        wall_primary = wall_kill + (t_primary - t_kill)
        back = await wait_writes_back(load, t_primary, 20.0)
        log(f"new primary {new} {t_primary - t_kill:.1f}s after the kill; waiting for the sweep")
        sweep_s = await wait_sweep_after(url, wall_primary, SWEEP_RESUME_BOUND_S)
        state = await asyncio.to_thread(_sweep_state, url)
        offline = await watch_offline(url, load, WATCH_AFTER_SWEEP_S)
        await load.stop()
        _common_checks(v, load, url)
        no_primary = [
            sum("no primary reachable" in r for r in load.readyz_reasons(i, t_kill, t_primary))
            for i in range(len(load.targets))
        ]
        v.figures["readyz_no_primary"] = "/".join(map(str, no_primary))
        v.check(all(no_primary), f"/readyz did not report 'no primary reachable': {no_primary}")
        resumed = state.get("resumed_at")
        guarded = resumed is not None and resumed.timestamp() >= wall_kill
        v.figures.update(
            killed=old,
            new_primary=new,
            new_primary_s=round(t_primary - t_kill, 1),
            writes_back_s=_fmt_back([None if b is None else b + t_primary - t_kill for b in back]),
            window_503_s=round(load.unavailable_window(), 1),
            sweep_resumed_s=round(sweep_s, 1) if sweep_s is not None else "never",
            gap_guard=guarded,
            offline_after=offline,
        )
        v.check(new is not None, "no new primary")
        v.check(t_primary - t_kill <= FAILOVER_BOUND_S, f"new primary after > {FAILOVER_BOUND_S}s")
        v.check(
            all(b is not None and b + t_primary - t_kill <= FAILOVER_BOUND_S + 5 for b in back),
            f"an app instance did not write again in time: {back}",
        )
        v.check([topo.app_pid(a) for a in ("a1", "a2")] == pids_before, "an app was restarted")
        v.check(sweep_s is not None, "the sweep did not run again on the new primary")
        v.check(guarded, "the first sweep after the failover did not set resumed_at (gap guard)")
        v.check(offline == 0, f"{offline} beating node(s) offline after the failover")
    finally:
        await load.stop()
        load.cleanup()
    if old is not None:
        back_v = await old_primary_returns(topo, rid, old)
    return v, back_v


def _migrate_refuses(topo: Topology, member: str) -> bool:
    """`python -m control_plane.migrate` pointed at a standby stops before any write."""
    env = {
        **os.environ,
        "DATABASE_URL": topo.member_url(member),
        "CONTROL_PLANE_STATE_DIR": str(topo.dir / "app"),
    }
    proc = subprocess.run(
        [sys.executable, "-m", "control_plane.migrate"],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    return proc.returncode != 0 and "is a standby" in proc.stderr


def _member_facts(topo: Topology, member: str) -> dict[str, Any]:
    with connect(topo.member_url(member)) as conn:
        row = conn.execute(
            "SELECT pg_is_in_recovery() AS standby,"
            " (SELECT count(*) FROM pg_stat_activity"
            "   WHERE application_name = 'control-plane-api') AS app_conns,"
            " (SELECT xact_commit FROM pg_stat_database WHERE datname = current_database())"
            "   AS commits"
        ).fetchone()
    return dict(row) if row else {}


async def old_primary_returns(topo: Topology, rid: str, old: str) -> Verdict:
    """The killed member is started again: Patroni rejoins it as a replica (pg_rewind when its
    timeline diverged) and no app connection ever lands on it."""
    v = Verdict("old-primary-returns")
    url = topo.database_url
    log_offset = len(topo.patroni_log(old))
    load = Load(topo.app_urls, url, f"ho{rid}")
    load.seed()
    try:
        await load.start()
        t0 = now()
        await asyncio.to_thread(topo.start_member, old)
        healthy = await asyncio.to_thread(topo.wait_healthy, 90.0)
        rejoin_s = now() - t0
        samples = []
        for _ in range(6):
            samples.append(await asyncio.to_thread(_member_facts, topo, old))
            await asyncio.sleep(1.0)
        await load.stop()
        _common_checks(v, load, url)
        text = topo.patroni_log(old)[log_offset:]
        rewound = "pg_rewind exit code=0" in text
        v.figures.update(
            member=old,
            role=topo.role(old),
            rejoin_s=round(rejoin_s, 1),
            pg_rewind="yes" if rewound else "not needed",
            app_connections_on_it=max((s.get("app_conns", 0) for s in samples), default=0),
        )
        refused = await asyncio.to_thread(_migrate_refuses, topo, old)
        v.figures["migrate_on_it"] = "refused" if refused else "NOT refused"
        v.check(refused, f"migrate against the standby {old} was not refused")
        v.check(healthy, f"{old} did not rejoin as a streaming replica")
        v.check(all(s.get("standby") for s in samples), f"{old} is not in recovery")
        v.check(
            all(s.get("app_conns") == 0 for s in samples),
            f"app connections on the returned member {old}",
        )
    finally:
        await load.stop()
        load.cleanup()
    return v


# --- synchronous standby lost, then the primary ---------------------------------------------


async def sync_standby_lost(topo: Topology, rid: str, strict: bool = True) -> Verdict:
    """Promise (synchronous_mode_strict): a write is acknowledged only once a synchronous standby
    has it. Losing the sync standby: Patroni makes the other replica synchronous (commits wait
    meanwhile). Then losing the primary: that replica is promoted and, alone, acknowledges no
    write (503) until a standby returns; nothing acknowledged is ever lost.
    With strict=False (the comparison run) the lone survivor acknowledges writes that exist on
    it only: losing it too would lose them."""
    v = Verdict("sync-standby-lost" if strict else "sync-standby-lost-nonstrict")
    url = topo.database_url
    load = Load(topo.app_urls, url, f"h{'y' if strict else 'n'}{rid}")
    load.seed()
    killed: list[str] = []
    if not strict:
        await asyncio.to_thread(topo.set_strict, False)
    try:
        await load.start()
        await asyncio.sleep(WARM_S)
        primary, sync = topo.primary(), topo.sync_standby()
        other = next((m for m in MEMBERS if m not in (primary, sync)), None)
        if primary is None or sync is None or other is None:
            v.failures.append(f"topology not healthy: {topo.cluster()}")
            return v
        t1 = now()
        topo.kill_member(sync)
        killed.append(sync)
        t_resync = None
        while now() - t1 < 30.0:
            if await asyncio.to_thread(topo.role, other) == "sync_standby":
                t_resync = now()
                break
            await asyncio.sleep(0.2)
        await asyncio.sleep(3.0)
        stall = max(
            (o.done - o.sent for o in load.outcomes if o.ok and t1 - 1 <= o.sent <= t1 + 5),
            default=0.0,
        )
        t2 = now()
        topo.kill_member(primary)
        killed.append(primary)
        new, t_primary = await asyncio.to_thread(topo.wait_primary, (other,), 60.0)
        await asyncio.sleep(12.0)  # the survivor alone
        t3 = now()
        alone = [o for o in load.outcomes if t_primary + 1 <= o.sent < t3]
        acked_alone = [o for o in alone if o.ok]
        for m in killed:
            await asyncio.to_thread(topo.start_member, m)
        back = await wait_writes_back(load, t3, 90.0)
        healthy = await asyncio.to_thread(topo.wait_healthy, 90.0)
        await asyncio.sleep(2.0)
        await load.stop()
        bad = load.bad()
        timeouts = [o for o in bad if o.error == "timeout"]
        lost_writes, lost_beats = load.lost(url, now())
        v.figures.update(
            mode="strict" if strict else "non-strict",
            resync_s=round(t_resync - t1, 1) if t_resync else "never",
            commit_stall_s=round(stall, 1),
            new_primary_s=round(t_primary - t2, 1),
            alone_requests=len(alone),
            alone_acked=len(acked_alone),
            alone_503=sum(1 for o in alone if o.unavailable),
            client_timeouts=len(timeouts),
            writes_back_s=_fmt_back(back),
            requests=len(load.outcomes),
            acked_writes=load.ledger.acked_writes,
            lost=len(lost_writes) + len(lost_beats),
        )
        v.check(new == other, f"{other} (synchronous) was not promoted")
        v.check(t_resync is not None, f"{other} did not become the synchronous standby")
        v.check(bool(alone), "no request was sent while the survivor was alone")
        if strict:
            v.check(
                not acked_alone,
                f"{len(acked_alone)} write(s) acknowledged with no standby: "
                + ", ".join(
                    f"{o.op} {o.status} sent {o.sent - t_primary:+.2f}s" for o in acked_alone[:5]
                ),
            )
        else:  # what non-strict trades: writes go on, acknowledged on one copy only
            v.check(bool(acked_alone), "non-strict: no write acknowledged by the lone primary")
        v.check(not lost_writes, f"acknowledged slot writes missing: {lost_writes[:3]}")
        v.check(not lost_beats, f"acknowledged heartbeats missing: {lost_beats[:3]}")
        # Client-side timeouts: while writes block, each waits the 8 s deadline for its 503 and
        # the load generator's 64 connections per instance queue the rest (reported, explained
        # in docs/deploy.md); anything else is a failure.
        others = [o for o in bad if o.error != "timeout"]
        v.check(not others, f"answers other than 2xx / 503: {_show(others)}")
        v.check(all(b is not None for b in back), "writes did not resume once members returned")
        v.check(healthy, "the cluster did not return to 1 leader + 2 streaming replicas")
    finally:
        for m in killed:
            if topo.role(m) is None:
                await asyncio.to_thread(topo.start_member, m)
        await load.stop()
        if not strict:
            await asyncio.to_thread(topo.set_strict, True)
        await asyncio.to_thread(topo.wait_healthy, 90.0)
        load.cleanup()
    return v
