"""Sweep benchmark: `control_plane.runtime_node_sweep` over 10k / 100k / 1M presence rows, and
how long a concurrent heartbeat waits on it.

    python bench/sweep.py OUT.json [--sizes 10000,100000,1000000] [--wait-size 100000]

Everything happens inside transactions that are rolled back, so the real tables keep their
rows and state: each run makes the presence table hold exactly the designed population (filler
rows `bench-sweep-*`, every existing row made fresh), puts sweep_state in normal mode, ANALYZEs,
times one sweep call (as the superuser, like pg_cron) and rolls back.

Heartbeat wait: with heartbeat batches of the seeded bench fleet running through the API role
(as the app sends them), a sweep whose clock is 31 s ahead demotes every committed row, locking
the rows the heartbeats write until its transaction ends; the longest heartbeat call overlapping
that window is the wait. The target: no heartbeat waits longer than one sweep takes.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import asyncpg

from control_plane.config import load_settings
from control_plane.database import create_pool

REPEATS = 5

_POPULATE = """
UPDATE control_plane.runtime_node_presence
   SET last_heartbeat_at = now() - CASE WHEN $1 AND abs(hashtext(node_id)) % 10 = 0
                                        THEN interval '45 seconds' ELSE interval '1 second' END,
       health_state = 'online';
"""
_FILL = """
INSERT INTO control_plane.runtime_node_presence (node_id, last_heartbeat_at, health_state)
SELECT 'bench-sweep-' || g,
       now() + $3::interval - CASE WHEN $2 AND g % 10 = 0 THEN interval '45 seconds'
                                   ELSE interval '1 second' END,
       'online'
  FROM generate_series(1, $1::integer) g
"""
_NORMAL_MODE = """
UPDATE control_plane.sweep_state
   SET last_finished_at = now() + $1::interval - interval '5 seconds', mode = 'normal',
       resumed_at = NULL, stall_since = NULL
