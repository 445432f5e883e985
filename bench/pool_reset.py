"""What skipping asyncpg's pool reset buys: pool calls per second with asyncpg's default reset on
release (a second round trip: unlock advisory locks, CLOSE ALL, UNLISTEN *, RESET ALL) versus the
app's no-op reset (control_plane/database.py), one connection, sequential calls.

    python bench/pool_reset.py DATABASE_URL [SECONDS] → one JSON line
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg

from control_plane.config import load_settings
from control_plane.database import _no_reset, api_connect_kwargs

Reset = Callable[[asyncpg.Connection], Awaitable[None]]


async def _rate(reset: Reset | None, seconds: float, kwargs: dict[str, Any]) -> float:
    extra: dict[str, Any] = {} if reset is None else {"reset": reset}
    pool = await asyncpg.create_pool(min_size=1, max_size=1, **extra, **kwargs)
    try:
        calls, deadline = 0, time.perf_counter() + seconds
        while time.perf_counter() < deadline:
            await pool.fetchval("SELECT 1")
            calls += 1
        return calls / seconds
    finally:
        await pool.close()


async def main() -> None:
    url = sys.argv[1]
    seconds = float(sys.argv[2]) if len(sys.argv) > 2 else 3.0
    kwargs = api_connect_kwargs(load_settings({"DATABASE_URL": url}))
    default = await _rate(None, seconds, kwargs)
    no_reset = await _rate(_no_reset, seconds, kwargs)
    print(
        json.dumps(
            {
                "default_reset_calls_per_s": round(default, 1),
                "no_reset_calls_per_s": round(no_reset, 1),
                "speedup": round(no_reset / default, 2),
            }
        )
    )


if __name__ == "__main__":
    asyncio.run(main())
