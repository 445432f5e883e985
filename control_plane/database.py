"""The asyncpg pools of the HTTP tier: the API role's, and the admin role's (admin surface only).

Both roles may only EXECUTE functions; the admin_* functions are executable by the admin role
alone, so a leaked API-role credential cannot act as the admin (contract §8, §11).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any, TypeVar
from urllib.parse import parse_qsl, quote, unquote, urlencode

import asyncpg
from psycopg.conninfo import conninfo_to_dict

from control_plane.config import Settings

log = logging.getLogger("control_plane")

API_ROLE = "control_plane_api"
ADMIN_ROLE = "control_plane_admin"
DEFAULT_APPLICATION_NAME = "control-plane-api"
ADMIN_APPLICATION_NAME = "control-plane-admin"
# The admin surface is low-traffic operator work: a few connections per worker are plenty.
ADMIN_POOL_SIZE = 2
T = TypeVar("T")

# Errors meaning "no usable connection right now" → 503. The one list: the app's exception
# handlers (problems.exception_handlers), /readyz and the coalescer all use it.
CONNECTION_ERRORS: tuple[type[Exception], ...] = (
    OSError,  # includes ConnectionRefusedError and socket errors
    TimeoutError,  # connect timeout, or the pool's call deadline
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.CannotConnectNowError,
    # A pooled connection that has just received the server's FATAL (shutdown, crash) but whose
    # socket close is not processed yet is still handed out; using it raises this ("cannot
    # switch to state 12; another operation (2) is in progress"). The connection is dead → 503.
    asyncpg.InternalClientError,
)

# libpq connection parameters that asyncpg's DSN parser does not know. asyncpg would send each
# as a server setting in the startup packet, and the server refuses the login ("unrecognized
# configuration parameter"). The first three are translated (asyncpg_connect_args); the rest
# cannot be honoured by asyncpg and stop the start-up with their names, rather than being
# silently dropped (several are security settings: channel_binding, gssencmode, requirepeer...).
_TRANSLATED_LIBPQ_PARAMS = ("connect_timeout", "fallback_application_name")
_UNSUPPORTED_LIBPQ_PARAMS = frozenset(
    {
        "hostaddr",
        "keepalives",
        "keepalives_idle",
        "keepalives_interval",
        "keepalives_count",
        "tcp_user_timeout",
        "load_balance_hosts",
        "gssencmode",
        "gssdelegation",
        "channel_binding",
        "require_auth",
        "requirepeer",
        "requiressl",
        "sslcompression",
        "sslsni",
        "sslcertmode",
        "sslkeylogfile",
        "replication",
        "scram_client_key",
        "scram_server_key",
    }
)


class ConnectionConfigError(ValueError):
    """A database URL this driver cannot honour as given."""


def _is_url(dsn: str) -> bool:
    return dsn.startswith(("postgresql://", "postgres://"))


def _conninfo_to_url(conninfo: str) -> str:
    """A key=value conninfo as the equivalent URL (asyncpg takes URLs only): every parameter,
    host and port lists included, becomes a query parameter, which libpq and asyncpg both read."""
    params = conninfo_to_dict(conninfo)
    return "postgresql://?" + urlencode({k: str(v) for k, v in params.items()}, quote_via=quote)


def login_dsn(url: str, user: str, password: str | None) -> str:
    """`url` with only its login swapped: every host (multi-host lists too), port, database and
    libpq parameter is kept byte for byte; the user (and password) become `user`/`password`.

    `url` is a libpq URL or key=value conninfo (then converted to the equivalent URL). A user or
    password given as query parameters is removed, so the login is exactly the one given here.
    """
    if not _is_url(url):
        url = _conninfo_to_url(url)
    scheme, rest = url.split("://", 1)
    # authority = [userinfo@]hosts, up to the first '/', '?' or '#' (as libpq reads it).
    end = len(rest)
    for mark in "/?#":
        at = rest.find(mark)
        if at != -1:
            end = min(end, at)
    authority, tail = rest[:end], rest[end:]
    hosts = authority.split("@", 1)[1] if "@" in authority else authority
    path, sep, query = tail.partition("?")
    if sep:
        kept = [
            item
            for item in query.split("&")
            if unquote(item.split("=", 1)[0]) not in ("user", "password")
        ]
        tail = path + ("?" + "&".join(kept) if kept else "")
    userinfo = quote(user, safe="")
    if password is not None:
        userinfo += ":" + quote(password, safe="")
    return f"{scheme}://{userinfo}@{hosts}{tail}"


def asyncpg_connect_args(
    dsn: str, default_application_name: str = DEFAULT_APPLICATION_NAME
) -> dict[str, Any]:
    """Keyword arguments for asyncpg.connect/create_pool that honour every libpq parameter of
    `dsn` (a URL): what asyncpg reads itself stays in the DSN (hosts, ports, sslmode, sslrootcert,
    sslcert, sslkey, target_session_attrs, passfile, service, `options` — a startup parameter
    the server reads itself —, application_name and other server settings); `connect_timeout`
    becomes `timeout` and `fallback_application_name` the default application_name. Parameters
    asyncpg cannot honour raise ConnectionConfigError naming them."""
    if not _is_url(dsn):
        dsn = _conninfo_to_url(dsn)
    base, sep, rest = dsn.partition("?")
    query, hash_, fragment = rest.partition("#")
    params = dict(parse_qsl(query, keep_blank_values=True)) if sep else {}
    unsupported = sorted(set(params) & _UNSUPPORTED_LIBPQ_PARAMS)
    if unsupported:
        raise ConnectionConfigError(
            "the database URL has libpq parameter(s) the asyncpg driver cannot honour: "
            + ", ".join(unsupported)
        )
    kwargs: dict[str, Any] = {}
    timeout = params.get("connect_timeout")
    if timeout:
        try:
            seconds = float(timeout)
        except ValueError:
            raise ConnectionConfigError(
                f"connect_timeout must be a number of seconds, not {timeout!r}"
            ) from None
        if seconds > 0:  # libpq: 0 or negative = wait indefinitely (asyncpg: its default)
            kwargs["timeout"] = max(seconds, 2.0)  # libpq's minimum
    if "application_name" not in params:
        kwargs["server_settings"] = {
            "application_name": params.get("fallback_application_name") or default_application_name
        }
    if sep:
        kept = [
            item
            for item in query.split("&")
            if item and unquote(item.split("=", 1)[0]) not in _TRANSLATED_LIBPQ_PARAMS
        ]
        dsn = base + ("?" + "&".join(kept) if kept else "") + hash_ + fragment
    kwargs["dsn"] = dsn
    return kwargs


def api_dsn(settings: Settings) -> str:
    """How the API login role connects, derived from one DATABASE_URL.

    `CONTROL_PLANE_API_DATABASE_URL` wins when set (used as given). Otherwise `DATABASE_URL` with
    the login swapped for `control_plane_api` and the password the migrate step generated
    (ignored by the embedded cluster's local trust); every other parameter is kept.
    """
    if settings.api_database_url:
        return settings.api_database_url
    password = None
    if settings.api_password_file.exists():
        password = settings.api_password_file.read_text().strip()
    return login_dsn(settings.database_url, API_ROLE, password)


def api_connect_kwargs(settings: Settings) -> dict[str, Any]:
    """asyncpg connection arguments of the API login role (see api_dsn, asyncpg_connect_args)."""
    return asyncpg_connect_args(api_dsn(settings))


def admin_dsn(settings: Settings) -> str:
    """How the admin login role connects, derived like the API role's:
    `CONTROL_PLANE_ADMIN_DATABASE_URL` wins when set (used as given); otherwise `DATABASE_URL`
    as `control_plane_admin` with the password migrate generated into `admin-role.password`."""
    if settings.admin_database_url:
        return settings.admin_database_url
    password = None
    if settings.admin_password_file.exists():
        password = settings.admin_password_file.read_text().strip()
    return login_dsn(settings.database_url, ADMIN_ROLE, password)


def admin_connect_kwargs(settings: Settings) -> dict[str, Any]:
    """asyncpg connection arguments of the admin login role (see admin_dsn)."""
    return asyncpg_connect_args(admin_dsn(settings), ADMIN_APPLICATION_NAME)


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

    async def execute(self, query: str, *args: Any, timeout: float | None = None) -> str:
        return await _within_deadline(super().execute(query, *args, timeout=timeout))

    async def fetch(self, query: str, *args: Any, timeout: float | None = None, **kw: Any) -> Any:
        return await _within_deadline(super().fetch(query, *args, timeout=timeout, **kw))

    async def fetchrow(
        self, query: str, *args: Any, timeout: float | None = None, **kw: Any
    ) -> Any:
        return await _within_deadline(super().fetchrow(query, *args, timeout=timeout, **kw))

    async def fetchval(
        self, query: str, *args: Any, column: int = 0, timeout: float | None = None
    ) -> Any:
        return await _within_deadline(
            super().fetchval(query, *args, column=column, timeout=timeout)
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
    """The API role's pool."""
    return await _create_pool(api_connect_kwargs(settings), settings.pool_size)


async def create_admin_pool(settings: Settings) -> asyncpg.Pool:
    """The admin role's pool, used by the admin surface alone (after the admin token check)."""
    return await _create_pool(admin_connect_kwargs(settings), ADMIN_POOL_SIZE)


async def _create_pool(connect_kwargs: dict[str, Any], max_size: int) -> asyncpg.Pool:
    """A lazily-filled pool: the app starts (and answers 503) even while PostgreSQL is down."""
    pool = DeadlinePool(
        min_size=0,
        max_size=max_size,
        max_queries=50000,
        max_inactive_connection_lifetime=60,
        reset=_no_reset,
        loop=None,
        connection_class=asyncpg.Connection,
        record_class=asyncpg.Record,
        command_timeout=10,  # client-side bound on a hung server (statement_timeout is 5 s)
        **{"timeout": 5, **connect_kwargs},  # connect timeout: URL's, else 5 s
    )
    return await pool
