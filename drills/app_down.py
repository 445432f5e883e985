"""Drill: the HTTP tier goes away for longer than offline_after while PostgreSQL (and the
pg_cron sweep inside it) keeps running.

Timings are shortened (heartbeat 2 s, degraded 6 s, offline 12 s). A fleet of 40 nodes beats;
the server gets SIGTERM while one capability update is held in flight by a row lock (it must
complete: shutdown drains), stays down for 20 s, then a new server process starts on the same
port and the fleet's beats land again.

Pass: the in-flight request is answered 200 and the server exits by itself; while it is down the
sweep keeps running, enters `stall_hold` (>= stall_min_nodes live nodes, none beating) and marks
no node offline (degraded is allowed); after the tier returns the guard clears by itself
(sweep_state.mode back to `normal`) and every node is online again; no HTTP answer other than
2xx, and no transport error outside the window in which the tier was down.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import psycopg

from drills import fleet, seed
from drills.harness import (
    FAST_TIMINGS,
    Context,
    Server,
    Verdict,
    connect,
    log,
    sweep_state,
    timings,
)

BEATERS = 40
WARM_SECONDS = 6.0
DOWN_SECONDS = 20.0  # > offline_after (12 s)
BACK_TIMEOUT = 40.0  # for the guard to clear: offline_after of grace after beats resume
SWEEP_WAIT = 70.0  # pg_cron < 1.5 starts the sweep loop on the minute


async def drill(ctx: Context) -> Verdict:
    verdict = Verdict("app-down")
    url = ctx.database_url
    ctx.ensure_server()
    rid = seed.run_id()
    with timings(url, FAST_TIMINGS):
        nodes = seed.fleet(url, BEATERS + 1, prefix=f"ad-{rid}")
        try:
            await _run(ctx, verdict, nodes[:BEATERS], nodes[BEATERS])
        finally:
            seed.detach_all(url, nodes)
    return verdict


async def _run(ctx: Context, verdict: Verdict, beaters: list[seed.Node], held: seed.Node) -> None:
    url = ctx.database_url
    assert ctx.server is not None
    old = ctx.server
    rec = fleet.Recorder()
    stats = fleet.BeatStats()
    done = False

    first = await asyncio.to_thread(_state, url)
    sweeping = await _wait_sweep(url, first["total_runs"])
    if not verdict.check(sweeping, f"no sweep ran within {SWEEP_WAIT}s: is pg_cron running?"):
        return

    async with fleet.client(old.base_url, connections=32) as http:
        tasks = [
            asyncio.create_task(
                fleet.beat_forever(
                    http, rec, n, interval=2.0, jitter=0.3, until=lambda: done, stats=stats
                )
            )
            for n in beaters
        ]
        await asyncio.sleep(WARM_SECONDS)
        verdict.check(
            await asyncio.to_thread(_count, url, beaters, "online") == BEATERS,
            "the fleet was not all online before the tier went down",
        )

        # --- SIGTERM with a request in flight ----------------------------------------------
        lock = await psycopg.AsyncConnection.connect(url)
        await lock.execute(
            "SELECT 1 FROM control_plane.runtime_node_attachments WHERE node_id = %s FOR UPDATE",
            (held.node_id,),
        )
        in_flight = asyncio.create_task(
            fleet.update_capabilities(http, None, held, {"drill": True, "held": 1})
        )
        await asyncio.sleep(0.5)  # the update now waits for the row lock inside PostgreSQL
        t_term = time.monotonic()
        old.terminate()
        await asyncio.sleep(1.0)
        await lock.commit()  # the update proceeds while the server is shutting down
        await lock.close()
        held_outcome = await in_flight
        exit_code = await asyncio.to_thread(old.wait, 15.0)
        t_exit = time.monotonic()
        log(f"server exited with {exit_code} {t_exit - t_term:.1f}s after SIGTERM")

        # --- the tier is down; the sweep runs in PostgreSQL -------------------------------
        down = await _watch(url, beaters, t_term + DOWN_SECONDS)
        new = Server(url, ctx.admin_token, ctx.work_dir, port=old.port)
        new.start()
        ctx.server = new
        t_back = time.monotonic()
        log(f"server back after {t_back - t_term:.1f}s")
        back = await _watch(url, beaters, t_back + BACK_TIMEOUT, until_normal=True)
        done = True
        await asyncio.gather(*tasks)

    online_end = await asyncio.to_thread(_count, url, beaters, "online")
    outside = [o for o in rec.outcomes if not (t_term <= o.sent < t_back)]
    failed_outside = [o for o in outside if not o.ok]
    bad_status = [o for o in rec.outcomes if o.status and not o.ok]
    verdict.figures.update(
        drained=held_outcome.status,
        exit=exit_code,
        exit_s=round(t_exit - t_term, 1),
        down_s=round(t_back - t_term, 1),
        sweeps_down=down["runs"],
        modes_down="/".join(down["modes"]),
        stall_after_s=down["stall_after"],
        offline=max(down["offline"], back["offline"]),
        degraded_max=down["degraded"],
        normal_after_s=back["normal_after"],
        online_end=f"{online_end}/{BEATERS}",
        requests=len(rec.outcomes),
    )
    verdict.check(held_outcome.status == 200, f"in-flight request at SIGTERM got {held_outcome}")
    verdict.check(exit_code == 0, f"server exit code {exit_code} after SIGTERM")
    verdict.check(down["runs"] > 0, "the sweep did not run while the tier was down")
    verdict.check("stall_hold" in down["modes"], "the stall guard never engaged")
    verdict.check(down["offline"] == 0, f"{down['offline']} node(s) marked offline while down")
    verdict.check(back["offline"] == 0, f"{back['offline']} node(s) marked offline after return")
    verdict.check(back["normal_after"] is not None, "sweep_state.mode did not return to normal")
    verdict.check(online_end == BEATERS, f"only {online_end}/{BEATERS} nodes online at the end")
    verdict.check(not bad_status, f"{len(bad_status)} non-2xx answers: {bad_status[:3]}")
    verdict.check(
        not failed_outside, f"{len(failed_outside)} failures outside the down window: "
        f"{[(o.op, o.status, o.error) for o in failed_outside[:3]]}"
    )  # fmt: skip


async def _wait_sweep(url: str, runs_before: int) -> bool:
    """True once a sweep has finished after `runs_before` (pg_cron is sweeping)."""
    deadline = time.monotonic() + SWEEP_WAIT
    while time.monotonic() < deadline:
        if (await asyncio.to_thread(_state, url))["total_runs"] > runs_before:
            return True
        await asyncio.sleep(0.5)
    return False


async def _watch(
    url: str, nodes: list[seed.Node], deadline: float, until_normal: bool = False
) -> dict[str, Any]:
    """Sample sweep_state and the fleet's health every 0.5 s until `deadline` (or, with
    `until_normal`, until the guard is back to normal and the whole fleet is online)."""
    start = time.monotonic()
    first = await asyncio.to_thread(_state, url)
    seen: dict[str, Any] = {
        "modes": [], "offline": 0, "degraded": 0, "runs": 0,
        "stall_after": None, "normal_after": None,
    }  # fmt: skip
    while time.monotonic() < deadline:
        state = await asyncio.to_thread(_state, url)
        offline = await asyncio.to_thread(_count, url, nodes, "offline")
        degraded = await asyncio.to_thread(_count, url, nodes, "degraded")
        seen["offline"] = max(seen["offline"], offline)
        seen["degraded"] = max(seen["degraded"], degraded)
        seen["runs"] = state["total_runs"] - first["total_runs"]
        if not seen["modes"] or seen["modes"][-1] != state["mode"]:
            seen["modes"].append(state["mode"])
        if state["mode"] == "stall_hold" and seen["stall_after"] is None:
            seen["stall_after"] = round(time.monotonic() - start, 1)
        if until_normal and state["mode"] == "normal":
            online = await asyncio.to_thread(_count, url, nodes, "online")
            if online == len(nodes):
                seen["normal_after"] = round(time.monotonic() - start, 1)
                break
        await asyncio.sleep(0.5)
    return seen


def _state(url: str) -> dict[str, Any]:
    with connect(url) as conn:
        return sweep_state(conn)


def _count(url: str, nodes: list[seed.Node], health: str) -> int:
    with connect(url) as conn:
        row = conn.execute(
            "SELECT count(*) AS n FROM control_plane.runtime_node_presence"
            " WHERE node_id = ANY(%s) AND health_state = %s",
            ([n.node_id for n in nodes], health),
        ).fetchone()
    return int(row["n"]) if row else 0
