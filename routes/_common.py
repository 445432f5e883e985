"""What every route module shares: the pools, settings, and documented error responses."""

from __future__ import annotations

from collections import defaultdict
from http import HTTPStatus
from typing import Any

import asyncpg
from litestar import Request
from litestar.openapi.datastructures import ResponseSpec
from litestar.openapi.spec import Example

from control_plane import errors
from control_plane.admission import Admission, AdmittedPool, classify
from control_plane.config import Settings
from control_plane.errors import ErrorKind
from control_plane.problems import PROBLEM_MEDIA_TYPE, Problem
from control_plane.refusals import RefuseEarlyMiddleware


def pool_of(request: Request[Any, Any, Any]) -> AdmittedPool:
    """The API role's pool (every call made with a participant's token), as this request may
    use it: each call admitted within the request's class (503 when the class is saturated;
    control_plane/admission.py)."""
    return _admitted(request, request.app.state.pool)


def admin_pool_of(request: Request[Any, Any, Any]) -> AdmittedPool:
    """The admin role's pool: only after the admin token was checked (control_plane.auth);
    admitted like pool_of."""
    return _admitted(request, request.app.state.admin_pool)


def _admitted(request: Request[Any, Any, Any], pool: asyncpg.Pool) -> AdmittedPool:
    request_class = classify(request.scope.get("path_template") or "", request.method)
    admission: Admission = request.app.state.admission
    return admission.pool_for(pool, request_class)


def raw_pool_of(request: Request[Any, Any, Any]) -> asyncpg.Pool:
    """The API role's pool itself, for the operations endpoints (they bound their own calls)."""
    pool: asyncpg.Pool = request.app.state.pool
    return pool


# On every route but the heartbeat: rate and capacity checked first (control_plane/refusals.py).
REFUSE_EARLY: list[Any] = [RefuseEarlyMiddleware]


def settings_of(request: Request[Any, Any, Any]) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


# The problem kinds routes document, named as the routes think of them.
INVALID = errors.INVALID
UNAUTHENTICATED = errors.UNAUTHENTICATED
FORBIDDEN_ADMIN = errors.FORBIDDEN_ADMIN
PERMISSION_DENIED = errors.SQLSTATE_ERRORS["CP403"]
NOT_FOUND = errors.NOT_FOUND
NODE_NOT_FOUND = errors.SQLSTATE_ERRORS["CP404"]
ATTACH_CONFLICT = errors.SQLSTATE_ERRORS["CPC01"]
ATTACH_REVOKED = errors.SQLSTATE_ERRORS["CPC02"]
CAPABILITY_UPDATE_CONFLICT = errors.SQLSTATE_ERRORS["CPC03"]
FLOOR_EXCEEDED = errors.SQLSTATE_ERRORS["CPC04"]
SESSION_NOT_ACTIVE = errors.SQLSTATE_ERRORS["CPC05"]
FLOOR_LOWERING_FORBIDDEN = errors.SQLSTATE_ERRORS["CPC06"]
STATE_TRANSITION_FORBIDDEN = errors.SQLSTATE_ERRORS["CPC07"]
TOO_LARGE = errors.TOO_LARGE
UNSUPPORTED_MEDIA_TYPE = errors.UNSUPPORTED_MEDIA_TYPE
UNAVAILABLE = errors.UNAVAILABLE
RATE_LIMITED = errors.RATE_LIMITED
# Every operation with a JSON body can be refused for its size, media type and syntax.
BODY_PROBLEMS = (INVALID, TOO_LARGE, UNSUPPORTED_MEDIA_TYPE)

# A typical `detail` per code, as the service words it (SQL functions, problems.py), for the
# document's examples.
EXAMPLE_DETAILS = {
    INVALID.code: "Object missing required field `nodeId`",
    UNAUTHENTICATED.code: errors.UNAUTHENTICATED_DETAIL,
    FORBIDDEN_ADMIN.code: "the admin API needs the admin token",
    PERMISSION_DENIED.code: errors.PERMISSION_DENIED_DETAIL,
    NOT_FOUND.code: "session not found",
    NODE_NOT_FOUND.code: "runtime node not found in this session",
    ATTACH_CONFLICT.code: 'runtime node "build-box-7" is already attached',
    ATTACH_REVOKED.code: 'runtime node "build-box-7" may not be attached to this session again',
    CAPABILITY_UPDATE_CONFLICT.code: "only a capability declaration brings a registering node "
    "online",
    FLOOR_EXCEEDED.code: "client version 1.4 is below the session's minimum client version 1.6",
    SESSION_NOT_ACTIVE.code: "the session is not active",
    FLOOR_LOWERING_FORBIDDEN.code: "the client version floor may only be raised",
    STATE_TRANSITION_FORBIDDEN.code: "session state may only move forward (provisioning → "
    "active → archived → closed): archived → active is refused",
    TOO_LARGE.code: "request body exceeds 64 KiB",
    UNSUPPORTED_MEDIA_TYPE.code: "the request body must be application/json",
    UNAVAILABLE.code: "the database is unavailable; retry later",
    RATE_LIMITED.code: "too many requests for this token; retry later",
}


def problems(
    *kinds: ErrorKind | int, details: dict[str, str] | None = None
) -> dict[int, ResponseSpec]:
    """OpenAPI entries for the problems an operation can answer: one response per status, with
    an example of each code (`details` overrides an example's `detail`). Name the kinds; a bare
    status stands for every code of that status in control_plane/errors.py."""
    by_status: dict[int, dict[str, ErrorKind]] = defaultdict(dict)
    for item in kinds:
        for kind in _kinds_of_status(item) if isinstance(item, int) else (item,):
            by_status[kind.status][kind.code] = kind
    return {
        status: ResponseSpec(
            Problem,
            description=f"{HTTPStatus(status).phrase}: "
            + ", ".join(f"`{code}`" for code in sorted(codes))
            + (" (with `Retry-After`)" if status in (429, 503) else ""),
            media_type=PROBLEM_MEDIA_TYPE,
            generate_examples=False,
            examples=[
                _example(kind, (details or {}).get(kind.code)) for _, kind in sorted(codes.items())
            ],
        )
        for status, codes in sorted(by_status.items())
    }


def _kinds_of_status(status: int) -> list[ErrorKind]:
    every = [k for k in vars(errors).values() if isinstance(k, ErrorKind)]
    every += errors.SQLSTATE_ERRORS.values()
    found = {kind.code: kind for kind in every if kind.status == status}
    return list(found.values()) or [ErrorKind(status, "problem", HTTPStatus(status).phrase)]


def _example(kind: ErrorKind, detail: str | None) -> Example:
    return Example(
        summary=kind.code,
        value={
            "type": f"urn:control-plane:problem:{kind.code}",
            "title": kind.title,
            "status": kind.status,
            "detail": detail or EXAMPLE_DETAILS.get(kind.code, kind.title),
            "code": kind.code,
        },
    )
