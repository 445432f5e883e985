"""Coalesces concurrent heartbeats into one set-based SQL call per database round trip.

A heartbeat request enqueues (token digest, node id, health) and awaits its own verdict. When
no batch is in flight the first beat is sent at once (no added latency when idle); beats that
arrive while a batch is in flight wait for the next one, so under load each round trip carries
many beats. Every item is authorized with its own token inside
`control_plane.runtime_node_heartbeat_batch`, which returns one HTTP status per item: a batch
never mixes up callers, and a refused item gets its own 401/403.
"""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg

_BATCH_SQL = "SELECT control_plane.runtime_node_heartbeat_batch($1::bytea[], $2::text[], $3::text[])"

Item = tuple[bytes, str, str, "asyncio.Future[int]"]


class HeartbeatCoalescer:
    def __init__(self, pool: asyncpg.Pool, *, max_batch: int = 512, max_in_flight: int = 2):
        self._pool = pool
        self._max_batch = max_batch
        self._max_in_flight = max_in_flight
        self._pending: list[Item] = []
        self._in_flight = 0

    async def beat(self, digest: bytes, node_id: str, health: str) -> int:
        """The HTTP status for this heartbeat (204, 400, 401 or 403); raises on database faults."""
        future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._pending.append((digest, node_id, health, future))
        if self._in_flight < self._max_in_flight:
            self._in_flight += 1
            asyncio.get_running_loop().create_task(self._drain())
        return await future

    async def _drain(self) -> None:
        try:
            while self._pending:
                batch = self._pending[: self._max_batch]
                del self._pending[: self._max_batch]
                await self._send(batch)
        finally:
            self._in_flight -= 1

    async def _send(self, batch: list[Item]) -> None:
        try:
            statuses: list[int] = await self._pool.fetchval(
                _BATCH_SQL,
                [item[0] for item in batch],
                [item[1] for item in batch],
                [item[2] for item in batch],
            )
        except BaseException as exc:  # every waiter gets the fault (→ 503), none hangs
            _fail(batch, exc)
            if not isinstance(exc, Exception):
                raise
            return
        if statuses is None or len(statuses) != len(batch):
            _fail(batch, RuntimeError("heartbeat batch returned a verdict count that does not match"))
            return
        for item, status in zip(batch, statuses, strict=True):
            if not item[3].done():  # the client may have gone away
                item[3].set_result(status)


def _fail(batch: list[Item], exc: BaseException) -> None:
    for item in batch:
        future: Any = item[3]
        if not future.done():
            future.set_exception(exc if isinstance(exc, Exception) else asyncio.CancelledError())
