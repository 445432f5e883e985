"""Change-feed benchmark (docs/performance.md, "Change feed"): what the ordering guarantee costs
event writers, and how retention should purge at 10M events.

    DATABASE_URL=postgresql://... .venv/bin/python bench/events.py [--rows 10000000] [--seconds 10]

Runs against a migrated database (the private run cluster: `out="$(bash scripts/env.sh run)" &&
eval "$out"` then migrate). Everything it creates lives in schema `bench_events` (dropped at the
start and at the end) except part 1c, which calls the product's own capability update on nodes it
seeds in `control_plane` through the admin functions (as `bench/sql/seed.sql` does).

1. Ordering: pgbench transactions that change a row and append one event, the same shape as every
   event-writing function, in three variants — naive (nothing serialized: the writer-side cost of a
   snapshot/xid8 watermark scheme), NOTIFY only, and the product's event lock + NOTIFY — at 1, 8
   and 32 clients; then (1c) the real runtime_node_update_capabilities, one event per call.
2. Retention at --rows events spread over 8 days (7 days retained): filling, a page read, the
   purge's batched DELETE by id range (the statements of runtime_node_events_purge) of the oldest
   day and of one minute (the steady state), VACUUM; against a table range-partitioned by id in
   day-sized partitions, where the oldest day is a DETACH + DROP.
Prints a table and writes bench/results/events.json.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psycopg

ROOT = Path(__file__).resolve().parent.parent
PG_BINDIR = Path(os.environ.get("PG_BINDIR", "/usr/lib/postgresql/15/bin"))
LOCK_KEY = 7163845710374912009  # control_plane.runtime_node_events_lock_key()
SLOTS = 64

EVENT_COLUMNS = (
    "session_id, node_id, attachment_id, kind, state, previous_state, health_state,"
    " previous_health_state, actor, actor_participant_id"
)
EVENT_VALUES = (
    "'00000000-0000-4000-8000-000000000001', 'node-' || :client_id,"
    " '00000000-0000-4000-8000-000000000002', 'health_changed', 'online', 'online', 'degraded',"
    " 'online', 'daemon', '00000000-0000-4000-8000-000000000003'"
)


def writer_function(variant: str) -> str:
    """One event-writing call in the product's shape: a row change, then (lock,) the event insert
    (and NOTIFY) as the last step, all in one statement that commits at once (autocommit)."""
    lock = f"PERFORM pg_advisory_xact_lock({LOCK_KEY});" if variant == "lock_notify" else ""
    notify = (
        "PERFORM pg_notify('bench_events', '00000000-0000-4000-8000-000000000001:' || 1);"
        if variant != "naive"
        else ""
    )
    return f"""
CREATE FUNCTION bench_events.write_{variant}(p_client integer) RETURNS void
    LANGUAGE plpgsql AS $fn$
BEGIN
    UPDATE bench_events.slots SET n = n + 1 WHERE id = p_client;
    {lock}
    INSERT INTO bench_events.ev_{variant} ({EVENT_COLUMNS})
    VALUES ({EVENT_VALUES.replace(":client_id", "p_client")});
    {notify}
END $fn$"""


CAPS_SCRIPT = """\\set v random(1, 1000000)
SELECT control_plane.runtime_node_update_capabilities(n.digest, n.node_id,
           jsonb_build_object('v', (:v)::integer), NULL, NULL)
  FROM bench_events.nodes n WHERE n.i = :client_id;
