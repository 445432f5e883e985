"""Prometheus metrics for `/metrics` (SPEC §6.9).

Two sources:
- request metrics (count and latency by route template, method and status), recorded by a lean
  ASGI middleware in the process that served the request;
- database gauges (nodes per slot state and health, the sweep's age, duration, transitions and
  outage-guard mode), read with one `control_plane.ops_metrics()` call and cached for a couple of
  seconds, so a scrape costs at most one query however often it comes.

With several uvicorn workers each process counts only its own requests. `serve.py` therefore
calls `prepare_multiprocess()` before starting workers: every worker then writes its counters to
a shared directory (prometheus_client's multiprocess mode) and any worker's `/metrics` reports
the sum. The database gauges are global by nature and computed by whichever worker answers.
"""

from __future__ import annotations

import asyncio
import atexit
import json
import math
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg
from litestar.types import ASGIApp, Message, Receive, Scope, Send
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Histogram,
    disable_created_metrics,
    generate_latest,
    multiprocess,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
DB_CACHE_SECONDS = 2.0
DB_TIMEOUT_SECONDS = 2.0
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

SLOT_STATES = ("registering", "online", "degraded", "offline", "revoked")
HEALTH_STATES = ("online", "degraded", "offline")
SWEEP_MODES = ("normal", "gap_grace", "stall_hold")
# Heartbeats answer in about a millisecond: resolve the low end finely.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


def prepare_multiprocess(workers: int) -> None:
    """Before uvicorn spawns several workers: give them one shared, empty metrics directory.

    An operator-provided `PROMETHEUS_MULTIPROC_DIR` is emptied (counters start at zero with the
    server); otherwise a private temporary directory is created and removed at exit.
    """
    if workers <= 1:
        return
    configured = os.environ.get(MULTIPROC_ENV)
    if configured:
        path = Path(configured)
        path.mkdir(parents=True, exist_ok=True)
        for stale in path.glob("*.db"):
            stale.unlink()
    else:
        path = Path(tempfile.mkdtemp(prefix="control-plane-metrics-"))
        atexit.register(shutil.rmtree, path, True)
        os.environ[MULTIPROC_ENV] = str(path)


def _multiprocess_mode() -> bool:
    return bool(os.environ.get(MULTIPROC_ENV))


disable_created_metrics()  # no *_created series: they double the output and nobody reads them

# Request metrics. In multiprocess mode values live in the shared files (registry=None); else in
# this module's registry.
_REQUEST_REGISTRY = CollectorRegistry()
_LABELS = ("route", "method", "status")
REQUESTS = Counter(
    "control_plane_http_requests",
    "HTTP requests served, by route template, method and status.",
    _LABELS,
    registry=None if _multiprocess_mode() else _REQUEST_REGISTRY,
)
LATENCY = Histogram(
    "control_plane_http_request_duration_seconds",
    "HTTP request latency (first byte received to last byte sent), by route template, method "
    "and status.",
    _LABELS,
    buckets=LATENCY_BUCKETS,
    registry=None if _multiprocess_mode() else _REQUEST_REGISTRY,
)

# Labelled children, resolved once per (route, method, status): the hot path does two dict
# lookups instead of prometheus_client's label validation on every request.
_children: dict[tuple[str, str, int], tuple[Any, Any]] = {}


def observe_request(route: str, method: str, status: int, seconds: float) -> None:
    key = (route, method, status)
    pair = _children.get(key)
    if pair is None:
        labels = (route, method, str(status))
        pair = _children[key] = (REQUESTS.labels(*labels), LATENCY.labels(*labels))
    pair[0].inc()
    pair[1].observe(seconds)


