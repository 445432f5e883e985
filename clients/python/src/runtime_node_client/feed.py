"""Following a session's change feed: list, then follow from the roster's revision, never miss.

`watch()` reads the Server-Sent Events stream of `GET /v1/sessions/{id}/runtime-nodes/events`.
After a dropped connection or a server restart it reconnects (jittered backoff, `Retry-After`
honoured) with `Last-Event-ID` set to the last event it yielded, so nothing is skipped or
repeated. When the cursor is older than the server's retention (410 `events.cursor_expired`)
it re-lists the roster and yields a `Resync` before following again from its revision.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncGenerator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import httpx
import msgspec

from runtime_node_client.errors import (
    CursorExpired,
    RetryableError,
    TransportError,
    error_from_response,
)
from runtime_node_client.models import Event, Roster

if TYPE_CHECKING:
    from runtime_node_client.client import ControlPlaneClient

_event_decoder = msgspec.json.Decoder(Event)
# The server sends a comment at least every 15 s: a silent connection for longer is dead.
READ_TIMEOUT_SECONDS = 45.0


@dataclass(frozen=True, slots=True)
class Resync:
    """The follower's state must be rebuilt from `roster`; events continue after its revision."""

    roster: Roster


async def watch(
    client: ControlPlaneClient, session_id: str, *, after: int | None
) -> AsyncGenerator[Event | Resync, None]:
    cursor = after
    if cursor is None:  # list, then follow from the listed revision
        roster = await client.roster(session_id)
        cursor = roster.revision
        yield Resync(roster)
    failures = 0
    while True:
        try:
            # aclosing: a consumer that stops early closes the HTTP stream here, not at exit.
            async with contextlib.aclosing(_stream(client, session_id, cursor)) as stream:
                async for event in stream:
                    failures = 0
                    cursor = event.id
                    yield event
            failures = 0  # the server ended the stream cleanly (e.g. a deploy): reconnect
        except CursorExpired:
            roster = await client.roster(session_id)
            cursor = roster.revision
            yield Resync(roster)
            continue
        except RetryableError as exc:
            failures += 1
            if failures >= client.retry.attempts:
                raise
            await asyncio.sleep(client.retry.backoff(failures, exc.retry_after))


async def _stream(
    client: ControlPlaneClient, session_id: str, cursor: int | None
) -> AsyncGenerator[Event, None]:
    headers = {"Accept": "text/event-stream"}
    if cursor is not None:
        headers["Last-Event-ID"] = str(cursor)
    timeout = httpx.Timeout(10.0, read=READ_TIMEOUT_SECONDS)
    url = f"/v1/sessions/{session_id}/runtime-nodes/events"
    started = time.monotonic()
    try:
        async with client.http.stream("GET", url, headers=headers, timeout=timeout) as response:
            if not response.is_success:
                await response.aread()
                raise error_from_response(response)
            data: list[str] = []
            async for line in response.aiter_lines():
                if line == "":
                    if data:
                        yield _event_decoder.decode("\n".join(data))
                        data = []
                    continue
                if line.startswith(":"):
                    continue  # keep-alive comment
                field, _, value = line.partition(":")
                if field == "data":
                    data.append(value[1:] if value.startswith(" ") else value)
    except httpx.TransportError as exc:
        raise TransportError(
            f"event stream lost after {time.monotonic() - started:.1f}s: {exc!r}"
        ) from exc
