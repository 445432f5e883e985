"""What every route module shares: the pool, settings, and documented error responses."""

from __future__ import annotations

from typing import Any

import asyncpg
from litestar import Request
from litestar.openapi.datastructures import ResponseSpec

from control_plane.admission import Admission, AdmittedPool, classify
from control_plane.config import Settings
from control_plane.problems import PROBLEM_MEDIA_TYPE, Problem


def pool_of(request: Request[Any, Any, Any]) -> AdmittedPool:
    """The pool as this request may use it: the caller's rate checked (429 when over it), each
    call admitted within the request's class (503 when the class is saturated); see
    control_plane/admission.py. Call it once per request."""
    state = request.app.state
    request_class = classify(request.scope.get("path_template") or "", request.method)
    if request_class is not None:
        state.rate_limits.check(request_class, request.headers.get("authorization"))
    admission: Admission = state.admission
    return admission.pool_for(state.pool, request_class)


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
