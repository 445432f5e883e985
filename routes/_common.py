"""What every route module shares: the pool, settings, and documented error responses."""

from __future__ import annotations

from typing import Any

import asyncpg
from litestar import Request
from litestar.openapi.datastructures import ResponseSpec

from control_plane.admission import Admission, AdmittedPool, classify
from control_plane.config import Settings
from control_plane.problems import PROBLEM_MEDIA_TYPE, Problem
from control_plane.refusals import RefuseEarlyMiddleware


def pool_of(request: Request[Any, Any, Any]) -> AdmittedPool:
    """The pool as this request may use it: each call admitted within the request's class
    (503 when the class is saturated; control_plane/admission.py)."""
    state = request.app.state
    request_class = classify(request.scope.get("path_template") or "", request.method)
    admission: Admission = state.admission
    return admission.pool_for(state.pool, request_class)


# On every route but the heartbeat: rate and capacity checked first (control_plane/refusals.py).
REFUSE_EARLY: list[Any] = [RefuseEarlyMiddleware]


def raw_pool_of(request: Request[Any, Any, Any]) -> asyncpg.Pool:
    """The pool itself, for the operations endpoints (they bound their own calls)."""
    return request.app.state.pool


def settings_of(request: Request[Any, Any, Any]) -> Settings:
    return request.app.state.settings


def problems(*statuses: int) -> dict[int, ResponseSpec]:
    """OpenAPI entries for the problem responses an operation can return."""
    descriptions = {
        400: "request.invalid",
        401: "auth.unauthenticated",
        403: "runtimenode.permission_denied / auth.forbidden",
        404: "not_found / runtimenode.not_found",
        409: "conflict (see the code)",
        413: "request.too_large",
        429: "request.rate_limited (Retry-After)",
        415: "request.unsupported_media_type",
        503: "service.unavailable: database unavailable or service overloaded (Retry-After)",
    }
    return {
        status: ResponseSpec(
            Problem, description=descriptions.get(status, "problem"), media_type=PROBLEM_MEDIA_TYPE
        )
        for status in statuses
    }
