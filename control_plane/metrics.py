"""Prometheus metrics for `/metrics` (contract §6.9).

Two sources:
- process metrics: request count and latency by route template, method and status (recorded by
  a lean ASGI middleware in the process that served the request) and the heartbeat coalescer's
  batches and the beats they carried;
- database gauges (nodes per slot state and health, the sweep's age, duration, transitions and
  outage-guard mode), read with one `control_plane.ops_metrics()` call and cached for a couple of
  seconds, so a scrape costs at most one query however often it comes.

With several server workers each process would count only its own
requests, so `serve.py` calls `prepare_multiprocess()` before starting them: every worker then
writes its counters to a shared directory (prometheus_client's multiprocess mode) and any
worker's `/metrics` reports the sum. The database gauges are global by nature and computed by
whichever worker answers.
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
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from litestar.enums import ScopeType
from litestar.types import ASGIApp, Message, Receive, Scope, Send

from control_plane.schemas import HEALTH_STATES, SLOT_STATES, SWEEP_MODES

if TYPE_CHECKING:
    import asyncpg
    from prometheus_client import CollectorRegistry
    from prometheus_client.core import GaugeMetricFamily, Metric

# prometheus_client is imported lazily, in the worker: it picks its storage (in-process or the
# shared multiprocess files) once, at import, from PROMETHEUS_MULTIPROC_DIR, which serve.py sets
# only after importing this module — and a forking server would hand workers the parent's choice.

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
DB_CACHE_SECONDS = 2.0
DB_TIMEOUT_SECONDS = 2.0
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

FEED_TRANSPORTS = ("long_poll", "sse")
# Feed target: a follower hears of a commit within 200 ms (p99); NOTIFY itself is ~1 ms.
FEED_LAG_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.5, 1.0, 2.5, 5.0, 15.0)

# Heartbeats answer in about a millisecond: resolve the low end finely.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


def prepare_multiprocess(workers: int) -> None:
    """Before the server spawns its workers: give them one shared, empty metrics directory.

    An operator-provided `PROMETHEUS_MULTIPROC_DIR` is emptied (counters start at zero with the
    server); otherwise, with several workers, a private temporary directory is created and
    removed at exit. A single worker needs none.
    """
    configured = os.environ.get(MULTIPROC_ENV)
    if configured:
        path = Path(configured)
        path.mkdir(parents=True, exist_ok=True)
        for stale in path.glob("*.db"):
            stale.unlink()
    elif workers > 1:
        path = Path(tempfile.mkdtemp(prefix="control-plane-metrics-"))
        atexit.register(shutil.rmtree, path, True)
        os.environ[MULTIPROC_ENV] = str(path)


def _multiprocess_mode() -> bool:
    return bool(os.environ.get(MULTIPROC_ENV))


@dataclass(frozen=True, slots=True)
class BatchCounters:
    """A batched database call's pair: calls that returned, and the items they carried (their
    ratio is items per round trip)."""

    calls: Any
    items: Any

    def observe(self, items: int) -> None:
        self.calls.inc()
        self.items.inc(items)


class _ProcessMetrics:
    """The request counter and histogram and the coalescer counters. In multiprocess mode their
    values live in the shared files (registry=None); else in `registry`."""

    LABELS = ("route", "method", "status")

    def __init__(self) -> None:
        from prometheus_client import (
            CollectorRegistry,
            Counter,
            Gauge,
            Histogram,
            disable_created_metrics,
        )

        # No *_created series: they double the output, nobody reads them. (The function has no
        # annotations in prometheus_client.)
        disable_created_metrics()  # type: ignore[no-untyped-call]
        self.registry = CollectorRegistry()
        target = None if _multiprocess_mode() else self.registry
        self.requests = Counter(
            "control_plane_http_requests",
            "HTTP requests served, by route template, method and status.",
            self.LABELS,
            registry=target,
        )
        self.latency = Histogram(
            "control_plane_http_request_duration_seconds",
            "HTTP request latency (request received to the last response chunk handed to the "
            "server), by route template, method and status.",
            self.LABELS,
            buckets=LATENCY_BUCKETS,
            registry=target,
        )

        def batch_counters(
            calls: str, call_help: str, items: str, items_help: str
        ) -> BatchCounters:
            return BatchCounters(
                Counter(calls, call_help, registry=target),
                Counter(items, items_help, registry=target),
            )

        self.heartbeat_batch = batch_counters(
            "control_plane_heartbeat_batches",
            "runtime_node_heartbeat_batch calls that returned (one database round trip each).",
            "control_plane_heartbeat_batch_beats",
            "Heartbeats carried by those calls (divided by batches: beats per round trip).",
        )
        self.feed_own_read = batch_counters(
            "control_plane_feed_own_reads",
            "runtime_node_events_read_batch_v2 calls that returned: the change feed's own "
            "(authorizing) reads, one database round trip each.",
            "control_plane_feed_own_read_callers",
            "Feed requests authorized by those calls (divided by calls: callers per round trip).",
        )
        self.feed_reauthorization = batch_counters(
            "control_plane_feed_reauthorizations",
            "runtime_node_events_authorize_v2 calls that returned: the periodic re-checks of "
            "idle SSE streams, one database round trip each.",
            "control_plane_feed_reauthorized_streams",
            "Stream re-checks carried by those calls (divided by calls: streams per round trip).",
        )
        # livesum: the sum over the workers that are alive (a dead worker's waiters are gone).
        subscribers = Gauge(
            "control_plane_feed_subscribers",
            "Change-feed requests held open waiting for events, by transport (long_poll, sse).",
            ["transport"],
            registry=target,
            multiprocess_mode="livesum",
        )
        self.feed_subscribers = {t: subscribers.labels(t) for t in FEED_TRANSPORTS}
        self.feed_delivery_lag = Histogram(
            "control_plane_feed_delivery_lag_seconds",
            "From an event's commit time (database clock) to its hand-off to a woken follower.",
            buckets=FEED_LAG_BUCKETS,
            registry=target,
        )
        # Labelled children, resolved once per (route, method, status): the hot path does one
        # dict lookup instead of prometheus_client's label validation on every request.
        self.children: dict[tuple[str, str, int], tuple[Any, Any]] = {}


@cache
def _process_metrics() -> _ProcessMetrics:
    return _ProcessMetrics()


def process_registry() -> CollectorRegistry:
    """This process's own metrics (in multiprocess mode the values are in the shared files)."""
    return _process_metrics().registry


