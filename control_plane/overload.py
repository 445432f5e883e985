"""Wires the overload protection into a worker at start-up: admission gates and rate limits in
`app.state` (read by routes._common.pool_of), and the sampler behind the overload gauges."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from litestar import Litestar

from control_plane.admission import Admission, RequestClass, reserved_connections
from control_plane.config import Settings
from control_plane.connection_limits import open_connections
from control_plane.overload_metrics import sample_forever
from control_plane.rate_limit import RateLimits

log = logging.getLogger("control_plane")


def start_overload_protection(app: Litestar, settings: Settings) -> None:
    admission = Admission.from_settings(settings)
    app.state.admission = admission
    app.state.rate_limits = RateLimits(settings)
    reserved = reserved_connections(settings)
    if reserved > settings.pool_size:
        log.warning(
            "ADMISSION_WRITES + ADMISSION_READS + HEARTBEAT_MAX_IN_FLIGHT = %d "
            "exceeds DB_POOL_SIZE = %d: heartbeat batches may wait for a connection behind "
            "other requests",
            reserved,
            settings.pool_size,
        )

    def sample() -> dict[str, Any]:
        beats = app.state.heartbeats
        in_flight = {name: n for name, (n, _) in admission.in_flight().items()}
        queued = {name: q for name, (_, q) in admission.in_flight().items()}
        in_flight[RequestClass.HEARTBEAT] = beats.batches_in_flight
        queued[RequestClass.HEARTBEAT] = beats.queued
        queued["feed"] = app.state.feed.waiters
        return {"in_flight": in_flight, "queued": queued, "connections": open_connections()}

    app.state.overload_sampler = asyncio.get_running_loop().create_task(sample_forever(sample))


async def stop_overload_protection(app: Litestar) -> None:
    task: asyncio.Task[None] | None = app.state.get("overload_sampler")
    if task is not None:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task  # sample_forever logs and survives its own errors