class MetricsMiddleware:
    """Counts every routed request. Litestar sets `path_template` once the router matched, so
    labels are route templates (`/v1/runtime-nodes/{nodeId:str}/heartbeat`), never raw paths.
    Requests no route matches (404 from the router) never reach route middleware."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500  # if the app fails before it starts a response

        async def send_with_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_with_status)
        finally:
            observe_request(
                scope.get("path_template") or "unmatched",
                scope.get("method", "GET"),
                status,
                time.perf_counter() - start,
            )


class DatabaseMetrics:
    """The database-derived gauges, refreshed at most every DB_CACHE_SECONDS per process."""

    def __init__(self) -> None:
        self._snapshot: dict[str, Any] | None = None
        self._fetched_at = -math.inf  # time.monotonic() of the last attempt
        self._lock = asyncio.Lock()
        self.registry = CollectorRegistry()
        self.registry.register(self)

    async def refresh(self, pool: asyncpg.Pool) -> None:
        if time.monotonic() - self._fetched_at < DB_CACHE_SECONDS:
            return
        async with self._lock:  # concurrent scrapes share one query
            if time.monotonic() - self._fetched_at < DB_CACHE_SECONDS:
                return
            try:
                async with pool.acquire(timeout=DB_TIMEOUT_SECONDS) as conn:
                    raw = await conn.fetchval(
                        "SELECT control_plane.ops_metrics()", timeout=DB_TIMEOUT_SECONDS
                    )
                self._snapshot = json.loads(raw)
            except Exception:  # any failure: report database_up 0, never fail the scrape
                self._snapshot = None
            self._fetched_at = time.monotonic()

    def collect(self) -> Iterator[Metric]:
        snap = self._snapshot
        up = GaugeMetricFamily(
            "control_plane_database_up", "1 if the last ops_metrics() query succeeded."
        )
        up.add_metric([], 1.0 if snap is not None else 0.0)
        yield up
        if snap is None:
            return
        yield _per_label(
            "control_plane_runtime_node_attachments",
            "Runtime-node attachments per slot state.",
            "state",
            SLOT_STATES,
            snap.get("slots") or {},
        )
        yield _per_label(
            "control_plane_runtime_node_presence",
            "Presence rows per health state.",
            "health",
            HEALTH_STATES,
            snap.get("health") or {},
        )
        yield from self._sweep(snap.get("sweep") or {})

    def _sweep(self, sweep: dict[str, Any]) -> Iterator[Metric]:
        age = sweep.get("ageSeconds")
        if age is not None:
            # Ages on from the query: the cache never makes a stopped sweep look fresh.
            age = float(age) + time.monotonic() - self._fetched_at
            yield _gauge(
                "control_plane_sweep_age_seconds",
                "Seconds since the last sweep finished (database clock).",
                age,
            )
        if sweep.get("lastDurationMs") is not None:
            yield _gauge(
                "control_plane_sweep_last_duration_seconds",
                "Duration of the last sweep.",
                float(sweep["lastDurationMs"]) / 1000,
            )
        yield _gauge(
            "control_plane_sweep_last_transitions",
            "Presence rows the last sweep demoted.",
            float(sweep.get("lastTransitions") or 0),
        )
        yield _gauge(
            "control_plane_sweep_interval_seconds",
            "settings.sweep_interval.",
            float(sweep.get("intervalSeconds") or 0),
        )
        runs = CounterMetricFamily("control_plane_sweep_runs", "Sweeps run (sweep_state).")
        runs.add_metric([], float(sweep.get("totalRuns") or 0))
        yield runs
        moves = CounterMetricFamily(
            "control_plane_sweep_transitions", "Presence rows demoted by all sweeps (sweep_state)."
        )
        moves.add_metric([], float(sweep.get("totalTransitions") or 0))
        yield moves
        mode = GaugeMetricFamily(
            "control_plane_sweep_mode",
            "Outage-guard mode of the last sweep: 1 for the current mode (normal, gap_grace: "
            "resumed after a gap, stall_hold: no heartbeats arrive, offline demotions held).",
            labels=["mode"],
        )
        for name in SWEEP_MODES:
            mode.add_metric([name], 1.0 if sweep.get("mode") == name else 0.0)
        yield mode


def _gauge(name: str, documentation: str, value: float) -> GaugeMetricFamily:
    family = GaugeMetricFamily(name, documentation)
    family.add_metric([], value)
    return family


def _per_label(
    name: str, documentation: str, label: str, values: tuple[str, ...], counts: dict[str, Any]
) -> GaugeMetricFamily:
    family = GaugeMetricFamily(name, documentation, labels=[label])
    for value in values:  # every state present, zero when no row has it
        family.add_metric([value], float(counts.get(value, 0)))
    return family


def render(database: DatabaseMetrics) -> bytes:
    """The Prometheus text exposition: request metrics, then the database gauges."""
    if _multiprocess_mode():
        requests = CollectorRegistry()
        multiprocess.MultiProcessCollector(requests)  # type: ignore[no-untyped-call]
    else:
        requests = _REQUEST_REGISTRY
    return generate_latest(requests) + generate_latest(database.registry)
