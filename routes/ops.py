"""Operations endpoints (no auth): liveness, readiness, Prometheus metrics (contract §6.9)."""

from __future__ import annotations

import json
import time
from functools import cache
from typing import Any

import asyncpg
from litestar import Request, Response, get
from litestar.openapi.datastructures import ResponseSpec

from control_plane.auth import Auth, auth_opt
from control_plane.config import SQL_DIR
from control_plane.database import CONNECTION_ERRORS
from control_plane.http import encode_json
from control_plane.metrics import CONTENT_TYPE, DatabaseMetrics, render
from control_plane.schemas import HealthResult, ReadinessResult
from routes._common import INVALID, problems, raw_pool_of

Req = Request[Any, Any, Any]

# pg_cron < 1.5 sweeps from the next full minute on: no freshness verdict before this.
STARTUP_GRACE_SECONDS = 75.0
STALE_AFTER_INTERVALS = 3
# A probe must answer even when the pool is exhausted or the server hangs.
PROBE_TIMEOUT_SECONDS = 2.0
NO_STORE = {"Cache-Control": "no-store"}
# Probes and scrapers send no credentials (contract §6.9).
_NO_AUTH = auth_opt(Auth.NONE)
# They take no input; only a malformed request (a bad Host header, say) is refused.
_MALFORMED = problems(INVALID, details={INVALID.code: "Invalid host header"})
# What /metrics answers; the OpenAPI media type key omits the charset Litestar's docs add.
METRICS_MEDIA_TYPE = CONTENT_TYPE.split("; charset=", 1)[0]


@cache
def expected_migrations() -> tuple[str, ...]:
    """Migration ids this code was written for (yoyo ids are the file stems)."""
    return tuple(
        sorted(
            p.stem
            for p in (SQL_DIR / "migrations").glob("*.sql")
            if not p.stem.endswith(".rollback") and not p.stem.startswith("post-apply")
        )
    )


@get("/healthz", tags=["operations"], summary="Liveness probe", opt=_NO_AUTH, responses=_MALFORMED)
async def healthz() -> HealthResult:
    """The process is up and serving HTTP. It does not look at the database: use `/readyz` to
    decide whether to send traffic."""
    return HealthResult(status="ok")


async def readiness_reasons(request: Req) -> tuple[list[str], dict[str, Any]]:
    """Why the service is not ready (empty when ready), and the database status it read.

    One call to the cheap `ops_status()` (single-row reads; never counts nodes)."""
    try:
        async with raw_pool_of(request).acquire(timeout=PROBE_TIMEOUT_SECONDS) as conn:
            raw = await conn.fetchval(
                "SELECT control_plane.ops_status()", timeout=PROBE_TIMEOUT_SECONDS
            )
    except CONNECTION_ERRORS as exc:
        # With several hosts and target_session_attrs=read-write (or a proxy that follows the
        # primary), "unreachable" means no member currently accepts writes.
        return [f"database unreachable: no primary reachable ({type(exc).__name__})"], {}
    except asyncpg.UndefinedFunctionError:
        return ["schema behind: control_plane.ops_status() is missing"], {}
    except asyncpg.PostgresError as exc:
        return [f"database status unavailable: {exc.sqlstate}"], {}
    status = json.loads(raw)
    reasons: list[str] = []
    if status.get("inRecovery"):
        reasons.append("no primary reachable: the connected server is a standby (read-only)")
    applied = set(status.get("migrations") or [])
    missing = [m for m in expected_migrations() if m not in applied]
    if missing:
        reasons.append(f"schema behind: {len(missing)} migration(s) not applied")
    sweep = status.get("sweep") or {}
    age = sweep.get("ageSeconds")
    interval = sweep.get("intervalSeconds") or 5
    if time.monotonic() - request.app.state.started_monotonic > STARTUP_GRACE_SECONDS and (
        age is None or age > STALE_AFTER_INTERVALS * interval
    ):
        reasons.append(
            f"sweep stale: no sweep finished within {STALE_AFTER_INTERVALS} intervals "
            "(is pg_cron running on this primary?)"
        )
    if sweep.get("mode") == "stall_hold":
        reasons.append("outage guard holding offline demotions (no heartbeats arrive)")
    return reasons, status


@get(
    "/readyz",
    tags=["operations"],
    summary="Readiness probe",
    opt=_NO_AUTH,
    responses={
        **_MALFORMED,
        503: ResponseSpec(
            ReadinessResult,
            description="Not ready: `status` is `not ready` and `reasons` says why.",
            generate_examples=False,
        ),
    },
)
async def readyz(request: Req) -> Response[ReadinessResult]:
    """200 when the database is reachable, the schema is at head, the liveness sweep is fresh
    (its last run finished within 3 sweep intervals; not judged during the first 75 s after
    start) and the outage guard is not holding offline demotions; otherwise 503 with the
    reasons. Never cached."""
    reasons, status = await readiness_reasons(request)
    body = {
        "status": "ready" if not reasons else "not ready",
        "reasons": reasons,
        "sweep": status.get("sweep"),
    }
    payload: Any = encode_json(body)  # the database's sweep status as it is (ReadinessResult)
    return Response(
        payload,
        status_code=200 if not reasons else 503,
        media_type="application/json",
        headers=NO_STORE,
    )


@get(
    "/metrics",
    tags=["operations"],
    summary="Prometheus metrics",
    media_type=METRICS_MEDIA_TYPE,
    opt=_NO_AUTH,
    responses=_MALFORMED,
)
async def metrics(request: Req) -> Response[bytes]:
    """Prometheus text exposition (version 0.0.4): request counts and latency by route
    template, nodes per slot state and health, the sweep's age, duration and transitions, and
    the outage-guard mode. Database gauges are cached about 2 s."""
    state = request.app.state
    database: DatabaseMetrics | None = state.get("database_metrics")
    if database is None:
        database = state["database_metrics"] = DatabaseMetrics()
    await database.refresh(raw_pool_of(request))
    # The full media type as the header: Litestar appends `; charset=utf-8` to any `text/`
    # media_type it is given, and a second charset is refused by Prometheus 3.
    return Response(render(database), headers={**NO_STORE, "Content-Type": CONTENT_TYPE})
