"""The change feed over HTTP (contract §9): `GET /v1/sessions/{sessionId}/runtime-nodes/events`.

- JSON (default): one page `{events, next}`; with `wait > 0` and nothing newer the request is
  held until an event of the session commits (woken by the worker's LISTEN connection,
  control_plane/feed.py) or `wait` elapses (then an empty page).
- `Accept: text/event-stream`: an SSE stream (`id`, `event: <kind>`, `data: <event JSON>`)
  resuming after `Last-Event-ID` (else `after`), with a comment line and a re-read (which
  re-checks the caller's authorization in SQL) at least every keep-alive interval (15 s); it
  ends when the caller may no longer read the session, or the cursor expired.

Every read is decided in SQL: a participant's own read is one call of
`runtime_node_events_read_batch_v2` shared with the callers that want the same page at the same
moment, each authorized with its own token (control_plane/feed.py, OwnReads); the admin token's
is `admin_session_events_v2` (contract §11). Authorization, the 410 for an expired cursor and
the 400 for a bad limit are decided there.
"""

from __future__ import annotations

import re
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

import asyncpg
import msgspec
from litestar import Request, Response, get
from litestar.response import ServerSentEvent, ServerSentEventMessage

from control_plane import errors
from control_plane.admission import AdmittedPool
from control_plane.auth import Auth, auth_opt, is_admin, participant_digest
from control_plane.database import CONNECTION_ERRORS
from control_plane.errors import DomainError, SqlStateRefusal
from control_plane.feed import (
    FeedHub,
    OwnReads,
    OwnVerdicts,
    PageKey,
    Reauthorizations,
    SharedReads,
    Waiter,
    reauthorize_at,
)
from control_plane.http import json_response, path_uuid
from control_plane.metrics import feed_subscriber, observe_feed_delivery
from control_plane.schemas import EventsPage
from routes._common import (
    INVALID,
    NOT_FOUND,
    PERMISSION_DENIED,
    RATE_LIMITED,
    REFUSE_EARLY,
    UNAUTHENTICATED,
    UNAVAILABLE,
    admin_pool_of,
    pool_of,
    problems,
    settings_of,
)

Req = Request[Any, Any, Any]

DEFAULT_LIMIT = 100
MAX_LIMIT = 1000
MAX_WAIT_SECONDS = 60.0
_MAX_CURSOR = 2**63 - 1
_INTEGER = re.compile(r"0|[1-9][0-9]{0,18}")
_SECONDS = re.compile(r"(0|[1-9][0-9]?)(\.[0-9]{1,3})?")
_PARTICIPANT_SQL = "SELECT control_plane.runtime_node_events_read_v2($1, $2, $3, $4)"
_BATCH_SQL = (
    "SELECT sqlstates, page FROM control_plane.runtime_node_events_read_batch_v2($1, $2, $3, $4)"
)
_AUTHORIZE_SQL = "SELECT control_plane.runtime_node_events_authorize_v2($1, $2)"
_ADMIN_SQL = "SELECT control_plane.admin_session_events_v2($1, $2, $3)"
# Refusals that end an SSE stream (the caller lost access, or must re-read the roster).
CURSOR_EXPIRED = errors.SQLSTATE_ERRORS["CPG10"]
_STREAM_ENDING_SQLSTATES = frozenset({"CP401", "CP403", "CPN04", "CPG10"})


class _Page(msgspec.Struct):
    events: list[msgspec.Raw]
    next: int


class _EventHead(msgspec.Struct):
    id: int
    kind: str
    at: datetime


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
        limit = DEFAULT_LIMIT  # its range is checked in SQL (page_limit), with every other list
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
class Page:
    """A decoded page: each event's id and kind with its JSON as the database wrote it."""

    events: list[tuple[int, str, msgspec.Raw]]
    next: int
    full: bool  # a full page: more events may be waiting right after `next`

    def json(self) -> bytes:
        return b'{"events":[%s],"next":%d}' % (
            b",".join(raw for _, _, raw in self.events),
            self.next,
        )


def decode_page(text: str, limit: int) -> Page:
    raw = _page_decoder.decode(text)
    events = []
    for event in raw.events:
        head = _head_decoder.decode(event)
        events.append((head.id, head.kind, event))
    return Page(events, raw.next, len(events) >= limit)


async def shared_fetch(
    api_pool: asyncpg.Pool, admin_pool: asyncpg.Pool, session: str, after: int, digest: bytes | None
) -> Page:
    """The fetch behind SharedReads: one page for every follower of `session` in this worker
    whose authorization is fresh, read with the first follower's own credential — the API role
    and a member's token for participants, the admin role only for admin-token followers."""
    if digest is None:
        text = await admin_pool.fetchval(_ADMIN_SQL, UUID(session), after, MAX_LIMIT)
    else:
        text = await api_pool.fetchval(_PARTICIPANT_SQL, digest, UUID(session), after, MAX_LIMIT)
    return decode_page(str(text), MAX_LIMIT)


