"""The overload metrics on /metrics: shed and rate-limited requests by class, database calls in
flight and queued per class, feed waiters, beats waiting for a batch, connections closed by the
connection guard.

Counters are incremented where a request is refused (never on the accepted path). The gauges are
sampled by each worker twice a second (`sample_forever`) instead of being updated per request:
the hot path pays nothing, and a scrape sees values at most 0.5 s old. In multiprocess mode (two
or more workers) gauges are summed over the live workers.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable
from functools import cache
from typing import Any

from control_plane.metrics import MULTIPROC_ENV, process_registry

SAMPLE_SECONDS = 0.5
log = logging.getLogger("control_plane")


class _OverloadMetrics:
    def __init__(self) -> None:
        from prometheus_client import Counter, Gauge

        target = None if os.environ.get(MULTIPROC_ENV) else process_registry()
        self.shed = Counter(
            "control_plane_requests_shed",
            "Requests refused with 503 for want of capacity, by request class (heartbeat, write, "
            "read, admin, feed).",
            ["class"],
            registry=target,
        )
        self.rate_limited = Counter(
            "control_plane_requests_rate_limited",
            "Requests refused with 429 request.rate_limited, by request class.",
            ["class"],
            registry=target,
        )
        self.in_flight = Gauge(
            "control_plane_admission_in_flight",
            "Database calls in flight per request class (heartbeat: beats in batches out).",
            ["class"],
            registry=target,
            multiprocess_mode="livesum",
        )
        self.queued = Gauge(
            "control_plane_admission_queued",
            "Requests waiting for an admission slot per class (heartbeat: beats waiting for the "
            "next batch; feed: long-poll/SSE requests waiting for news).",
            ["class"],
            registry=target,
            multiprocess_mode="livesum",
        )
        self.connections = Gauge(
            "control_plane_http_connections",
            "Open client connections.",
            registry=target,
            multiprocess_mode="livesum",
        )
        self.closed = Counter(
            "control_plane_http_connections_closed",
            "Client connections closed by the connection guard, by reason (header_timeout, "
            "body_timeout, headers_too_large, connection_limit).",
            ["reason"],
            registry=target,
        )


@cache
def _metrics() -> _OverloadMetrics:
    return _OverloadMetrics()


def count_shed(request_class: str) -> None:
    _metrics().shed.labels(request_class).inc()


def count_rate_limited(request_class: str) -> None:
    _metrics().rate_limited.labels(request_class).inc()


def count_closed(reason: str) -> None:
    _metrics().closed.labels(reason).inc()


Sample = Callable[[], dict[str, Any]]


async def sample_forever(sample: Sample) -> None:
    """Every SAMPLE_SECONDS: `sample()` → {"in_flight": {class: n}, "queued": {class: n},
    "connections": n} into the gauges. Runs until cancelled (app shutdown)."""
    metrics = _metrics()
    while True:
        try:
            values = sample()
            for name, n in values["in_flight"].items():
                metrics.in_flight.labels(name).set(n)
            for name, n in values["queued"].items():
                metrics.queued.labels(name).set(n)
            metrics.connections.set(values["connections"])
        except Exception:  # a gauge is not worth a worker: log, keep sampling
            log.exception("overload metrics sample failed")
        await asyncio.sleep(SAMPLE_SECONDS)
