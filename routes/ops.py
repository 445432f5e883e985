"""Operations endpoints (no auth): liveness, readiness."""

from __future__ import annotations

import json
import time
from typing import Any

from litestar import Request, Response, get

from control_plane.config import SQL_DIR
from control_plane.database import CONNECTION_ERRORS
from control_plane.http import encode_json
from routes._common import pool_of

Req = Request[Any, Any, Any]


def expected_migrations() -> list[str]:
    """Migration ids this code was written for (yoyo ids are the file stems)."""
    return sorted(
        p.stem
        for p in (SQL_DIR / "migrations").glob("*.sql")
        if not p.stem.endswith(".rollback") and not p.stem.startswith("post-apply")
    )


@get("/healthz", include_in_schema=True, tags=["operations"])
async def healthz() -> dict[str, str]:
    """The process is up (no database check)."""
    return {"status": "ok"}


async def readiness_reasons(request: Req) -> tuple[list[str], dict[str, Any]]:
    """Why the service is not ready (empty when ready), and the database status it read."""
    try:
        raw = await pool_of(request).fetchval("SELECT control_plane.ops_status()")
    except CONNECTION_ERRORS:
        return ["database unreachable"], {}
    except Exception as exc:  # a missing function means the schema is not there yet
        return [f"database status unavailable: {type(exc).__name__}"], {}
    status = json.loads(raw)
    reasons: list[str] = []
    applied = set(status.get("migrations") or [])
    missing = [m for m in expected_migrations() if m not in applied]
    if missing:
        reasons.append(f"schema behind: {len(missing)} migration(s) not applied")
    sweep = status.get("sweep") or {}
    started = request.app.state.started_monotonic
    age = sweep.get("ageSeconds")
    interval = sweep.get("intervalSeconds") or 5
    # pg_cron < 1.5 first sweeps at the next full minute: no verdict in the first 75 s.
    if time.monotonic() - started > 75 and (age is None or age > 3 * interval):
        reasons.append("sweep stale: no sweep finished within 3 intervals")
    if sweep.get("mode") == "stall_hold":
        reasons.append("outage guard holding offline demotions (no heartbeats arrive)")
    return reasons, status


@get("/readyz", tags=["operations"])
async def readyz(request: Req) -> Response[Any]:
    """Ready: database reachable, schema at head, sweep fresh, outage guard not holding."""
    reasons, status = await readiness_reasons(request)
    body = {
        "status": "ready" if not reasons else "not ready",
        "reasons": reasons,
        "sweep": status.get("sweep"),
    }
    return Response(
        encode_json(body), status_code=200 if not reasons else 503, media_type="application/json"
    )