"""


def pgbench(url: str, script: str, clients: int, seconds: int) -> dict[str, float]:
    with tempfile.NamedTemporaryFile("w", suffix=".pgbench", delete=False) as f:
        f.write(script)
    try:
        proc = subprocess.run(
            [
                str(PG_BINDIR / "pgbench"),
                "-n",
                "-M",
                "prepared",
                "-c",
                str(clients),
                "-j",
                str(min(clients, 2)),
                "-T",
                str(seconds),
                "-f",
                f.name,
                url,
            ],
            capture_output=True,
            text=True,
            check=True,
        )
    finally:
        os.unlink(f.name)
    tps = re.search(r"^tps = ([0-9.]+)", proc.stdout, re.M)
    lat = re.search(r"^latency average = ([0-9.]+) ms", proc.stdout, re.M)
    assert tps and lat, proc.stdout
    return {"tps": round(float(tps.group(1)), 1), "latency_ms": float(lat.group(1))}


class Db:
    def __init__(self, url: str) -> None:
        self.conn = psycopg.connect(url, autocommit=True)
        self.conn.execute("SET statement_timeout = 0")

    def run(self, sql: str, *params: Any) -> Any:
        cur = self.conn.execute(sql, params or None)
        return cur.fetchone() if cur.description else None

    def timed(self, sql: str, *params: Any) -> tuple[float, int]:
        """Seconds and WAL bytes of one statement."""
        lsn = self.run("SELECT pg_current_wal_insert_lsn()")[0]
        t0 = time.perf_counter()
        self.conn.execute(sql, params or None)
        elapsed = time.perf_counter() - t0
        wal = self.run("SELECT pg_wal_lsn_diff(pg_current_wal_insert_lsn(), %s)::bigint", lsn)[0]
        return elapsed, int(wal)


def median(results: list[dict[str, float]]) -> dict[str, float]:
    ordered = sorted(results, key=lambda r: r["tps"])
    return ordered[len(ordered) // 2]


def ordering(db: Db, url: str, seconds: int, rounds: int) -> dict[str, Any]:
    db.run("CREATE TABLE bench_events.slots (id integer PRIMARY KEY, n bigint NOT NULL DEFAULT 0)")
    db.run("INSERT INTO bench_events.slots (id) SELECT generate_series(0, %s)", SLOTS - 1)
    out: dict[str, Any] = {}
    for variant in ("naive", "notify", "lock_notify"):
        db.run(
            f"CREATE TABLE bench_events.ev_{variant}"
            " (LIKE control_plane.runtime_node_events INCLUDING ALL)"
        )
        db.run(writer_function(variant))
    # Alternating rounds, medians: the machine is shared, neighbours' load drifts.
    for clients in (1, 8, 32):
        runs: dict[str, list[dict[str, float]]] = {}
        for _ in range(rounds):
            for variant in ("naive", "notify", "lock_notify"):
                script = f"SELECT bench_events.write_{variant}(:client_id);\n"
                runs.setdefault(variant, []).append(pgbench(url, script, clients, seconds))
        for variant, results in runs.items():
            out[f"{variant}_c{clients}"] = median(results)
            print(f"events bench: {variant} c={clients}: {out[f'{variant}_c{clients}']} {results}")
    # 1c: the product's capability update, one event per call, 8 daemons on their own nodes.
    db.run("CREATE TABLE bench_events.nodes (i integer PRIMARY KEY, digest bytea, node_id text)")
    db.conn.execute(
        """DO $$
        DECLARE v_s uuid; v_p uuid; v_t text;
        BEGIN
            v_s := (control_plane.admin_create_session() ->> 'sessionId')::uuid;
            FOR i IN 0..31 LOOP  -- pgbench's :client_id
                v_p := (control_plane.admin_create_participant('bench events')
                        ->> 'participantId')::uuid;
                v_t := control_plane.admin_issue_token(v_p) ->> 'token';
                PERFORM control_plane.admin_put_membership(v_s, v_p, 'runtime_contributor',
                                                           'active');
                PERFORM control_plane.runtime_node_attach(sha256(convert_to(v_t, 'UTF8')), v_s, v_p,
                    'bench-events-' || i || '-' || v_s, '1.0', '{}');
                INSERT INTO bench_events.nodes
                VALUES (i, sha256(convert_to(v_t, 'UTF8')), 'bench-events-' || i || '-' || v_s);
            END LOOP;
        END $$"""
    )
    for clients in (1, 8, 32):
        out[f"update_capabilities_c{clients}"] = median(
            [pgbench(url, CAPS_SCRIPT, clients, seconds) for _ in range(rounds)]
        )
        result = out[f"update_capabilities_c{clients}"]
        print(f"events bench: update_capabilities c={clients}: {result}")
    # Leave nothing active behind (the sweep's stall guard must never see silent bench nodes).
    db.conn.execute(
        "SELECT control_plane.runtime_node_detach(digest, node_id) FROM bench_events.nodes"
    )
    return out


FILL = """
INSERT INTO bench_events.{table} (session_id, node_id, attachment_id, at, kind, state,
       previous_state, health_state, previous_health_state, actor, actor_participant_id)
