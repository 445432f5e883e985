"""The asyncpg pool of the HTTP tier, logged in as the EXECUTE-only API role."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any, TypeVar

import asyncpg

from control_plane.config import Settings
from control_plane.failover import call_on_primary

log = logging.getLogger("control_plane")

API_ROLE = "control_plane_api"
T = TypeVar("T")

# Errors meaning "no usable connection right now" → 503 (see problems.on_connection_error).
CONNECTION_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.CannotConnectNowError,
    # A pooled connection that has just received the server's FATAL (shutdown, crash) but whose
    # socket close is not processed yet is still handed out; using it raises this ("cannot
    # switch to state 12; another operation (2) is in progress"). The connection is dead → 503.
    asyncpg.InternalClientError,
)


def api_connect_kwargs(settings: Settings) -> dict[str, Any]:
    """Connection parameters for the API login role, derived from one DATABASE_URL.

    `CONTROL_PLANE_API_DATABASE_URL` wins when set. Otherwise the superuser URL is reused with the
    user swapped for `control_plane_api` and the password the migrate step generated (ignored by
    the embedded cluster's local trust). The URL itself goes to asyncpg as the DSN, so every
    parameter it understands (several hosts, `target_session_attrs`, TLS) is honoured; `user`
    and `password` given here override the URL's.
    """
    url = settings.api_database_url or settings.database_url
    kwargs: dict[str, Any] = {"dsn": url}
    if not settings.api_database_url:
        kwargs["user"] = API_ROLE
        kwargs["password"] = None
        if settings.api_password_file.exists():
            kwargs["password"] = settings.api_password_file.read_text().strip()
    return {k: v for k, v in kwargs.items() if v is not None}


async def _no_reset(_: asyncpg.Connection) -> None:
    """Connections never change session state (only function calls), so skip asyncpg's
    default reset, which would cost a second round trip on every release."""


# Every pool call ends within this: a request never waits longer for the database, whatever the
# database does. Above statement_timeout (5 s, the normal bound) and below common 10 s client
# timeouts, so a client hears 503 + Retry-After rather than timing out itself.
CALL_DEADLINE_SECONDS = 8.0


class DeadlinePool(asyncpg.Pool):
    """asyncpg's pool with a deadline over each whole call: waiting for a free connection,
    connecting, the query and the release.

    Why: against a server that is hung rather than down (frozen, storage stall, a network black
    hole) neither command_timeout nor cancelling the caller bounds a request: the query's
    timeout or cancellation makes asyncpg send a CancelRequest over a new connection to the same
    hung server and wait for it, and the pool's release waits for that too. So the call runs in
    its own task and the caller stops waiting at the deadline (503); the orphaned call is
    cancelled and finishes, or terminates its connection, whenever the server answers.
    """

    # Each call runs on one connection through failover.call_on_primary, which discards a
    # connection that turns out to be on a read-only server (a demoted or not-yet-promoted
    # member) instead of handing it out again.
    async def execute(self, query: str, *args: Any, timeout: float | None = None) -> str:
        result: str = await _within_deadline(
            call_on_primary(self, "execute", query, *args, timeout=timeout)
        )
        return result

    async def fetch(self, query: str, *args: Any, timeout: float | None = None, **kw: Any) -> Any:
        return await _within_deadline(
            call_on_primary(self, "fetch", query, *args, timeout=timeout, **kw)
        )

    async def fetchrow(
        self, query: str, *args: Any, timeout: float | None = None, **kw: Any
    ) -> Any:
        return await _within_deadline(
            call_on_primary(self, "fetchrow", query, *args, timeout=timeout, **kw)
        )

    async def fetchval(
        self, query: str, *args: Any, column: int = 0, timeout: float | None = None
    ) -> Any:
        return await _within_deadline(
            call_on_primary(self, "fetchval", query, *args, column=column, timeout=timeout)
        )


async def _within_deadline(call: Coroutine[Any, Any, T]) -> T:
    task = asyncio.ensure_future(call)
    try:
        done, _ = await asyncio.wait((task,), timeout=CALL_DEADLINE_SECONDS)
    except asyncio.CancelledError:  # the request itself was cancelled: do not leave the call
        task.cancel()
        task.add_done_callback(_consume)
        raise
    if not done:
        task.cancel()
        task.add_done_callback(_consume)
        raise TimeoutError(f"no answer from the database within {CALL_DEADLINE_SECONDS}s")
    return task.result()


def _consume(task: asyncio.Future[Any]) -> None:
    """Retrieve an orphaned call's outcome so asyncio does not log it as never retrieved."""
    if not task.cancelled():
        task.exception()


async def create_pool(settings: Settings) -> asyncpg.Pool:
    """A lazily-filled pool: the app starts (and answers 503) even while PostgreSQL is down."""
    pool = DeadlinePool(
        min_size=0,
        max_size=settings.pool_size,
        max_queries=50000,
        max_inactive_connection_lifetime=60,
        reset=_no_reset,
        loop=None,
        connection_class=asyncpg.Connection,
        record_class=asyncpg.Record,
        timeout=5,  # connect timeout
        command_timeout=10,  # client-side bound on a hung server (statement_timeout is 5 s)
        server_settings={"application_name": "control-plane-api"},
        **api_connect_kwargs(settings),
    )
    return await pool
