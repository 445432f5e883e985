"""RFC 9457 problem responses and the exception handlers that produce them."""

from __future__ import annotations

import logging
from typing import Any

import asyncpg
import msgspec
from litestar import Request, Response
from litestar.exceptions import (
    HTTPException,
    MethodNotAllowedException,
    NotFoundException,
    ValidationException,
)

from control_plane import errors
from control_plane.config import RETRY_AFTER_SECONDS
from control_plane.database import CONNECTION_ERRORS
from control_plane.errors import DomainError, ErrorKind

log = logging.getLogger("control_plane")

PROBLEM_MEDIA_TYPE = "application/problem+json"
_encoder = msgspec.json.Encoder()


class Problem(msgspec.Struct):
    """RFC 9457 problem details with the stable machine `code`."""

    type: str
    title: str
    status: int
    detail: str
    code: str


def problem_response(
    kind: ErrorKind, detail: str, headers: dict[str, str] | None = None
) -> Response[bytes]:
    body = _encoder.encode(
        Problem(
            type=f"urn:control-plane:problem:{kind.code}",
            title=kind.title,
            status=kind.status,
            detail=detail,
            code=kind.code,
        )
    )
    hdrs = dict(headers or {})
    if kind.status == 401:
        hdrs.setdefault("WWW-Authenticate", "Bearer")
    if kind.status == 503:
        hdrs.setdefault("Retry-After", str(RETRY_AFTER_SECONDS))
    return Response(body, status_code=kind.status, media_type=PROBLEM_MEDIA_TYPE, headers=hdrs)


def unavailable() -> Response[bytes]:
    return problem_response(errors.UNAVAILABLE, "the database is unavailable; retry later")


def on_domain_error(_: Request[Any, Any, Any], exc: DomainError) -> Response[bytes]:
    return problem_response(exc.kind, exc.detail, exc.headers)


def on_postgres_error(_: Request[Any, Any, Any], exc: asyncpg.PostgresError) -> Response[bytes]:
    sqlstate = getattr(exc, "sqlstate", None)
    kind = errors.kind_for_sqlstate(sqlstate)
    if kind is None:
        log.error("unmapped database error %s: %s", sqlstate, exc)
        return problem_response(errors.INTERNAL, "internal error")
    if kind is errors.UNAVAILABLE:
        log.warning("database unavailable (%s): %s", sqlstate, exc)
        return unavailable()
    if kind is errors.INVALID and sqlstate != "CP400":
        # Never echo a raw database message: it may quote stored values.
        return problem_response(kind, "the request has a value the database cannot accept")
    return problem_response(kind, getattr(exc, "message", None) or kind.title)


def on_connection_error(_: Request[Any, Any, Any], exc: Exception) -> Response[bytes]:
    log.warning("database connection failed: %r", exc)
    return unavailable()


def on_validation_error(_: Request[Any, Any, Any], exc: ValidationException) -> Response[bytes]:
    detail = exc.detail or "invalid request"
    extra = exc.extra
    if isinstance(extra, list) and extra:
        parts = []
        for item in extra:
            if isinstance(item, dict):
                key = item.get("key")
                message = item.get("message")
                parts.append(f"{key}: {message}" if key else str(message))
        if parts:
            detail = "; ".join(parts)
    return problem_response(errors.INVALID, detail)


def on_http_exception(_: Request[Any, Any, Any], exc: HTTPException) -> Response[bytes]:
    status = exc.status_code
    if isinstance(exc, NotFoundException) or status == 404:
        return problem_response(errors.NOT_FOUND, "no such resource")
    if isinstance(exc, MethodNotAllowedException) or status == 405:
        return problem_response(
            errors.METHOD_NOT_ALLOWED, "method not allowed", exc.headers or None
        )
    if status == 413:
        return problem_response(errors.TOO_LARGE, "request body exceeds 64 KiB")
    if status == 415:
        return problem_response(errors.UNSUPPORTED_MEDIA_TYPE, "send application/json")
    if status == 503:
        return unavailable()
    if 400 <= status < 500:
        return problem_response(errors.INVALID, exc.detail or "invalid request")
    log.error("HTTP exception %s: %s", status, exc.detail)
    return problem_response(errors.INTERNAL, "internal error")


def on_unexpected(request: Request[Any, Any, Any], exc: Exception) -> Response[bytes]:
    if isinstance(exc, CONNECTION_ERRORS):  # those without a handler of their own (see database)
        return on_connection_error(request, exc)
    log.exception("unhandled error", exc_info=exc)
    return problem_response(errors.INTERNAL, "internal error")