@contextmanager
def feed_subscriber(transport: str) -> Iterator[None]:
    """Counts a change-feed request in `control_plane_feed_subscribers` while it waits."""
    gauge = _process_metrics().feed_subscribers[transport]
    gauge.inc()
    try:
        yield
    finally:
        gauge.dec()


def observe_feed_delivery(lag_seconds: float) -> None:
    _process_metrics().feed_delivery_lag.observe(max(0.0, lag_seconds))


def observe_feed_own_read(callers: int) -> None:
    _process_metrics().feed_own_read.observe(callers)


def observe_feed_reauthorization(streams: int) -> None:
    _process_metrics().feed_reauthorization.observe(streams)


def observe_heartbeat_batch(beats: int) -> None:
    _process_metrics().heartbeat_batch.observe(beats)


def observe_request(route: str, method: str, status: int, seconds: float) -> None:
    metrics = _process_metrics()
    key = (route, method, status)
    pair = metrics.children.get(key)
    if pair is None:
        labels = (route, method, str(status))
        pair = (metrics.requests.labels(*labels), metrics.latency.labels(*labels))
        metrics.children[key] = pair
    pair[0].inc()
    pair[1].observe(seconds)


class MetricsMiddleware:
    """Counts every routed request. Litestar sets `path_template` once the router matched, so
    labels are route templates (`/v1/runtime-nodes/{nodeId:str}/heartbeat`), never raw paths.
    Requests no route matches (404 from the router) never reach route middleware."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP:
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500  # if the app fails before it starts a response
        observed = False

        def observe() -> None:
            nonlocal observed
            observed = True
            observe_request(
                scope.get("path_template") or "unmatched",
                str(scope.get("method", "GET")),
                status,
                time.perf_counter() - start,
            )

        async def send_with_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            elif (
                message["type"] == "http.response.body"
                and not message.get("more_body", False)
                and not observed
            ):
                # Counted before the last byte goes out: a client that has its response and
                # then scrapes /metrics always finds its request counted (no race).
                observe()
            await send(message)

        try:
            await self.app(scope, receive, send_with_status)
        finally:
            if not observed:  # the app failed or the client went away before the end
                observe()


class DatabaseMetrics:
    """The database-derived gauges, refreshed at most every DB_CACHE_SECONDS per process."""

    def __init__(self) -> None:
        self._snapshot: dict[str, Any] | None = None
        self._fetched_at = -math.inf  # time.monotonic() of the last attempt
        self._lock = asyncio.Lock()
        from prometheus_client import CollectorRegistry

        self.registry: CollectorRegistry = CollectorRegistry()
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
        from prometheus_client.core import GaugeMetricFamily

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
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

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
    from prometheus_client.core import GaugeMetricFamily

    family = GaugeMetricFamily(name, documentation)
    family.add_metric([], value)
    return family


def _per_label(
    name: str, documentation: str, label: str, values: tuple[str, ...], counts: dict[str, Any]
) -> GaugeMetricFamily:
    from prometheus_client.core import GaugeMetricFamily

    family = GaugeMetricFamily(name, documentation, labels=[label])
    for value in values:  # every state present, zero when no row has it
        family.add_metric([value], float(counts.get(value, 0)))
    return family


def render(database: DatabaseMetrics) -> bytes:
    """The Prometheus text exposition: request metrics, then the database gauges."""
    from prometheus_client import CollectorRegistry, generate_latest, multiprocess

    if _multiprocess_mode():
        requests = CollectorRegistry()
        multiprocess.MultiProcessCollector(requests)  # type: ignore[no-untyped-call]
    else:
        requests = _process_metrics().registry
    return generate_latest(requests) + generate_latest(database.registry)
