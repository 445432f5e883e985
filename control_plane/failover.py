"""What the pool does when the database it reached is no longer (or not yet) the primary.

A connection may outlive its server's role: after a failover the pool can hold a connection to a
member that is now a standby (a proxy that follows the primary routed it there a moment before
the new primary accepted writes, or a demoted primary kept running). Every write on it fails with
25006 `read-only transaction`; reused, it would fail every request it serves. So on 25006 the
connection is terminated (never returned to the pool) and every other idle connection is expired
(they may point at the same member); the request answers 503 + Retry-After and the next one
connects afresh, which `target_session_attrs=read-write` or the proxy directs to the primary
(contract §13, docs/deploy.md).

Connection-level failures (08xxx, 57P01 admin shutdown, 57P02 crash, 57P03 cannot connect now,
a socket closed mid-call) already leave asyncpg's pool without that connection; they map to 503
through `errors.kind_for_sqlstate` and `database.CONNECTION_ERRORS`.
"""

from __future__ import annotations

import logging
from typing import Any

import asyncpg

log = logging.getLogger("control_plane")

READ_ONLY_SQLSTATE = "25006"


def is_read_only(exc: BaseException) -> bool:
    return isinstance(exc, asyncpg.PostgresError) and exc.sqlstate == READ_ONLY_SQLSTATE


async def call_on_primary(
    pool: asyncpg.Pool, method: str, query: str, *args: Any, **kw: Any
) -> Any:
    """`pool.<method>(query, *args)` on one pooled connection; a connection that turns out to be
    on a read-only server is discarded instead of being handed out again."""
    async with pool.acquire() as conn:
        try:
            return await getattr(conn, method)(query, *args, **kw)
        except asyncpg.PostgresError as exc:
            if is_read_only(exc):
                await discard_read_only(pool, conn)
            raise


async def discard_read_only(pool: asyncpg.Pool, conn: Any) -> None:
    log.warning("connected server is read-only (a standby): dropping its pooled connections")
    conn.terminate()  # released as closed: the pool opens a new one on the next acquire
    await pool.expire_connections()  # the others are replaced as they come back
