"""What every route module shares: the pool, settings, and documented error responses."""

from __future__ import annotations

from typing import Any

import asyncpg
from litestar import Request
from litestar.openapi.datastructures import ResponseSpec

from control_plane.config import Settings
from control_plane.problems import PROBLEM_MEDIA_TYPE, Problem


def pool_of(request: Request[Any, Any, Any]) -> asyncpg.Pool:
    pool: asyncpg.Pool = request.app.state.pool
    return pool


def settings_of(request: Request[Any, Any, Any]) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def problems(*statuses: int) -> dict[int, ResponseSpec]:
    """OpenAPI entries for the problem responses an operation can return."""
    descriptions = {
        400: "request.invalid",
        401: "auth.unauthenticated",
        403: "runtimenode.permission_denied / auth.forbidden",
        404: "not_found / runtimenode.not_found",
        409: "conflict (see the code)",
        413: "request.too_large",
        415: "request.unsupported_media_type",
        503: "service.unavailable (Retry-After)",
    }
    return {
        status: ResponseSpec(
            Problem, description=descriptions.get(status, "problem"), media_type=PROBLEM_MEDIA_TYPE
        )
        for status in statuses
    }