async def own_fetch(api_pool: asyncpg.Pool, key: PageKey, digests: list[bytes]) -> OwnVerdicts:
    """The fetch behind OwnReads: every caller's verdict and the page, in one call."""
    session, after, limit = key
    row = await api_pool.fetchrow(_BATCH_SQL, digests, UUID(session), after, limit)
    assert row is not None  # a function with OUT parameters returns exactly one row
    return list(row["sqlstates"]), row["page"]


async def authorize_fetch(
    api_pool: asyncpg.Pool, _key: None, items: list[tuple[bytes, str]]
) -> list[str | None]:
    """The fetch behind Reauthorizations: one verdict per (token digest, session)."""
    verdicts = await api_pool.fetchval(
        _AUTHORIZE_SQL, [digest for digest, _ in items], [UUID(s) for _, s in items]
    )
    return list(verdicts)


def _sqlstate(exc: Exception) -> str | None:
    if isinstance(exc, SqlStateRefusal):
        return exc.sqlstate
    return getattr(exc, "sqlstate", None)


@dataclass(slots=True)
class _Reader:
    """One caller's reads of one session's feed (admin or participant)."""

    pool: AdmittedPool  # routes._common.pool_of: each read admitted (control_plane/admission.py)
    session: UUID
    digest: bytes | None  # None: the admin token
    limit: int
    own: OwnReads
    reauthorizations: Reauthorizations
    shared: SharedReads[Page]
    fresh_for: float  # seconds an own read's authorization is relied upon (the keep-alive)
    authorized_at: float = float("-inf")

    async def read(self, after: int | None) -> str:
        """A read with the caller's own credentials: authorization checked in SQL, now."""
        if self.digest is None:
            text = await self.pool.fetchval(_ADMIN_SQL, self.session, after, self.limit)
        else:
            verdict, text = await self.own.read(str(self.session), after, self.limit, self.digest)
            if verdict == "CPG10":  # raised by the single read, with the function's message
                text = await self.pool.fetchval(
                    _PARTICIPANT_SQL, self.digest, self.session, after, self.limit
                )
            elif verdict is not None:
                raise SqlStateRefusal(verdict)  # mapped like a raised SQLSTATE (problems.py)
        self.authorized_at = time.monotonic()
        return str(text)

    @property
    def reauthorize_at(self) -> float:
        """When an idle stream re-checks the caller: within `fresh_for` of the last check, on
        the worker's grid so that idle streams are re-checked together (feed.reauthorize_at)."""
        if self.digest is None:  # the admin token's re-read: its own call, as before
            return self.authorized_at + self.fresh_for
        return reauthorize_at(self.authorized_at, self.fresh_for)

    async def reauthorize(self, after: int) -> Page:
        """An idle stream's periodic re-check (contract §9): the caller's token and membership
        now, in one call with the worker's other streams due at the same instant; no events
        are read (there is no news). The admin token re-reads (the session must still exist)."""
        if self.digest is None:
            return decode_page(await self.read(after), self.limit)
        verdict = await self.reauthorizations.check(self.digest, str(self.session))
        if verdict is not None:
            raise SqlStateRefusal(verdict)
        self.authorized_at = time.monotonic()
        return Page([], after, False)

    async def follow(self, after: int) -> Page:
        """The events after `after` once woken, their delivery lag observed (/metrics)."""
        page = await self._follow(after)
        if page.events:
            newest = _head_decoder.decode(page.events[-1][2]).at
            observe_feed_delivery(time.time() - newest.timestamp())
        return page

    async def _follow(self, after: int) -> Page:
        """From the worker's shared read of the session while this caller's authorization is
        at most `fresh_for` old, else its own read (which re-checks it; contract §9: at least
        every 15 s)."""
        if time.monotonic() - self.authorized_at >= self.fresh_for:
            return decode_page(await self.read(after), self.limit)
        try:
            page = await self.shared.read(str(self.session), after, self.digest)
        except asyncpg.PostgresError:
            # The credential the shared read went out with was refused (that follower lost
            # access) or its cursor expired: this caller's own read decides for this caller.
            return decode_page(await self.read(after), self.limit)
        mine = [e for e in page.events if e[0] > after]
        if len(mine) > self.limit:
            return Page(mine[: self.limit], mine[self.limit - 1][0], True)
        return Page(mine, max(after, page.next), page.full or len(mine) == self.limit)


def _hub(request: Req) -> FeedHub:
    hub: FeedHub = request.app.state.feed
    return hub


