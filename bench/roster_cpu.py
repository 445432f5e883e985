"""PostgreSQL CPU per roster call, before and after the cost work, plus the plans.

    python bench/roster_cpu.py DATABASE_URL OUT.json [--explain bench/results/roster-explain.txt]

Reads a 100-node bench session (bench/sql/seed.sql), creates the pre-change roster as
bench.runtime_node_roster_v1 (bench/sql/roster_v1.sql), then calls each version N times on one
backend (one transaction per call, prepared, like the app) and reads that backend's own CPU
time (utime + stime from /proc, the server must be on this machine): CPU, not wall time, so a
busy neighbour on the shared cores inflates it less (caches and SMT siblings still do).
Median of ROUNDS. With --explain it writes EXPLAIN (ANALYZE, BUFFERS) of each version's queries
(auto_explain of the nested statements).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
from pathlib import Path

import psycopg

_TICKS = os.sysconf("SC_CLK_TCK")
ROOT = Path(__file__).resolve().parent.parent
VERSIONS = {
    "before": "bench.runtime_node_roster_v1",
    "after": "control_plane.runtime_node_roster_v2",
}


def _backend_cpu_s(pid: int) -> float:
    raw = Path(f"/proc/{pid}/stat").read_text()
    fields = raw[raw.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / _TICKS


def _cpu_us_per_call(conn: psycopg.Connection, fn: str, args: tuple[bytes, str], n: int) -> float:
    """Backend CPU per call, each call its own transaction (as the API makes them: plan caches
    warm, per-transaction set-up and sending the result included)."""
    pid = conn.execute("SELECT pg_backend_pid()").fetchone()[0]  # type: ignore[index]
    query = f"SELECT {fn}(%s, %s::uuid)::text"
    for _ in range(20):  # warm: plans cached, pages in memory
        conn.execute(query, args, prepare=True)
    before = _backend_cpu_s(pid)
    for _ in range(n):
        conn.execute(query, args, prepare=True)
    return (_backend_cpu_s(pid) - before) / n * 1e6


def _explain(conn: psycopg.Connection, fn: str, args: tuple[bytes, str]) -> str:
    notices: list[str] = []
    conn.add_notice_handler(lambda d: notices.append(d.message_primary or ""))
    conn.execute("SET client_min_messages = notice")  # roster_v1.sql lowered it
    conn.execute("LOAD 'auto_explain'")
    for setting, value in (
        ("log_analyze", "on"),
        ("log_buffers", "on"),
        ("log_timing", "on"),
        ("log_nested_statements", "on"),
        ("log_level", "notice"),
        ("log_min_duration", "0"),
    ):
        conn.execute(f"SET auto_explain.{setting} = {value}")
    conn.execute(f"SELECT {fn}(%s, %s::uuid) FROM generate_series(1, 6)", args)  # generic plans
    notices.clear()
    conn.execute(f"SELECT length({fn}(%s, %s::uuid)::text)", args)
    conn.execute("SET auto_explain.log_min_duration = -1")
    return "\n\n".join(notices)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("database_url")
    parser.add_argument("out")
    parser.add_argument("--explain")
    parser.add_argument("--calls", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=5)
    ns = parser.parse_args()
    with psycopg.connect(ns.database_url, autocommit=True) as conn:
        conn.execute((ROOT / "bench/sql/roster_v1.sql").read_text())
        row = conn.execute(
            """SELECT n.digest, n.session_id::text, count(*) OVER (PARTITION BY n.session_id)
                 FROM bench.nodes n WHERE n.kind = 'beat' ORDER BY n.i LIMIT 1"""
        ).fetchone()
        assert row is not None, "no bench fleet: run bench/sql/seed.sql first"
        args = (bytes(row[0]), str(row[1]))
        nodes = conn.execute(
            "SELECT count(*) FROM control_plane.runtime_node_attachments WHERE session_id = %s",
            (args[1],),
        ).fetchone()[0]  # type: ignore[index]
        result: dict[str, object] = {"nodes": nodes, "calls": ns.calls, "rounds": ns.rounds}
        samples: dict[str, list[float]] = {k: [] for k in VERSIONS}
        for _ in range(ns.rounds):  # alternate: a neighbour's burst hits both versions
            for name, fn in VERSIONS.items():
                samples[name].append(_cpu_us_per_call(conn, fn, args, ns.calls))
        for name, values in samples.items():
            result[f"{name}_cpu_us"] = round(statistics.median(values), 1)
            result[f"{name}_samples"] = [round(v, 1) for v in values]
        same = conn.execute(
            f"SELECT {VERSIONS['before']}(%s, %s::uuid)"
            f" = {VERSIONS['after']}(%s, %s::uuid)::jsonb - 'revision'",
            (*args, *args),
        ).fetchone()[0]  # type: ignore[index]
        result["same_result"] = bool(same)
        if ns.explain:
            parts = [
                f"-- {name}: {fn}, a {nodes}-node session; {result[f'{name}_cpu_us']} µs of "
                f"backend CPU per call (median of {ns.rounds} x {ns.calls} calls)\n\n"
                + _explain(conn, fn, args)
                for name, fn in VERSIONS.items()
            ]
            Path(ns.explain).write_text("\n\n".join(parts) + "\n")
        conn.execute(
            "DROP FUNCTION bench.runtime_node_roster_v1(bytea, uuid);"
            "DROP FUNCTION bench.version_below_floor_v1(text, text);"
            "DROP FUNCTION bench.version_compare_v1(text, text)"
        )
    Path(ns.out).write_text(json.dumps(result) + "\n")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
