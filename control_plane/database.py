"""The asyncpg pool of the HTTP tier, logged in as the EXECUTE-only API role."""

from __future__ import annotations

import logging
from typing import Any

import asyncpg
from psycopg.conninfo import conninfo_to_dict

from control_plane.config import Settings

log = logging.getLogger("control_plane")

API_ROLE = "control_plane_api"

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
    the embedded cluster's local trust).
    """
    url = settings.api_database_url or settings.database_url
    params = conninfo_to_dict(url)
    kwargs: dict[str, Any] = {
        "host": params.get("host"),
        "port": int(params["port"]) if params.get("port") else None,
        "database": params.get("dbname"),
        "user": params.get("user"),
        "password": params.get("password"),
    }
    if not settings.api_database_url:
        kwargs["user"] = API_ROLE
        kwargs["password"] = None
        if settings.api_password_file.exists():
            kwargs["password"] = settings.api_password_file.read_text().strip()
    if params.get("sslmode"):
        kwargs["ssl"] = params["sslmode"]
    return {k: v for k, v in kwargs.items() if v is not None}


async def _no_reset(_: asyncpg.Connection) -> None:
    """Connections never change session state (only function calls), so skip asyncpg's
    default reset, which would cost a second round trip on every release."""


async def create_pool(settings: Settings) -> asyncpg.Pool:
    """A lazily-filled pool: the app starts (and answers 503) even while PostgreSQL is down."""
    return await asyncpg.create_pool(
        min_size=0,
        max_size=settings.pool_size,
        reset=_no_reset,
        timeout=5,  # connect timeout
        command_timeout=10,  # client-side bound on a hung server (statement_timeout is 5 s)
        max_inactive_connection_lifetime=60,
        server_settings={"application_name": "control-plane-api"},
        **api_connect_kwargs(settings),
    )
