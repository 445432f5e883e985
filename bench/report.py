"""Collects one bench/run.sh run into a results document, prints the table, and records it.

    python bench/report.py WORK_DIR --results bench/results [--variants "name|env\\n..."]

Writes RESULTS/latest.json and latest.txt (the table), appends one line to
RESULTS/history.jsonl and, when py-spy ran,
RESULTS/profile-heartbeat.txt (where a worker's time goes under heartbeat load).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import re
import subprocess
from collections import Counter
from pathlib import Path
from typing import Any

from control_plane.config import load_settings

# From the committed run before the change feed (bench/results/latest.txt, commit b5e280c): the
# roster's throughput and the heartbeat's CPU per beat (app + PostgreSQL), for the targets.
BASELINE_ROSTER_RPS = 485.0
BASELINE_HEARTBEAT_CPU_US = 87.3 + 31.9
# The same run's GET /healthz: the roster's share of the HTTP ceiling then (485 / 29,409), so a
# slower or busier host does not read as a roster regression (compare ratios of one run).
BASELINE_HELLO_RPS = 29_409.0


def _json_line(path: Path) -> dict[str, Any]:
    for line in path.read_text().splitlines():
        if line.startswith("BENCH_JSON "):
            doc: dict[str, Any] = json.loads(line[len("BENCH_JSON ") :])
            return doc
    raise SystemExit(f"{path}: no BENCH_JSON line")


def _pgbench(path: Path) -> dict[str, Any]:
    text = path.read_text()
    tps = re.search(r"^tps = ([0-9.]+)", text, re.M)
    lat = re.search(r"^latency average = ([0-9.]+) ms", text, re.M)
    failed = re.search(r"^number of failed transactions: (\d+)", text, re.M)
    if not tps:
        raise SystemExit(f"{path}: no tps line\n{text}")
    return {
        "tps": float(tps.group(1)),
        "latency_avg_ms": float(lat.group(1)) if lat else None,
        "failed": int(failed.group(1)) if failed else 0,
    }


def _optional_json(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text()) if path.exists() else {}


def _cpu(work: Path, name: str, ops_per_s: float) -> dict[str, Any]:
    """CPU seconds per group over the sampled span, and CPU microseconds per operation."""
    cpu_path, span_path = work / f"{name}.cpu.json", work / f"{name}.span.json"
    if not cpu_path.exists():
        return {}
    cpu = json.loads(cpu_path.read_text())
    span = json.loads(span_path.read_text())["seconds"]
    ops = ops_per_s * span
    return {
        "cpu_seconds": cpu,
        "span_s": span,
        "cpu_us_per_op": {k: round(v / ops * 1e6, 1) for k, v in cpu.items()} if ops else {},
    }


def _profile(raw: Path, top: int = 25) -> dict[str, list[tuple[float, str]]]:
    """Shares of a worker's busy samples (py-spy raw format: `frame;frame;... count`): `self`
    by innermost Python frame (time in C code, syscalls included, counts for the Python frame
    that called it), `package` by that frame's package, `inclusive` by any frame on the stack."""
    total = 0
    inclusive: Counter[str] = Counter()
    own: Counter[str] = Counter()
    package: Counter[str] = Counter()
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        frames = [re.sub(r":\d+\)$", ")", f) for f in stack.split(";")]
        leaf = frames[-1]
        # Idle: the event loop waiting in its selector, or threads blocked on a lock/queue.
        if any(idle in leaf for idle in ("select (", "Condition.wait", "_recv (", "wait (")):
            continue
        total += n
        own[leaf] += n
        where = re.search(r"\(([^)]*)\)", leaf)
        path = where.group(1) if where else "?"
        package[path.split("/")[0] if "/" in path else path] += n
        for name in set(frames):
            inclusive[name] += n

    def shares(counter: Counter[str]) -> list[tuple[float, str]]:
        return [(round(100 * v / total, 1), k) for k, v in counter.most_common(top)]

    if not total:
        return {}
    return {"self": shares(own), "package": shares(package), "inclusive": shares(inclusive)}


