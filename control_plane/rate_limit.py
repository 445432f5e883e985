"""Per-token request rates on the non-heartbeat routes: 429 `request.rate_limited` with a
jittered `Retry-After` for a caller over its rate.

A token bucket per (bearer credential, request class): `RATE_LIMIT_<CLASS>_PER_S` requests per
second sustained, bursts of `RATE_LIMIT_BURST_S` seconds' worth. Heartbeats are never limited: a
daemon beating faster than advertised is coalesced into the next batch, never refused.

Counted per worker, as a documented share: each of the WEB_CONCURRENCY workers allows
rate / WEB_CONCURRENCY (and burst / WEB_CONCURRENCY, at least 1), so across the service a token
gets about its rate however the kernel spreads its connections. Why not a counter in PostgreSQL:
it would add a write (a round trip and a WAL record) to every limited request, exactly when the
service is busiest, to stop requests that are mostly cheap to refuse here; the check here costs
about a microsecond and no database work (docs/reliability.md, "Rate limits"). The price: a
client that holds a single keep-alive connection reaches one worker and so gets only its share.

Buckets are kept for at most MAX_KEYS credentials per worker; past that, full (idle) buckets are
dropped, and if none is idle all are (a flood of random tokens cannot grow memory).
"""

from __future__ import annotations

import hashlib
import time

from control_plane.admission import RequestClass
from control_plane.config import Settings

MAX_KEYS = 100_000


class TokenBuckets:
    """Buckets of one request class in one worker."""

    __slots__ = ("rate", "burst", "_buckets")

    def __init__(self, rate: float, burst: float) -> None:
        self.rate = rate
        self.burst = max(1.0, burst)
        self._buckets: dict[bytes, list[float]] = {}  # key → [tokens, monotonic of last update]

    def take(self, key: bytes, now: float) -> float:
        """Take one token: 0.0 when allowed, else the seconds until one is available."""
        bucket = self._buckets.get(key)
        if bucket is None:
            if len(self._buckets) >= MAX_KEYS:
                self._prune(now)
            self._buckets[key] = [self.burst - 1.0, now]
            return 0.0
        tokens = min(self.burst, bucket[0] + (now - bucket[1]) * self.rate)
        bucket[1] = now
        if tokens >= 1.0:
            bucket[0] = tokens - 1.0
            return 0.0
        bucket[0] = tokens
        return (1.0 - tokens) / self.rate

    def _prune(self, now: float) -> None:
        refill = self.burst / self.rate
        idle = [k for k, (_, at) in self._buckets.items() if now - at >= refill]
        for key in idle:
            del self._buckets[key]
        if len(self._buckets) >= MAX_KEYS:
            self._buckets.clear()


class RateLimits:
    """One worker's buckets per request class (None: that class is not limited)."""

    def __init__(self, settings: Settings) -> None:
        share = max(1, settings.workers)
        rates = {
            RequestClass.WRITE: settings.rate_limit_writes,
            RequestClass.READ: settings.rate_limit_reads,
            RequestClass.ADMIN: settings.rate_limit_admin,
        }
        self.classes: dict[RequestClass, TokenBuckets | None] = {
            name: (
                TokenBuckets(rate / share, rate * settings.rate_limit_burst_s / share)
                if rate > 0
                else None
            )
            for name, rate in rates.items()
        }

    def wait(self, request_class: RequestClass, authorization: bytes) -> float:
        """0.0 when this credential may make one more request of this class now, else the
        seconds until it may."""
        buckets = self.classes.get(request_class)
        if buckets is None:
            return 0.0
        return buckets.take(hashlib.sha256(authorization).digest(), time.monotonic())
