"""Coalesces concurrent heartbeats into one set-based SQL call per database round trip.

A heartbeat request enqueues (token digest, node id, health) and awaits its own item's verdict.
The first beat into an empty queue schedules a flush for the next event-loop iteration, so every
request parsed in the same iteration rides the same round trip without any timer (no added
latency when idle). Beats that arrive while `max_in_flight` batches are out wait for the next
one: under load each round trip carries many beats, and the database pays its per-call cost
(planning, transaction, commit) once per batch instead of once per request.

Every item is authorized with its own token inside
`control_plane.runtime_node_heartbeat_batch`, which returns one SQLSTATE per item (NULL =
accepted): a batch never mixes up callers, and a refused item gets its own problem, mapped through
the same table as every other handler's SQLSTATE (problems.sqlstate_problem).
"""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg
from litestar import Request

from control_plane.admission import RequestClass, shed
from control_plane.metrics import observe_heartbeat_batch

_BATCH_SQL = (
    "SELECT control_plane.runtime_node_heartbeat_batch($1::bytea[], $2::text[], $3::text[])"
)

# An item's verdict: None (accepted) or the SQLSTATE of its refusal.
Verdict = str | None


class HeartbeatCoalescer:
    """Per-process queue of heartbeats; one `runtime_node_heartbeat_batch` call per flush."""

    def __init__(
        self, pool: asyncpg.Pool, *, max_batch: int, max_in_flight: int, max_queued: int = 8192
    ) -> None:
        self._pool = pool
        self._max_batch = max(1, max_batch)
        self._max_in_flight = max(1, max_in_flight)
        # Beats waiting for a batch beyond which a beat is shed (503): waiting is cheap, so
        # this is the last capacity of the service to run out (control_plane/admission.py).
        self._max_queued = max(1, max_queued)
        # Parallel lists: the three become the call's array arguments without a copy loop.
        self._digests: list[bytes] = []
        self._nodes: list[str] = []
        self._healths: list[str] = []
        self._futures: list[asyncio.Future[Verdict]] = []
        self._in_flight = 0
        self._flush_scheduled = False
        self._loop: asyncio.AbstractEventLoop | None = None

    def beat(self, digest: bytes, node_id: str, health: str) -> asyncio.Future[Verdict]:
        """Enqueue one beat; the future gives its verdict (None, or the SQLSTATE of its refusal)
        or raises the database fault (→ 503). A plain method returning the future: no coroutine
        frame."""
        loop = self._loop
        if loop is None:
            loop = self._loop = asyncio.get_running_loop()
        future = loop.create_future()
        if len(self._futures) >= self._max_queued:
            future.set_exception(shed(RequestClass.HEARTBEAT))
            return future
        self._digests.append(digest)
        self._nodes.append(node_id)
        self._healths.append(health)
        self._futures.append(future)
        if not self._flush_scheduled and self._in_flight < self._max_in_flight:
            self._schedule_flush(loop)
        return future

    @property
    def queued(self) -> int:
        """Beats waiting for a batch."""
        return len(self._futures)

    @property
    def batches_in_flight(self) -> int:
        return self._in_flight

    def _schedule_flush(self, loop: asyncio.AbstractEventLoop) -> None:
        self._flush_scheduled = True
        loop.call_soon(self._flush)

    def _flush(self) -> None:
        """Start batches while capacity allows; called one loop iteration after the first beat
        into an empty queue, and whenever a batch completes."""
        self._flush_scheduled = False
        loop = self._loop
        assert loop is not None
        while self._futures and self._in_flight < self._max_in_flight:
            n = self._max_batch
            batch = (self._digests[:n], self._nodes[:n], self._healths[:n], self._futures[:n])
            del self._digests[:n], self._nodes[:n], self._healths[:n], self._futures[:n]
            self._in_flight += 1
            loop.create_task(self._send(*batch))

    async def _send(
        self,
        digests: list[bytes],
        nodes: list[str],
        healths: list[str],
        futures: list[asyncio.Future[Verdict]],
    ) -> None:
        try:
            verdicts: list[Verdict] | None = await self._pool.fetchval(
                _BATCH_SQL, digests, nodes, healths
            )
            if verdicts is None or len(verdicts) != len(futures):
                raise RuntimeError("heartbeat batch returned a verdict count that does not match")
        except BaseException as exc:  # every waiter gets the fault (→ 503), none hangs
            _fail(futures, exc)
            if isinstance(exc, TimeoutError):
                # The database did not answer within the pool's deadline (hung, not down): the
                # beats queued meanwhile would only wait that long again. Fail them now, so no
                # beat waits longer than one deadline in all.
                self._fail_queued(exc)
            if not isinstance(exc, Exception):
                raise
        else:
            observe_heartbeat_batch(len(futures))
            for future, verdict in zip(futures, verdicts, strict=True):
                if not future.done():  # the client may have gone away
                    future.set_result(verdict)
        finally:
            self._in_flight -= 1
            if self._futures and not self._flush_scheduled and self._loop is not None:
                self._schedule_flush(self._loop)

    def _fail_queued(self, exc: BaseException) -> None:
        futures = self._futures
        self._digests, self._nodes, self._healths, self._futures = [], [], [], []
        _fail(futures, exc)


def _fail(futures: list[asyncio.Future[Verdict]], exc: BaseException) -> None:
    error = exc if isinstance(exc, Exception) else asyncio.CancelledError()
    for future in futures:
        if not future.done():
            future.set_exception(error)


def coalescer_of(request: Request[Any, Any, Any]) -> HeartbeatCoalescer:
    coalescer: HeartbeatCoalescer = request.app.state.heartbeats
    return coalescer