SELECT md5('s' || mod(g, 1000))::uuid, 'node-' || mod(g, 20000), md5('a' || mod(g, 20000))::uuid,
       %(start)s::timestamptz + (g * %(step)s) * interval '1 microsecond',
       'health_changed', 'online', 'online', 'degraded', 'online', 'daemon',
       md5('p' || mod(g, 5000))::uuid
  FROM generate_series(%(lo)s::bigint, %(hi)s::bigint) g
"""


def retention(db: Db, rows: int) -> dict[str, Any]:
    out: dict[str, Any] = {"rows": rows}
    span_us = 8 * 86400 * 1_000_000  # 8 days of events, 7 retained: the oldest day is due
    step = span_us // rows
    start = db.run("SELECT now() - interval '8 days'")[0]
    db.run(
        "CREATE TABLE bench_events.ev_plain (LIKE control_plane.runtime_node_events INCLUDING ALL)"
    )
    db.run(
        "CREATE TABLE bench_events.ev_part (LIKE control_plane.runtime_node_events"
        " INCLUDING DEFAULTS INCLUDING IDENTITY INCLUDING CONSTRAINTS) PARTITION BY RANGE (id)"
    )
    db.run("ALTER TABLE bench_events.ev_part ADD PRIMARY KEY (id)")
    db.run("CREATE INDEX ON bench_events.ev_part (session_id, id)")
    db.run("CREATE INDEX ON bench_events.ev_part (node_id, id)")
    per_day = rows // 8
    for d in range(8):
        db.run(
            f"CREATE TABLE bench_events.ev_part_{d} PARTITION OF bench_events.ev_part"
            f" FOR VALUES FROM ({d * per_day + 1}) TO ({(d + 1) * per_day + 1})"
        )
    chunk = 1_000_000
    for table in ("ev_plain", "ev_part"):
        t0 = time.perf_counter()
        for lo in range(1, rows + 1, chunk):
            hi = min(lo + chunk - 1, rows)
            db.conn.execute(
                FILL.format(table=table), {"start": start, "step": step, "lo": lo, "hi": hi}
            )
        out[f"fill_{table}_s"] = round(time.perf_counter() - t0, 1)
        db.run(f"VACUUM ANALYZE bench_events.{table}")
        print(f"events bench: filled {table} in {out[f'fill_{table}_s']} s")
    out["size_plain_mb"] = round(
        db.run("SELECT pg_total_relation_size('bench_events.ev_plain')")[0] / 2**20
    )
    # A feed page at 10M rows: one session's next 100 events after a recent cursor.
    page = (
        "SELECT e.* FROM bench_events.ev_plain e WHERE e.session_id = md5('s7')::uuid"
        " AND e.id > %s ORDER BY e.id LIMIT 100"
    )
    cursor = rows - 500_000
    times = []
    for _ in range(20):
        t0 = time.perf_counter()
        db.conn.execute(page, (cursor,)).fetchall()
        times.append(time.perf_counter() - t0)
    out["page_read_ms_median"] = round(sorted(times)[len(times) // 2] * 1000, 2)

    # DELETE: the purge's statements, 50k ids per call, until the oldest day is gone.
    cutoff = db.run("SELECT now() - interval '7 days'")[0]
    batch = 50_000
    purged, calls, total_s, total_wal, worst = 0, 0, 0.0, 0, 0.0
    while True:
        young = db.run(
            "SELECT e.id FROM (SELECT e.id, e.at FROM bench_events.ev_plain e WHERE e.id > %s"
            " ORDER BY e.id LIMIT %s) e WHERE e.at >= %s ORDER BY e.id LIMIT 1",
            purged,
            batch,
            cutoff,
        )
        if young is not None:
            horizon = young[0] - 1
        else:
            horizon = db.run(
                "SELECT max(e.id) FROM (SELECT e.id FROM bench_events.ev_plain e WHERE e.id > %s"
                " ORDER BY e.id LIMIT %s) e",
                purged,
                batch,
            )[0]
        if horizon is None or horizon <= purged:
            break
        s, wal = db.timed(
            "DELETE FROM bench_events.ev_plain WHERE id > %s AND id <= %s", purged, horizon
        )
        purged, calls, total_s, total_wal, worst = (
            horizon,
            calls + 1,
            total_s + s,
            total_wal + wal,
            max(worst, s),
        )
    out["delete_day_rows"] = purged
    out["delete_day_calls"] = calls
    out["delete_day_s"] = round(total_s, 2)
    out["delete_day_worst_call_s"] = round(worst, 3)
    out["delete_day_wal_mb"] = round(total_wal / 2**20, 1)
    vac_s, vac_wal = db.timed("VACUUM bench_events.ev_plain")
    out["vacuum_after_day_s"] = round(vac_s, 2)
    out["vacuum_after_day_wal_mb"] = round(vac_wal / 2**20, 1)
    # Steady state: one minute of events at this rate (the cron job runs every minute).
    minute = max(1, rows // (8 * 1440))
    s, wal = db.timed(
        "DELETE FROM bench_events.ev_plain WHERE id > %s AND id <= %s", purged, purged + minute
    )
    out["delete_minute_rows"] = minute
    out["delete_minute_ms"] = round(s * 1000, 2)
    out["delete_minute_wal_kb"] = round(wal / 1024, 1)

    # Partitions: the oldest day is one partition.
    s1, wal1 = db.timed("ALTER TABLE bench_events.ev_part DETACH PARTITION bench_events.ev_part_0")
    s2, wal2 = db.timed("DROP TABLE bench_events.ev_part_0")
    out["drop_partition_ms"] = round((s1 + s2) * 1000, 1)
    out["drop_partition_wal_kb"] = round((wal1 + wal2) / 1024, 1)
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--output", type=Path, default=ROOT / "bench" / "results" / "events.json")
    parser.add_argument("--skip-ordering", action="store_true")
    parser.add_argument("--skip-retention", action="store_true")
    args = parser.parse_args()
    url = os.environ.get("DATABASE_URL")
    if not url:
        sys.exit("DATABASE_URL is not set (see the module docstring)")
    db = Db(url)
    db.run("DROP SCHEMA IF EXISTS bench_events CASCADE")
    db.run("CREATE SCHEMA bench_events")
    doc: dict[str, Any] = {
        "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "server": db.run("SHOW server_version")[0],
        "fsync": db.run("SHOW fsync")[0],
        "synchronous_commit": db.run("SHOW synchronous_commit")[0],
        "cpus": os.cpu_count(),
        "load_1m_start": os.getloadavg()[0],
    }
    try:
        if not args.skip_ordering:
            doc["ordering"] = ordering(db, url, args.seconds, args.rounds)
        if not args.skip_retention:
            doc["retention"] = retention(db, args.rows)
    finally:
        db.run("DROP SCHEMA IF EXISTS bench_events CASCADE")
    doc["load_1m_end"] = os.getloadavg()[0]
    args.output.write_text(json.dumps(doc, indent=2) + "\n")
    print(json.dumps(doc, indent=2))


if __name__ == "__main__":
    main()
