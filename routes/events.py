"""The change feed over HTTP (contract §9): `GET /v1/sessions/{sessionId}/runtime-nodes/events`.

- JSON (default): one page `{events, next}`; with `wait > 0` and nothing newer the request is
  held until an event of the session commits (woken by the worker's LISTEN connection,
  control_plane/feed.py) or `wait` elapses (then an empty page).
- `Accept: text/event-stream`: an SSE stream (`id`, `event: <kind>`, `data: <event JSON>`)
  resuming after `Last-Event-ID` (else `after`), with a comment line and a re-read (which
  re-checks the caller's authorization in SQL) at least every keep-alive interval (15 s); it
  ends when the caller may no longer read the session, or the cursor expired.

Every read is one call of `runtime_node_events_read` (participant token) or
`admin_session_events` (the admin token, contract §11): authorization, the 410 for an expired
cursor and the 400 for a bad limit are decided there.
"""

from __future__ import annotations

import re
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any
from uuid import UUID

import asyncpg
import msgspec
from litestar import Request, Response, get
from litestar.response import ServerSentEvent, ServerSentEventMessage

from control_plane import errors
from control_plane.auth import is_admin, participant_digest
from control_plane.database import CONNECTION_ERRORS
from control_plane.errors import DomainError
from control_plane.feed import FeedHub, Waiter
from control_plane.http import json_response, path_uuid
from control_plane.schemas import EventsPage
from routes._common import pool_of, problems, settings_of

Req = Request[Any, Any, Any]

DEFAULT_LIMIT = 100
MAX_LIMIT = 1000
MAX_WAIT_SECONDS = 60.0
_MAX_CURSOR = 2**63 - 1
_INTEGER = re.compile(r"0|[1-9][0-9]{0,18}")
_SECONDS = re.compile(r"(0|[1-9][0-9]?)(\.[0-9]{1,3})?")
_PARTICIPANT_SQL = "SELECT control_plane.runtime_node_events_read($1, $2, $3, $4)"
_ADMIN_SQL = "SELECT control_plane.admin_session_events($1, $2, $3)"
# Refusals that end an SSE stream (the caller lost access, or must re-read the roster).
_STREAM_ENDING_SQLSTATES = frozenset({"CP401", "CP403", "CPN04", "CPG10"})


class _Page(msgspec.Struct):
    events: list[msgspec.Raw]
    next: int


class _EventHead(msgspec.Struct):
    id: int
    kind: str


_page_decoder = msgspec.json.Decoder(_Page)
_head_decoder = msgspec.json.Decoder(_EventHead)


def _integer(request: Req, name: str) -> int | None:
    raw = request.query_params.get(name)
    if raw is None:
        return None
    if _INTEGER.fullmatch(raw) is None or int(raw) > _MAX_CURSOR:
        raise DomainError(errors.INVALID, f"{name} must be a non-negative integer")
    return int(raw)


def _query(request: Req) -> tuple[int | None, int, float]:
    after = _integer(request, "after")
    limit = _integer(request, "limit")
    if limit is None:
        limit = DEFAULT_LIMIT
    elif not 1 <= limit <= MAX_LIMIT:
        raise DomainError(errors.INVALID, f"limit must be between 1 and {MAX_LIMIT}")
    raw_wait = request.query_params.get("wait")
    wait = 0.0
    if raw_wait is not None:
        if _SECONDS.fullmatch(raw_wait) is None or float(raw_wait) > MAX_WAIT_SECONDS:
            raise DomainError(errors.INVALID, "wait must be a number of seconds from 0 to 60")
        wait = float(raw_wait)
    return after, limit, wait


def _last_event_id(request: Req) -> int | None:
    raw = request.headers.get("last-event-id")
    if raw is None or not raw.strip():
        return None
    if _INTEGER.fullmatch(raw.strip()) is None:
        raise DomainError(errors.INVALID, "Last-Event-ID must be an event id")
    return int(raw.strip())


def _wants_stream(request: Req) -> bool:
    accept = request.headers.get("accept", "")
    return any(
        part.split(";", 1)[0].strip().lower() == "text/event-stream" for part in accept.split(",")
    )


@dataclass(frozen=True, slots=True)
class _Reader:
    """One caller's reads of one session's feed (admin or participant)."""

    pool: asyncpg.Pool
    session: UUID
    digest: bytes | None  # None: the admin token
    limit: int

    async def read(self, after: int | None) -> str:
        if self.digest is None:
            return str(await self.pool.fetchval(_ADMIN_SQL, self.session, after, self.limit))
        return str(
            await self.pool.fetchval(_PARTICIPANT_SQL, self.digest, self.session, after, self.limit)
        )


