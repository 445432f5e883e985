"""Change-feed fan-out (contract §9): one LISTEN connection per worker wakes the requests that
wait for a session's events.

NOTIFY is only a wake-up: its payload ('<session>:<highest event id>', written by
runtime_node_events_append at commit) says which session has news, never what the news is, and
a woken request reads the events from the table through the same SQL function as any other
read. Waiting requests issue no queries while idle.

No wake-up is ever lost:
- a request registers its waiter *before* it reads the table, so an event that commits after
  the read wakes it (the waiter's flag stays set until it waits);
- while the LISTEN connection is down, notifications are lost; when it is back (a new
  connection and LISTEN), every waiter is woken once and re-reads the table from its cursor.

Memory is bounded: at most `max_waiters` waiters per worker (more → 503 with Retry-After), each a
small object in a per-session set, removed when its request ends (also on client disconnect:
the waiter is released in a `finally`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import random
from collections.abc import Callable, Coroutine, Iterator
from contextlib import AbstractAsyncContextManager
from typing import Any, Generic, TypeVar

import asyncpg

from control_plane import errors
from control_plane.config import Settings
from control_plane.database import api_connect_kwargs
from control_plane.errors import DomainError
from control_plane.metrics import observe_feed_own_read, observe_feed_reauthorization
from control_plane.overload_metrics import count_shed

log = logging.getLogger("control_plane.feed")

CHANNEL = "control_plane_events"
_RECONNECT_MIN_S = 0.2
_RECONNECT_MAX_S = 5.0
_LIVENESS_CHECK_S = 1.0  # how often the listener looks at its socket (no query)
T = TypeVar("T")
WAKE_ALL = -1  # a waiter's `notified` after a reconnect: something may be new, re-read


class Waiter:
    """One waiting request: a flag plus the highest event id announced for its session."""

    __slots__ = ("session", "notified", "_event")

    def __init__(self, session: str) -> None:
        self.session = session
        self.notified = 0  # highest announced id; WAKE_ALL when unknown (after a reconnect)
        self._event = asyncio.Event()

    def wake(self, max_id: int) -> None:
        if max_id == WAKE_ALL or self.notified == WAKE_ALL:
            self.notified = WAKE_ALL
        else:
            self.notified = max(self.notified, max_id)
        self._event.set()

    def news_after(self, cursor: int) -> bool:
        """Whether the announcements since the last `take` may hold events after `cursor`."""
        return self.notified == WAKE_ALL or self.notified > cursor

    def take(self) -> None:
        """Forget the announcements seen so far (call before reading the table)."""
        self.notified = 0
        self._event.clear()

    async def wait(self, timeout: float) -> bool:
        """Until woken (True) or `timeout` seconds (False); returns at once if already woken."""
        if self._event.is_set():
            return True
        try:
            async with asyncio.timeout(max(0.0, timeout)):
                await self._event.wait()
        except TimeoutError:
            return False
        return True


class FeedHub:
    """Per-worker registry of waiters and the LISTEN connection that wakes them."""

    def __init__(self, settings: Settings) -> None:
        kwargs = api_connect_kwargs(settings)
        # The pool's session settings, under this connection's own name in pg_stat_activity.
        server_settings = dict(kwargs.pop("server_settings", None) or {})
        server_settings["application_name"] = "control-plane-feed"
        # Connect timeout: the URL's (connect_timeout), else 5 s, as the pool.
        self._connect_kwargs = {"timeout": 5, **kwargs, "server_settings": server_settings}
        self._max_waiters = max(1, settings.feed_max_waiters)
        self._by_session: dict[str, set[Waiter]] = {}
        self._count = 0
        self._task: asyncio.Task[None] | None = None
        self._conn: asyncpg.Connection | None = None
        self._lost = asyncio.Event()
        # Observability (metrics, tests, bench): notifications seen, LISTEN (re)connects.
        self.notifications = 0
        self.connects = 0
        self.listening = False

    # --- waiters ----------------------------------------------------------------------------

    @property
    def waiters(self) -> int:
        return self._count

    def check_capacity(self) -> None:
        """503 when this worker already holds its maximum of waiting requests."""
        if self._count >= self._max_waiters:
            count_shed("feed")
            raise DomainError(errors.UNAVAILABLE, "too many requests are waiting; retry later")

    @contextlib.contextmanager
    def waiter(self, session: str) -> Iterator[Waiter]:
        """Register a waiter for `session` for the duration of the block."""
        self.check_capacity()
        waiter = Waiter(session)
        self._by_session.setdefault(session, set()).add(waiter)
        self._count += 1
        try:
            yield waiter
        finally:
            peers = self._by_session.get(session)
            if peers is not None:
                peers.discard(waiter)
                if not peers:
                    del self._by_session[session]
            self._count -= 1

    def _wake_session(self, session: str, max_id: int) -> None:
        for waiter in self._by_session.get(session, ()):
            waiter.wake(max_id)

    def _wake_all(self) -> None:
        for peers in self._by_session.values():
            for waiter in peers:
                waiter.wake(WAKE_ALL)

    # --- the LISTEN connection --------------------------------------------------------------

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="feed-listen")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
            self._task = None
        self._wake_all()  # waiting requests re-read once and end at their deadline

    def _on_notify(self, _conn: Any, _pid: int, _channel: str, payload: str) -> None:
        self.notifications += 1
        session, _, max_id = payload.partition(":")
        try:
            announced = int(max_id)
        except ValueError:
            announced = WAKE_ALL  # an unexpected payload: wake that session, it re-reads
        self._wake_session(session, announced)

    def _on_terminate(self, _conn: Any) -> None:
        self._lost.set()

    async def _run(self) -> None:
        delay = _RECONNECT_MIN_S
        while True:
            try:
                conn = await asyncpg.connect(**self._connect_kwargs)
            except Exception as exc:  # whatever it is, keep trying: the fan-out must come back
                log.warning("feed: LISTEN connection failed (%r); retrying in %.1fs", exc, delay)
                await asyncio.sleep(delay * random.uniform(1.0, 1.5))
                delay = min(_RECONNECT_MAX_S, delay * 2)
                continue
            self._lost.clear()
            try:
                conn.add_termination_listener(self._on_terminate)
                await conn.add_listener(CHANNEL, self._on_notify)
                self._conn, self.listening = conn, True
                self.connects += 1
                delay = _RECONNECT_MIN_S
                # Anything announced while we were not listening is lost: every waiter re-reads.
                self._wake_all()
                while not conn.is_closed() and not self._lost.is_set():
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(_LIVENESS_CHECK_S):
                            await self._lost.wait()
                log.warning("feed: LISTEN connection lost; reconnecting")
            except Exception as exc:
                log.warning("feed: LISTEN failed (%r); reconnecting", exc)
            finally:
                self.listening = False
                self._conn = None
                if not conn.is_closed():
                    conn.terminate()
            await asyncio.sleep(delay * random.uniform(1.0, 1.5))


K = TypeVar("K")
Item = TypeVar("Item")
MAX_SLOT_BATCH = 1000  # items per call; beyond, a second batch opens


class SlotBatches(Generic[K, Item, T]):
    """Calls that are due together and share a key become one database call over all their
    items; the call takes one admission slot of the read class and its batch stays open to
    newcomers until that slot is granted. An idle service adds one loop iteration; a busy one
    puts more items in each call (the heartbeat coalescer's idea, for the feed's reads).
    `submit` returns the call's result and the caller's index in it; a fault of the call (503,
    400, ...) reaches every caller of the batch."""

    def __init__(
        self,
        slot: Callable[[], AbstractAsyncContextManager[Any]],
        fetch: Callable[[K, list[Item]], Coroutine[Any, Any, T]],
        observe: Callable[[int], None],  # items per call that returned (metrics)
    ) -> None:
        self._slot = slot
        self._fetch = fetch
        self._observe = observe
        self._open: dict[K, _SlotBatch[Item, T]] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    async def submit(self, key: K, item: Item) -> tuple[T, int]:
        batch = self._open.get(key)
        if batch is None or len(batch.items) >= MAX_SLOT_BATCH:
            batch = _SlotBatch[Item, T](asyncio.get_running_loop().create_future())
            self._open[key] = batch
            task = asyncio.get_running_loop().create_task(self._run(key, batch))
            self._tasks.add(task)  # the loop keeps only a weak reference
            task.add_done_callback(self._tasks.discard)
        index = len(batch.items)
        batch.items.append(item)
        # shield: one caller going away must not cancel the call the others wait for.
        return await asyncio.shield(batch.future), index

    async def _run(self, key: K, batch: _SlotBatch[Item, T]) -> None:
        try:
            # The admission slot first: until it is granted the batch takes newcomers.
            async with self._slot():
                self._close(key, batch)
                result = await self._fetch(key, batch.items)
            self._observe(len(batch.items))
        except asyncio.CancelledError:  # the worker is stopping
            self._close(key, batch)
            batch.future.cancel()
            raise
        except Exception as exc:
            self._close(key, batch)
            batch.future.set_exception(exc)
            batch.future.add_done_callback(_retrieve)  # no "never retrieved" if all left
        else:
            batch.future.set_result(result)

    def _close(self, key: K, batch: _SlotBatch[Item, T]) -> None:
        if self._open.get(key) is batch:
            del self._open[key]


class _SlotBatch(Generic[Item, T]):
    __slots__ = ("items", "future")

    def __init__(self, future: asyncio.Future[T]) -> None:
        self.items: list[Item] = []
        self.future = future


# An own read's answer: one verdict per caller (None: may read, else the SQLSTATE of its
# refusal) and the page every caller with a None verdict may read (None when nobody may).
OwnVerdicts = tuple[list[str | None], str | None]
PageKey = tuple[str, int | None, int]  # session, cursor, limit


class OwnReads:
    """Own reads (each caller's authorization checked in SQL, now) of the same page — one
    session, cursor and limit — become one database call that checks every caller's token and
    membership and reads the page once (`runtime_node_events_read_batch_v2`).

    Why: every long-poll request starts with an own read, and the followers of a session that
    one wake-up answered come back together, with the same cursor. One read per request queued
    them on the read class's few admission slots (measured: own reads waited 150-475 ms p50 in
    a worker while the shared reads took 10 ms)."""

    def __init__(
        self,
        slot: Callable[[], AbstractAsyncContextManager[Any]],
        fetch: Callable[[PageKey, list[bytes]], Coroutine[Any, Any, OwnVerdicts]],
    ) -> None:
        self._batches = SlotBatches[PageKey, bytes, OwnVerdicts](slot, fetch, observe_feed_own_read)

    async def read(
        self, session: str, after: int | None, limit: int, digest: bytes
    ) -> tuple[str | None, str | None]:
        """(verdict, page) for this caller: see OwnVerdicts."""
        (verdicts, page), index = await self._batches.submit((session, after, limit), digest)
        return verdicts[index], page


# A shared read's key: the session, and whether its followers hold the admin token (admin and
# participant followers never share a call, so participant traffic never runs under the admin
# role). Its items: each follower's cursor and credential (a token digest, None for the admin).
SharedKey = tuple[str, bool]
SharedItem = tuple[int, bytes | None]


class SharedReads(Generic[T]):
    """Reads of one session's feed due at the same moment (the followers one NOTIFY woke)
    become one database call after the smallest of their cursors, made with the credential of
    the batch's first follower; each follower then keeps the events after its own cursor
    (routes/events.py). The data always comes from the table and every read is an authorized
    API call; only the round trips are shared. Not behind an admission slot: woken reads are
    bounded by the notifications, not by requests."""

    def __init__(self, fetch: Callable[[str, int, bytes | None], Coroutine[Any, Any, T]]) -> None:
        async def fetch_batch(key: SharedKey, items: list[SharedItem]) -> T:
            return await fetch(key[0], min(after for after, _ in items), items[0][1])

        self._batches = SlotBatches[SharedKey, SharedItem, T](
            contextlib.nullcontext, fetch_batch, lambda _: None
        )

    async def read(self, session: str, after: int, credential: bytes | None) -> T:
        page, _ = await self._batches.submit((session, credential is None), (after, credential))
        return page


# The re-authorization of idle SSE streams happens on a grid shared by the worker's streams, so
# that they are due together and one call re-checks them all, whatever their sessions.
REAUTHORIZE_GRID_PARTS = 3  # grid period: the keep-alive interval / 3


def reauthorize_at(authorized_at: float, keepalive: float) -> float:
    """The latest grid instant at most `keepalive` after `authorized_at` (monotonic clock):
    a stream is re-checked between 2/3 and all of `keepalive` after its last check, never
    later, and every stream of the worker due in that grid period at the same instant."""
    period = keepalive / REAUTHORIZE_GRID_PARTS
    return math.floor((authorized_at + keepalive) / period) * period


class Reauthorizations:
    """Idle SSE streams' re-checks (contract §9: at least every 15 s) due together — one grid
    instant, any sessions — become one call (`runtime_node_events_authorize_v2`): one verdict
    per (token digest, session). 1,000 idle streams cost one call per worker per grid period
    instead of one per stream per 15 s."""

    def __init__(
        self,
        slot: Callable[[], AbstractAsyncContextManager[Any]],
        fetch: Callable[[None, list[tuple[bytes, str]]], Coroutine[Any, Any, list[str | None]]],
    ) -> None:
        self._batches = SlotBatches[None, tuple[bytes, str], list[str | None]](
            slot, fetch, observe_feed_reauthorization
        )

    async def check(self, digest: bytes, session: str) -> str | None:
        """None (may still read the session) or the SQLSTATE of the refusal."""
        verdicts, index = await self._batches.submit(None, (digest, session))
        return verdicts[index]


def _retrieve(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()