"""


async def _designed_sweep(conn: asyncpg.Connection, rows: int, stale: bool) -> dict[str, Any]:
    """One sweep over a table of `rows` rows, 10 % of them stale if `stale`; rolled back."""
    tr = conn.transaction()
    await tr.start()
    try:
        existing = await conn.fetchval("SELECT count(*) FROM control_plane.runtime_node_presence")
        await conn.execute(_POPULATE, stale)
        await conn.execute(_FILL, max(0, rows - existing), stale, timedelta(0))
        await conn.execute(_NORMAL_MODE, timedelta(0))
        await conn.execute("ANALYZE control_plane.runtime_node_presence")
        total = await conn.fetchval("SELECT count(*) FROM control_plane.runtime_node_presence")
        # Median of REPEATS sweeps of the same table (each undone by its savepoint): the first
        # one also pays for reading the fresh pages into the cache.
        samples: list[tuple[float, float, int]] = []
        for _ in range(REPEATS):
            sp = conn.transaction()
            await sp.start()
            start = time.perf_counter()
            transitions = await conn.fetchval(
                "SELECT count(*) FROM control_plane.runtime_node_sweep(now())"
            )
            wall_ms = (time.perf_counter() - start) * 1000
            server_ms = await conn.fetchval(
                "SELECT last_duration_ms FROM control_plane.sweep_state"
            )
            await sp.rollback()
            samples.append((wall_ms, server_ms, transitions))
    finally:
        await tr.rollback()
    samples.sort()
    wall_ms, server_ms, transitions = samples[len(samples) // 2]
    return {
        "rows": total,
        "transitions": transitions,
        "ms": round(wall_ms, 2),
        "server_ms": round(server_ms, 2),
        "samples_ms": [round(s[0], 2) for s in samples],
    }


async def _beat_loop(
    pool: asyncpg.Pool, fleet: list[tuple[bytes, str]], stop: asyncio.Event, calls: list[Any]
) -> None:
    sql = "SELECT control_plane.runtime_node_heartbeat_batch($1::bytea[], $2::text[], $3::text[])"
    while not stop.is_set():
        items = random.sample(fleet, 16)
        start = time.perf_counter()
        verdicts = await pool.fetchval(
            sql, [d for d, _ in items], [n for _, n in items], ["online"] * len(items)
        )
        calls.append((start, time.perf_counter(), verdicts.count(None)))  # None = accepted


async def _wait_on_sweep(su: asyncpg.Connection, url: str, rows: int) -> dict[str, Any]:
    fleet = [
        (r["digest"], r["node_id"])
        for r in await su.fetch("SELECT digest, node_id FROM bench.nodes WHERE kind = 'beat'")
    ]
    pool = await create_pool(load_settings({"DATABASE_URL": url}))
    stop = asyncio.Event()
    calls: list[tuple[float, float, int]] = []
    loops = [asyncio.create_task(_beat_loop(pool, fleet, stop, calls)) for _ in range(4)]
    try:
        await asyncio.sleep(1.5)  # baseline latency before the sweep
        baseline = [end - start for start, end, _ in calls]
        tr = su.transaction()
        await tr.start()
        try:
            existing = await su.fetchval("SELECT count(*) FROM control_plane.runtime_node_presence")
            # Filler rows are fresh on the sweep's clock (31 s ahead); every committed row is
            # stale on it, so the sweep locks the very rows the heartbeats are writing.
            await su.execute(_FILL, max(0, rows - existing), False, timedelta(seconds=31))
            await su.execute(_NORMAL_MODE, timedelta(seconds=31))
            await su.execute("ANALYZE control_plane.runtime_node_presence")
            sweep_start = time.perf_counter()
            transitions = await su.fetchval(
                "SELECT count(*) FROM control_plane.runtime_node_sweep(now() + interval '31 s')"
            )
            sweep_end = time.perf_counter()
        finally:
            await tr.rollback()  # as the cron job would commit: the locks go now
        release = time.perf_counter()
        await asyncio.sleep(1.0)
    finally:
        stop.set()
        await asyncio.gather(*loops, return_exceptions=True)
        await pool.close()
    overlapping = [end - start for start, end, _ in calls if start < release and end > sweep_start]
    return {
        "rows": existing + max(0, rows - existing),
        "transitions": transitions,
        "sweep_ms": round((sweep_end - sweep_start) * 1000, 2),
        "sweep_txn_ms": round((release - sweep_start) * 1000, 2),
        "heartbeat_calls_during_sweep": len(overlapping),
        "heartbeat_max_wait_ms": round(max(overlapping, default=0.0) * 1000, 2),
        "heartbeat_baseline_p50_ms": round(statistics.median(baseline) * 1000, 2)
        if baseline
        else None,
        "heartbeat_baseline_max_ms": round(max(baseline, default=0.0) * 1000, 2),
        "beats_ok": sum(ok for _, _, ok in calls),
    }


async def compact(su: asyncpg.Connection) -> None:
    """Rewrite the presence table compactly. The rolled-back filler extended the heap by up to
    1M rows' worth of pages, and heartbeats may since have moved live rows onto those pages,
    where a plain VACUUM cannot truncate them: every later sweep would scan the bloat."""
    await su.execute("VACUUM (FULL, ANALYZE) control_plane.runtime_node_presence")


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("out")
    parser.add_argument("--database-url", required=True)
    parser.add_argument("--sizes", default="10000,100000,1000000")
    parser.add_argument("--wait-size", type=int, default=100_000)
    args = parser.parse_args()

    su = await asyncpg.connect(args.database_url)
    results: dict[str, Any] = {"runs": []}
    try:
        await compact(su)
        for size in (int(s) for s in args.sizes.split(",") if s):
            for stale in (False, True):
                run = await _designed_sweep(su, size, stale)
                run.update(size=size, stale_fraction=0.1 if stale else 0.0)
                results["runs"].append(run)
                print(f"sweep: {json.dumps(run)}", flush=True)
        results["wait"] = await _wait_on_sweep(su, args.database_url, args.wait_size)
        print(f"sweep wait: {json.dumps(results['wait'])}", flush=True)
        await compact(su)
    finally:
        await su.close()
    Path(args.out).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    asyncio.run(main())