def _hub(request: Req) -> FeedHub:
    return request.app.state.feed


@get(
    "/sessions/{session_id:str}/runtime-nodes/events",
    responses=problems(400, 401, 403, 404, 410, 503),
    response_description="{events, next}; or an SSE stream with Accept: text/event-stream",
    tags=["runtime-nodes"],
)
async def events(request: Req, session_id: str) -> Response[EventsPage]:
    sid = path_uuid(session_id, "sessionId")
    after, limit, wait = _query(request)
    authorization = request.headers.get("authorization")
    as_admin = is_admin(authorization, settings_of(request).admin_token)
    reader = _Reader(
        pool_of(request), sid, None if as_admin else participant_digest(authorization), limit
    )
    if _wants_stream(request):
        resume = _last_event_id(request)
        cursor = resume if resume is not None else after
        first = await reader.read(cursor)  # refusals (400/401/403/404/410) as problems
        keepalive = settings_of(request).feed_keepalive_seconds
        stream = _stream(_hub(request), reader, first, keepalive)
        return ServerSentEvent(  # type: ignore[return-value]
            stream, headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"}
        )
    if wait <= 0:
        return json_response(await reader.read(after))
    return json_response(await _long_poll(_hub(request), reader, str(sid), after, wait))


async def _long_poll(
    hub: FeedHub, reader: _Reader, session: str, after: int | None, wait: float
) -> str:
    deadline = time.monotonic() + wait
    with hub.waiter(session) as waiter:
        # Registered before the read: an event committing after it wakes us (no lost wake-up).
        page = await reader.read(after)
        while True:
            decoded = _page_decoder.decode(page)
            remaining = deadline - time.monotonic()
            if decoded.events or remaining <= 0:
                return page
            if not await _woken_with_news(waiter, decoded.next, remaining, deadline):
                return page  # wait elapsed: the empty page (its `next` is still valid)
            waiter.take()
            page = await reader.read(decoded.next)


async def _woken_with_news(waiter: Waiter, cursor: int, remaining: float, deadline: float) -> bool:
    """Wait until a wake-up that may concern events after `cursor`; False when time is up."""
    while await waiter.wait(remaining):
        if waiter.news_after(cursor):
            return True
        waiter.take()  # only events we already have were announced
        remaining = deadline - time.monotonic()
    return False


async def _stream(
    hub: FeedHub, reader: _Reader, first: str, keepalive: float
) -> AsyncIterator[ServerSentEventMessage]:
    page = _page_decoder.decode(first)
    for raw in page.events:
        yield _message(raw)
    position = page.next
    with hub.waiter(str(reader.session)) as waiter:
        # Catch up with anything committed between the first read and the registration.
        page = await _reread(reader, position)
        while page is not None:
            for raw in page.events:
                yield _message(raw)
            position = page.next
            if len(page.events) == reader.limit:  # a full page: more may be waiting
                waiter.take()
                page = await _reread(reader, position)
                continue
            deadline = time.monotonic() + keepalive
            woke = await _woken_with_news(waiter, position, keepalive, deadline)
            if not woke:
                yield ServerSentEventMessage(data=None, comment="keep-alive")
            # Woken, or a keep-alive tick: the re-read also re-checks authorization (SQL).
            waiter.take()
            page = await _reread(reader, position)


async def _reread(reader: _Reader, after: int) -> _Page | None:
    """The next page, or None when the stream must end (access lost, cursor expired). A
    database outage keeps the stream open: the next tick tries again."""
    try:
        return _page_decoder.decode(await reader.read(after))
    except asyncpg.PostgresError as exc:
        if getattr(exc, "sqlstate", None) in _STREAM_ENDING_SQLSTATES:
            return None
        if errors.kind_for_sqlstate(getattr(exc, "sqlstate", None)) is errors.UNAVAILABLE:
            return _Page(events=[], next=after)
        raise
    except CONNECTION_ERRORS:
        return _Page(events=[], next=after)


def _message(raw: msgspec.Raw) -> ServerSentEventMessage:
    head = _head_decoder.decode(raw)
    return ServerSentEventMessage(data=bytes(raw).decode(), event=head.kind, id=head.id)