def _machine(pg_version: str) -> dict[str, Any]:
    model = ""
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    mem_kb = int(Path("/proc/meminfo").read_text().split()[1])
    return {
        "cpus": os.cpu_count(),
        "cpu_model": model,
        "memory_gib": round(mem_kb / 1024 / 1024, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "postgresql": pg_version,
    }


def _commit() -> str:
    try:
        return subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def _target(
    name: str, value: float | None, op: str, bound: float, note: str = ""
) -> dict[str, Any]:
    met = None if value is None else (value >= bound if op == ">=" else value <= bound)
    return {"name": name, "value": value, "target": f"{op} {bound:g}", "met": met, "note": note}


def _median_round(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """The round with the median throughput (its latencies and CPU too), plus every round."""
    ordered = sorted(rounds, key=lambda r: r["rps"])
    median = dict(ordered[len(ordered) // 2])
    median["rounds"] = [
        {k: r[k] for k in ("rps", "p50_ms", "p99_ms", "non_2xx", "socket_errors")} for r in rounds
    ]
    median["non_2xx"] = sum(r["non_2xx"] for r in rounds)
    median["socket_errors"] = sum(r["socket_errors"] for r in rounds)
    return median


def build(
    work: Path, variants: list[tuple[str, str]], pg_version: str, rounds_n: int
) -> dict[str, Any]:
    app = load_settings()
    wrk = {n: _json_line(work / f"{n}.out") for n in ("heartbeat_c8", "attach", "roster", "etcd")}
    for n, r in wrk.items():
        r.update(_cpu(work, n, r["rps"]))
    for n in ("hello", "hello_post", "heartbeat"):
        if not (work / f"{n}_r1.out").exists():
            continue
        rounds = []
        for i in range(1, rounds_n + 1):
            r = _json_line(work / f"{n}_r{i}.out")
            r.update(_cpu(work, f"{n}_r{i}", r["rps"]))
            rounds.append(r)
        wrk[n] = _median_round(rounds)
    pgb = {
        n: _pgbench(work / f"{n}.out")
        for n in ("pgbench", "pgbench_batch64", "pgbench_batch1_generic", "pgbench_batch1_custom")
    }
    for n, r in pgb.items():
        r.update(_cpu(work, n, r["tps"]))
    hot = json.loads((work / "hot.json").read_text())
    sweep = json.loads((work / "sweep.json").read_text())
    runs = {(r["size"], r["stale_fraction"]): r for r in sweep["runs"]}

    hb, hello, etcd = wrk["heartbeat"], wrk["hello"], wrk["etcd"]
    hello_post = wrk.get("hello_post", {})
    roster_cpu = _optional_json(work / "roster_cpu.json")
    feed = _optional_json(work / "feed.json")
    hb_cpu = hb.get("cpu_us_per_op", {})
    hb_cpu_us = (
        round(hb_cpu["app"] + hb_cpu["postgres"], 1) if "app" in hb_cpu and "postgres" in hb_cpu
        else None
    )  # fmt: skip
    roster_pg_us = wrk["roster"].get("cpu_us_per_op", {}).get("postgres")
    pg_tps = pgb["pgbench"]["tps"]
    hot_ratio = hot["n_tup_hot_upd"] / hot["n_tup_upd"] if hot["n_tup_upd"] else None
    sweep_ms = {f"{size}_{int(frac * 100)}pct": r["ms"] for (size, frac), r in runs.items()}
    idle_100k = runs.get((100_000, 0.0), {}).get("ms")
    idle_1m = runs.get((1_000_000, 0.0), {}).get("ms")
    wait = sweep.get("wait", {})

    metrics: dict[str, Any] = {
        "pgbench_heartbeat_tps": round(pg_tps, 1),
        "pgbench_batch64_beats_per_s": round(pgb["pgbench_batch64"]["tps"] * 64, 1),
        "hello_rps": hello["rps"],
        "heartbeat_rps": hb["rps"],
        "heartbeat_p50_ms": hb["p50_ms"],
        "heartbeat_p99_ms": hb["p99_ms"],
        "heartbeat_c8_rps": wrk["heartbeat_c8"]["rps"],
        "heartbeat_c8_p50_ms": wrk["heartbeat_c8"]["p50_ms"],
        "heartbeat_c8_p99_ms": wrk["heartbeat_c8"]["p99_ms"],
        "etcd_keepalive_rps": etcd["rps"],
        "etcd_keepalive_p99_ms": etcd["p99_ms"],
        "attach_rps": wrk["attach"]["rps"],
        "attach_p99_ms": wrk["attach"]["p99_ms"],
        "roster_rps": wrk["roster"]["rps"],
        "roster_p99_ms": wrk["roster"]["p99_ms"],
        "roster_pg_cpu_us_per_op": roster_pg_us,
        "roster_backend_cpu_us_before": roster_cpu.get("before_cpu_us"),
        "roster_backend_cpu_us_after": roster_cpu.get("after_cpu_us"),
        "hello_post_rps": hello_post.get("rps"),
        "heartbeat_cpu_us_per_beat": hb_cpu_us,
        "feed_events_per_s": feed.get("events_per_s"),
        "feed_deliveries": feed.get("deliveries"),
        # The median over the feed's rounds (bench/feed.py), else the pooled percentile.
        "feed_latency_p50_ms": (
            feed.get("latency_ms_median_of_rounds") or feed.get("latency_ms", {})
        ).get("p50"),
        "feed_latency_p99_ms": (
            feed.get("latency_ms_median_of_rounds") or feed.get("latency_ms", {})
        ).get("p99"),
        "feed_latency_p99_pooled_ms": feed.get("latency_ms", {}).get("p99"),
        "feed_missed": feed.get("missed"),
        "feed_duplicated": feed.get("duplicated"),
        "feed_app_rss_mib": feed.get("app_rss_mib", {}).get("max"),
        "feed_idle_xacts_per_s_poll": feed.get("idle_xacts_per_s", {}).get("poll_followers_extra"),
        "feed_idle_xacts_per_s_all": feed.get("idle_xacts_per_s", {}).get("all_followers_extra"),
        "feed_idle_calls_per_s_poll": feed.get("idle_feed_calls_per_s", {}).get("poll_followers"),
        "feed_idle_calls_per_s_all": feed.get("idle_feed_calls_per_s", {}).get("all_followers"),
        "presence_hot_ratio": round(hot_ratio, 4) if hot_ratio is not None else None,
        "sweep_ms": sweep_ms,
        "sweep_heartbeat_max_wait_ms": wait.get("heartbeat_max_wait_ms"),
        "sweep_during_wait_ms": wait.get("sweep_ms"),
        "errors": {n: r["non_2xx"] + r["socket_errors"] for n, r in wrk.items()},
    }
    ratios = {
        "heartbeat_over_hello": round(hb["rps"] / hello["rps"], 3),
        "heartbeat_over_pgbench": round(hb["rps"] / pg_tps, 3),
        "heartbeat_over_etcd": round(hb["rps"] / etcd["rps"], 3),
    }
    if hello_post.get("rps"):
        ratios["heartbeat_over_hello_post"] = round(hb["rps"] / hello_post["rps"], 3)
    ratios["roster_rps_over_baseline"] = round(wrk["roster"]["rps"] / BASELINE_ROSTER_RPS, 2)
    ratios["roster_share_of_hello_over_baseline"] = round(
        (wrk["roster"]["rps"] / hello["rps"]) / (BASELINE_ROSTER_RPS / BASELINE_HELLO_RPS), 2
    )
    if roster_cpu.get("before_cpu_us") and roster_cpu.get("after_cpu_us"):
        ratios["roster_backend_cpu_before_over_after"] = round(
            roster_cpu["before_cpu_us"] / roster_cpu["after_cpu_us"], 2
        )
    if hb_cpu_us is not None:
        ratios["heartbeat_cpu_over_baseline"] = round(hb_cpu_us / BASELINE_HEARTBEAT_CPU_US, 3)
    targets = [
        _target("heartbeat_rps / hello_rps", ratios["heartbeat_over_hello"], ">=", 0.65),
        _target("heartbeat_rps / etcd_keepalive_rps", ratios["heartbeat_over_etcd"], ">=", 1.0),
        _target("heartbeat_p99_ms (64 connections)", hb["p99_ms"], "<=", 30),
        _target("heartbeat_c8_p99_ms", wrk["heartbeat_c8"]["p99_ms"], "<=", 8),
        _target("presence_hot_ratio", metrics["presence_hot_ratio"], ">=", 0.95),
        _target("sweep_ms, 100k idle rows", idle_100k, "<=", 50),
        _target(
            "sweep_ms 1M idle / 100k idle",
            round(idle_1m / idle_100k, 2) if idle_1m and idle_100k else None,
            "<=",
            10,
        ),
        _target(
            "heartbeat wait on the sweep / sweep duration",
            round(wait["heartbeat_max_wait_ms"] / wait["sweep_txn_ms"], 3) if wait else None,
            "<=",
            1.0,
        ),
        _target("roster_rps / baseline (485)", ratios["roster_rps_over_baseline"], ">=", 5),
        _target(
            "roster share of hello_rps / baseline's",
            ratios["roster_share_of_hello_over_baseline"],
            ">=",
            5,
            "same-run ratio: (roster_rps / hello_rps) / (485 / 29,409)",
        ),
        _target(
            "roster backend CPU before / after (same run)",
            ratios.get("roster_backend_cpu_before_over_after"),
            ">=",
            10,
        ),
        _target("roster PostgreSQL CPU µs per call (wrk)", roster_pg_us, "<=", 500),
        _target(
            "roster backend CPU µs per call (alone)", roster_cpu.get("after_cpu_us"), "<=", 500
        ),
        _target(
            "feed commit-to-client p99 ms",
            metrics["feed_latency_p99_ms"],
            "<=",
            200,
            "median of the rounds' p99 (pooled: feed_latency_p99_pooled_ms)",
        ),  # fmt: skip
        _target(
            "feed server delivery lag p99 ms (at most)",
            feed.get("server_delivery_lag_ms", {}).get("p99_at_most"),
            "<=",
            200,
            "the server's histogram: commit → read of a woken follower",
        ),
        _target(
            "feed missed + duplicated",
            (feed.get("missed") or 0) + (feed.get("duplicated") or 0) if feed else None,
            "<=",
            0,
        ),  # fmt: skip
        _target(
            "feed idle queries/s, long-poll followers",
            metrics["feed_idle_calls_per_s_poll"],
            "<=",
            1,
            "feed function calls (pg_stat_user_functions)",
        ),  # fmt: skip
        _target(
            "feed idle queries/s, all followers",
            metrics["feed_idle_calls_per_s_all"],
            "<=",
            1,
            "SSE re-checks every 15 s (contract §9), batched per worker",
        ),  # fmt: skip
        _target(
            "heartbeat CPU per beat / baseline",
            ratios.get("heartbeat_cpu_over_baseline"),
            "<=",
            1.05,
        ),  # fmt: skip
    ]

    compared = []
    for name, env in variants:
        h, b = work / f"v_{name}_hello.out", work / f"v_{name}_heartbeat.out"
        if not (h.exists() and b.exists()):
            continue
        hr, br = _json_line(h), _json_line(b)
        br.update(_cpu(work, f"v_{name}_heartbeat", br["rps"]))
        compared.append(
            {
                "variant": name,
                "env": env or "(main configuration)",
                "hello_rps": hr["rps"],
                "heartbeat_rps": br["rps"],
                "heartbeat_p99_ms": br["p99_ms"],
                "heartbeat_over_hello": round(br["rps"] / hr["rps"], 3),
                "cpu_us_per_heartbeat": br.get("cpu_us_per_op", {}),
            }
        )

    plan_cache = {
        "generic_calls_per_s": pgb["pgbench_batch1_generic"]["tps"],
        "custom_calls_per_s": pgb["pgbench_batch1_custom"]["tps"],
        "speedup": round(
            pgb["pgbench_batch1_generic"]["tps"] / pgb["pgbench_batch1_custom"]["tps"], 2
        ),
    }
    return {
        "timestamp": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "commit": _commit(),
        "machine": _machine(pg_version),
        "load": {
            "uptime_before": (work / "uptime_before").read_text().strip(),
            "uptime_after": (work / "uptime_after").read_text().strip(),
            "other_cpu_s_during_heartbeat": hb.get("cpu_seconds", {}).get("other"),
        },
        "config": {
            # The app's own settings, as it read them (one definition of their defaults).
            "web_concurrency": app.workers,
            "heartbeat_max_batch": app.heartbeat_max_batch,
            "heartbeat_max_in_flight": app.heartbeat_max_in_flight,
            "db_pool_size": app.pool_size,
            "wrk_threads": int(os.environ.get("BENCH_THREADS", "2")),
            "connections": int(os.environ.get("BENCH_CONNECTIONS", "64")),
            "duration_s": int(os.environ.get("BENCH_DURATION", "10")),
            "rounds": rounds_n,
        },
        "metrics": metrics,
        "ratios": ratios,
        "targets": targets,
        "variants": compared,
        "plan_cache_mode": plan_cache,
        "pool_reset": json.loads((work / "pool_reset.json").read_text()),
        "sweep": sweep,
        "roster_cpu": roster_cpu,
        "feed": feed,
        "phases": {**wrk, **pgb},
    }


def _fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:,.3f}" if abs(v) < 10 else f"{v:,.1f}"
    return f"{v:,}" if isinstance(v, int) else str(v)


def table(doc: dict[str, Any]) -> str:
    m, lines = doc["metrics"], []
    lines.append(f"commit {doc['commit']}  {doc['timestamp']}  {doc['machine']['cpu_model']}")
    lines.append(f"load before: {doc['load']['uptime_before']}")
    lines.append(f"load after:  {doc['load']['uptime_after']}")
    lines.append("")
    lines.append(f"{'metric':38} {'value':>14}")
    for key in (
        "pgbench_heartbeat_tps", "pgbench_batch64_beats_per_s", "hello_rps", "heartbeat_rps",
        "heartbeat_p50_ms", "heartbeat_p99_ms", "heartbeat_c8_rps", "heartbeat_c8_p50_ms",
        "heartbeat_c8_p99_ms", "etcd_keepalive_rps", "etcd_keepalive_p99_ms", "attach_rps",
        "attach_p99_ms", "roster_rps", "roster_p99_ms", "roster_pg_cpu_us_per_op",
        "roster_backend_cpu_us_before", "roster_backend_cpu_us_after", "hello_post_rps",
        "heartbeat_cpu_us_per_beat", "feed_events_per_s", "feed_deliveries",
        "feed_latency_p50_ms", "feed_latency_p99_ms", "feed_latency_p99_pooled_ms",
        "feed_missed", "feed_duplicated", "feed_app_rss_mib", "feed_idle_xacts_per_s_poll",
        "feed_idle_xacts_per_s_all", "feed_idle_calls_per_s_poll", "feed_idle_calls_per_s_all",
        "presence_hot_ratio",
        "sweep_heartbeat_max_wait_ms", "sweep_during_wait_ms",
    ):  # fmt: skip
        lines.append(f"{key:38} {_fmt(m.get(key)):>14}")
    for key, value in m["sweep_ms"].items():
        lines.append(f"{'sweep_ms ' + key:38} {_fmt(value):>14}")
    for n in ("hello", "hello_post", "heartbeat"):
        rounds = doc["phases"].get(n, {}).get("rounds", [])
        if len(rounds) > 1:
            rps = ", ".join(f"{r['rps']:,.0f}" for r in rounds)
            lines.append(f"{n + ' rounds (rps)':38} {rps}")
    lines.append("")
    for key, value in doc["ratios"].items():
        lines.append(f"{'ratio ' + key:38} {_fmt(value):>14}")
    lines.append("")
    lines.append(f"{'target':46} {'value':>9} {'goal':>8}  ")
    for t in doc["targets"]:
        verdict = {True: "met", False: "MISSED", None: "n/a"}[t["met"]]
        lines.append(f"{t['name']:46} {_fmt(t['value']):>9} {t['target']:>8}  {verdict}")
    if doc["variants"]:
        lines.append("")
        head = f"{'variant':14} {'hello rps':>10} {'beat rps':>10} {'beat p99':>9} {'ratio':>6}"
        lines.append(head + "  app/pg µs per beat")
        for v in doc["variants"]:
            cpu = v["cpu_us_per_heartbeat"]
            lines.append(
                f"{v['variant']:14} {v['hello_rps']:>10,.0f} {v['heartbeat_rps']:>10,.0f} "
                f"{v['heartbeat_p99_ms']:>9.1f} {v['heartbeat_over_hello']:>6.3f}  "
                f"{cpu.get('app', '-')}/{cpu.get('postgres', '-')}"
            )
    pc = doc["plan_cache_mode"]
    lines.append("")
    lines.append(
        f"plan_cache_mode, 1-beat calls/s: generic {pc['generic_calls_per_s']:,.0f} vs custom "
        f"{pc['custom_calls_per_s']:,.0f} (x{pc['speedup']})"
    )
    pr = doc["pool_reset"]
    lines.append(
        f"asyncpg pool, SELECT 1 calls/s on one connection: no-op reset "
        f"{pr['no_reset_calls_per_s']:,.0f} vs default reset {pr['default_reset_calls_per_s']:,.0f}"
        f" (x{pr['speedup']})"
    )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("work", type=Path)
    parser.add_argument("--results", type=Path, required=True)
    parser.add_argument("--variants", default="")
    parser.add_argument("--pg-version", default="")
    parser.add_argument("--rounds", type=int, default=1)
    args = parser.parse_args()
    variants = [
        (line.split("|", 1)[0], line.split("|", 1)[1])
        for line in args.variants.splitlines()
        if "|" in line
    ]
    doc = build(args.work, variants, args.pg_version, args.rounds)
    args.results.mkdir(parents=True, exist_ok=True)
    raw = args.work / "profile.raw"
    if raw.exists() and (prof := _profile(raw)):
        doc["profile_heartbeat_worker"] = prof
        text = [
            "py-spy, one app worker under heartbeat load (64 connections). Shares of the",
            "worker's busy samples (idle waits excluded). Time in C code (uvloop, asyncpg's",
            "protocol, httptools, syscalls) counts for the Python frame that called it.",
        ]
        for title, key in (
            ("by package (self)", "package"),
            ("by function (self)", "self"),
            ("on the stack (inclusive)", "inclusive"),
        ):
            text += ["", title] + [f"{share:5.1f}%  {frame}" for share, frame in prof[key]]
        (args.results / "profile-heartbeat.txt").write_text("\n".join(text) + "\n")
    (args.results / "latest.json").write_text(json.dumps(doc, indent=2) + "\n")
    with (args.results / "history.jsonl").open("a") as history:
        history.write(json.dumps(doc, separators=(",", ":")) + "\n")
    printed = table(doc)
    (args.results / "latest.txt").write_text(printed + "\n")
    print(printed)
    print(
        f"\nwritten: {args.results}/latest.json (table: latest.txt), appended to "
        f"{args.results}/history.jsonl"
    )


if __name__ == "__main__":
    main()
