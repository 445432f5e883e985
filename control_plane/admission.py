"""Admission control: per worker, a bounded number of database calls in flight per request class.

Without it, overload means every request queues on the pool until the 8 s call deadline
(database.DeadlinePool) and every class competes equally: a burst of rosters or attaches starves
heartbeats, and a starved heartbeat becomes a false degraded/offline. So each class gets its own
slots (`ADMISSION_*`), a short bounded queue in front of them (`ADMISSION_QUEUE`, waiting at most
`ADMISSION_QUEUE_WAIT_MS`), and beyond that a request is shed at once: 503 `service.unavailable`
with a jittered `Retry-After` (contract §10), which costs the database nothing.

Classes, from the route template and method (`classify`):
- heartbeat: never through here. Beats have their own capacity — the coalescer's connection(s)
  (`HEARTBEAT_MAX_IN_FLIGHT`) that the other classes' slots leave free — and are shed last: a
  beat waits for the next batch (it costs almost nothing there) and is refused only when more
  than `HEARTBEAT_MAX_QUEUED` beats already wait (`heartbeat_shed`).
- write: attach, declaration, capability update, detach, revoke.
- read: roster and the change feed's reads. A long-poll or SSE request holds a slot only while
  it queries; while it waits it is one of the feed's waiters, bounded on their own
  (`FEED_MAX_WAITERS`, control_plane/feed.py).
- admin: `/v1/admin/*`.
Operations endpoints (/healthz, /readyz, /metrics) are not admitted: they bound themselves.

Handlers reach the database through `routes._common.pool_of(request)`, which returns an
`AdmittedPool` for the request's class after the per-token rate check (control_plane.rate_limit),
so every route, present or future, is admitted without code of its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from dataclasses import dataclass
from enum import StrEnum
from functools import cache
from types import TracebackType
from typing import Any

import asyncpg

from control_plane import errors
from control_plane.config import Settings
from control_plane.errors import DomainError
from control_plane.overload_metrics import count_shed
from control_plane.problems import retry_after

# Overload passes within seconds (a burst, a reconnect wave): retry after 1-2 s, not the 5-10 s
# of a database outage.
SHED_RETRY_AFTER_BASE_SECONDS = 1
SHED_DETAIL = "the service is overloaded; retry later"


class RequestClass(StrEnum):
    HEARTBEAT = "heartbeat"
    WRITE = "write"
    READ = "read"
    ADMIN = "admin"


@cache
def classify(path_template: str, method: str) -> RequestClass | None:
    """The request class of a route (None: an operations endpoint, not admitted)."""
    if not path_template.startswith("/v1/"):
        return None
    if path_template.startswith("/v1/admin/"):
        return RequestClass.ADMIN
    if method == "POST" and path_template.endswith("/heartbeat"):
        return RequestClass.HEARTBEAT
    if method in ("GET", "HEAD"):
        return RequestClass.READ
    return RequestClass.WRITE


def shed(
    request_class: RequestClass | str, base: int = SHED_RETRY_AFTER_BASE_SECONDS
) -> DomainError:
    """The 503 for a request refused for want of capacity (counted by class)."""
    count_shed(str(request_class))
    return DomainError(errors.UNAVAILABLE, SHED_DETAIL, {"Retry-After": retry_after(base)})


# The most a shed request is told to wait (uniform over [base, 2 × base]).
MAX_SHED_RETRY_AFTER_BASE_SECONDS = 30


class Gate:
    """`limit` holders at once, then up to `queue` waiters served first come first served, each
    for at most `wait` seconds; anyone beyond is shed. A released slot is handed straight to the
    oldest waiter (no thundering herd, no barging)."""

    __slots__ = (
        "name", "limit", "queue", "wait", "in_flight", "_waiters",
        "_window", "_served", "_shed", "_served_before", "_shed_before",
    )  # fmt: skip

    def __init__(self, name: RequestClass, limit: int, queue: int, wait: float) -> None:
        self.name = name
        self.limit = limit
        self.queue = queue
        self.wait = wait
        self.in_flight = 0
        self._waiters: deque[asyncio.Future[bool]] = deque()
        # Admitted and shed requests in this second and the one before (for retry_base).
        self._window = 0
        self._served = self._shed = self._served_before = self._shed_before = 0

    @property
    def waiting(self) -> int:
        return len(self._waiters)

    def full(self) -> bool:
        """No slot and no queue place: a request now would be shed (checked early, before
        its body is read, by refusals.RefuseEarlyMiddleware)."""
        return self.in_flight >= self.limit and len(self._waiters) >= self.queue

    def refuse(self) -> DomainError:
        self._tick(shed=1)
        return shed(self.name, self.retry_base())

    def retry_base(self) -> int:
        """The Retry-After base for a shed request: demand over capacity in the last second
        (shed / admitted), so that the refused spread their retries over about the time the
        class needs to serve them — a fleet returning at once comes back over a minute, not in
        waves that are refused again. 1 s when barely over, at most 30 s."""
        ratio = max(self._shed, self._shed_before) / max(1, self._served, self._served_before)
        return max(
            SHED_RETRY_AFTER_BASE_SECONDS, min(MAX_SHED_RETRY_AFTER_BASE_SECONDS, round(ratio))
        )

    def _tick(self, served: int = 0, shed: int = 0) -> None:
        second = int(time.monotonic())
        if second != self._window:
            recent = second == self._window + 1
            self._served_before = self._served if recent else 0
            self._shed_before = self._shed if recent else 0
            self._served = self._shed = 0
            self._window = second
        self._served += served
        self._shed += shed

    async def __aenter__(self) -> None:
        if self.in_flight < self.limit and not self._waiters:
            self.in_flight += 1
            self._tick(served=1)
            return
        if len(self._waiters) >= self.queue:
            raise self.refuse()
        loop = asyncio.get_running_loop()
        future: asyncio.Future[bool] = loop.create_future()
        self._waiters.append(future)
        timer = loop.call_later(self.wait, _expire, future)
        try:
            granted = await future
        except asyncio.CancelledError:
            # The request went away while waiting; a slot handed over meanwhile is passed on.
            if future.done() and not future.cancelled() and future.result():
                self._release()
            else:
                self._forget(future)
            raise
        finally:
            timer.cancel()
        if not granted:  # waited `wait` seconds without a slot
            self._forget(future)
            raise self.refuse()
        self._tick(served=1)

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._release()

    def _release(self) -> None:
        while self._waiters:
            future = self._waiters.popleft()
            if not future.done():
                future.set_result(True)  # the slot changes hands; in_flight stays
                return
        self.in_flight -= 1

    def _forget(self, future: asyncio.Future[bool]) -> None:
        with contextlib.suppress(ValueError):
            self._waiters.remove(future)


def _expire(future: asyncio.Future[bool]) -> None:
    if not future.done():
        future.set_result(False)


class AdmittedPool:
    """The pool as a request of one class sees it: each call holds one of the class's slots
    for exactly the duration of the database call (never while the body is read or the
    response written, so a slow client holds no slot)."""

    __slots__ = ("_pool", "_gate")

    def __init__(self, pool: asyncpg.Pool, gate: Gate | contextlib.nullcontext[None]) -> None:
        self._pool = pool
        self._gate = gate

    async def execute(self, query: str, *args: Any, timeout: float | None = None) -> str:
        async with self._gate:
            result: str = await self._pool.execute(query, *args, timeout=timeout)
            return result

    async def fetch(self, query: str, *args: Any, timeout: float | None = None) -> list[Any]:
        async with self._gate:
            result: list[Any] = await self._pool.fetch(query, *args, timeout=timeout)
            return result

    async def fetchrow(self, query: str, *args: Any, timeout: float | None = None) -> Any:
        async with self._gate:
            return await self._pool.fetchrow(query, *args, timeout=timeout)

    async def fetchval(
        self, query: str, *args: Any, column: int = 0, timeout: float | None = None
    ) -> Any:
        async with self._gate:
            return await self._pool.fetchval(query, *args, column=column, timeout=timeout)


_UNGATED: contextlib.nullcontext[None] = contextlib.nullcontext()


@dataclass
class Admission:
    """One worker's gates (built at start-up, kept in app.state)."""

    gates: dict[RequestClass, Gate]
    heartbeat_max_queued: int

    @classmethod
    def from_settings(cls, settings: Settings) -> Admission:
        wait = settings.admission_queue_wait_ms / 1000
        limits = {
            RequestClass.WRITE: settings.admission_writes,
            RequestClass.READ: settings.admission_reads,
            RequestClass.ADMIN: settings.admission_admin,
        }
        gates = {
            name: Gate(name, limit, settings.admission_queue, wait)
            for name, limit in limits.items()
        }
        return cls(gates, settings.heartbeat_max_queued)

    def pool_for(self, pool: asyncpg.Pool, request_class: RequestClass | None) -> AdmittedPool:
        gate = self.gates.get(request_class) if request_class is not None else None
        return AdmittedPool(pool, gate if gate is not None else _UNGATED)

    def heartbeat_shed(self, queued: int) -> DomainError | None:
        """The refusal for a beat arriving when `queued` beats already wait, or None (batched)."""
        return shed(RequestClass.HEARTBEAT) if queued >= self.heartbeat_max_queued else None

    def in_flight(self) -> dict[str, tuple[int, int]]:
        """Per class: (database calls in flight, requests queued for a slot)."""
        return {str(name): (gate.in_flight, gate.waiting) for name, gate in self.gates.items()}


def reserved_connections(settings: Settings) -> int:
    """API-pool connections the participant classes may hold at once, with the heartbeat
    batches' own: above DB_POOL_SIZE, beats may wait behind other classes. (Admin calls use
    the admin role's pool.)"""
    return settings.admission_writes + settings.admission_reads + settings.heartbeat_max_in_flight