@get(
    "/sessions/{session_id:str}/runtime-nodes/events",
    summary="Follow a session's change feed (page, long-poll or SSE)",
    responses=problems(
        INVALID,
        UNAUTHENTICATED,
        PERMISSION_DENIED,
        NOT_FOUND,
        CURSOR_EXPIRED,
        RATE_LIMITED,
        UNAVAILABLE,
    ),
    response_description="{events, next}; or an SSE stream with Accept: text/event-stream",
    opt=auth_opt(Auth.ADMIN_OR_PARTICIPANT),
    middleware=REFUSE_EARLY,
)
async def events(request: Req, session_id: str) -> Response[EventsPage]:
    """The session's events after `after` in id order (`{events, next}`; pass `next` as `after`
    next time). With `wait` > 0 and nothing newer, held until an event of the session commits or
    `wait` seconds pass (then an empty page). With `Accept: text/event-stream`, a server-sent
    event stream resuming after `Last-Event-ID`, with a keep-alive comment and a re-check of the
    caller's authorization at least every 15 s. Active members of the session, or the admin
    token (404 for an unknown session); `410 events.cursor_expired` when `after` is older than
    the retention horizon: re-read the roster and follow from its `revision`."""
    sid = path_uuid(session_id, "sessionId")
    after, limit, wait = _query(request)
    authorization = request.headers.get("authorization")
    as_admin = is_admin(authorization, settings_of(request).admin_token)
    keepalive = settings_of(request).feed_keepalive_seconds
    reader = _Reader(
        admin_pool_of(request) if as_admin else pool_of(request),
        sid,
        None if as_admin else participant_digest(authorization),
        limit,
        request.app.state.feed_own_reads,
        request.app.state.feed_reauthorizations,
        request.app.state.feed_reads,
        keepalive,
    )
    if _wants_stream(request):
        resume = _last_event_id(request)
        cursor = resume if resume is not None else after
        _hub(request).check_capacity()  # a 503 now, not a broken stream later
        first = await reader.read(cursor)  # refusals (400/401/403/404/410) as problems
        stream = _stream(_hub(request), reader, decode_page(first, limit), keepalive)
        return ServerSentEvent(  # type: ignore[return-value]
            stream, headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"}
        )
    if wait <= 0:
        return json_response(await reader.read(after))
    return json_response(await _long_poll(_hub(request), reader, after, wait))


async def _long_poll(hub: FeedHub, reader: _Reader, after: int | None, wait: float) -> bytes | str:
    deadline = time.monotonic() + wait
    with hub.waiter(str(reader.session)) as waiter, feed_subscriber("long_poll"):
        # Registered before the read: an event committing after it wakes us (no lost wake-up).
        text = await reader.read(after)
        page = decode_page(text, reader.limit)
        if page.events:
            return text
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not await _woken_with_news(waiter, page.next, remaining, deadline):
                return page.json()  # wait elapsed: the empty page (its `next` is still valid)
            waiter.take()
            page = await reader.follow(page.next)
            if page.events:
                return page.json()


async def _woken_with_news(waiter: Waiter, cursor: int, remaining: float, deadline: float) -> bool:
    """Wait until a wake-up that may concern events after `cursor`; False when time is up."""
    while await waiter.wait(remaining):
        if waiter.news_after(cursor):
            return True
        waiter.take()  # only events we already have were announced
        remaining = deadline - time.monotonic()
    return False


async def _stream(
    hub: FeedHub, reader: _Reader, first: Page, keepalive: float
) -> AsyncIterator[ServerSentEventMessage]:
    for event in first.events:
        yield _message(event)
    position = first.next
    next_comment = time.monotonic() + keepalive
    with hub.waiter(str(reader.session)) as waiter, feed_subscriber("sse"):
        # Catch up with anything committed between the first read and the registration.
        page = await _reread(reader, position)
        while page is not None:
            for event in page.events:
                yield _message(event)
            position = page.next
            if page.full:  # more may be waiting
                waiter.take()
                page = await _reread(reader, position)
                continue
            # Wait for news, at most until the next comment or the caller's re-check is due.
            now = time.monotonic()
            recheck = reader.reauthorize_at
            until = min(next_comment, recheck)
            woke = await _woken_with_news(waiter, position, max(0.0, until - now), until)
            if time.monotonic() >= next_comment:
                yield ServerSentEventMessage(data=None, comment="keep-alive")
                next_comment = time.monotonic() + keepalive
            if woke:  # news: read (with the caller's own token if its check is due)
                waiter.take()
                page = await _reread(reader, position)
            elif time.monotonic() >= recheck:  # idle: re-check the caller, read nothing
                page = await _reread(reader, position, reauthorize=True)
            else:
                page = Page([], position, False)  # only the comment was due


async def _reread(reader: _Reader, after: int, *, reauthorize: bool = False) -> Page | None:
    """The next page (or, with `reauthorize`, only the caller's re-check), or None when the
    stream must end (access lost, cursor expired). A database outage or a shed call keeps the
    stream open: the next tick tries again."""
    try:
        return await (reader.reauthorize(after) if reauthorize else reader.follow(after))
    except DomainError as exc:
        if exc.kind is errors.UNAVAILABLE:
            return Page([], after, False)
        raise
    except (asyncpg.PostgresError, SqlStateRefusal) as exc:
        if _sqlstate(exc) in _STREAM_ENDING_SQLSTATES:
            return None
        if errors.kind_for_sqlstate(_sqlstate(exc)) is errors.UNAVAILABLE:
            return Page([], after, False)
        raise
    except CONNECTION_ERRORS:
        return Page([], after, False)


def _message(event: tuple[int, str, msgspec.Raw]) -> ServerSentEventMessage:
    event_id, kind, raw = event
    return ServerSentEventMessage(data=bytes(raw).decode(), event=kind, id=event_id)
