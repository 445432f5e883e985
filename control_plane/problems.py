"""RFC 9457 problem responses and the exception handlers that produce them."""

from __future__ import annotations

import logging
import random
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
from litestar.types import ExceptionHandlersMap

from control_plane import errors
from control_plane.database import CONNECTION_ERRORS
from control_plane.errors import DomainError, ErrorKind, SqlStateRefusal
from control_plane.methods import complete_allow

log = logging.getLogger("control_plane")

PROBLEM_MEDIA_TYPE = "application/problem+json"
_encoder = msgspec.json.Encoder()

# One sweep interval: a daemon retrying then finds the database back.
RETRY_AFTER_BASE_SECONDS = 5
_RETRY_STATUSES = (429, 503)
# What Litestar raises when the client disconnects before the whole body arrived.
CLIENT_DISCONNECTED = "client disconnected prematurely"


def retry_after(base: int = RETRY_AFTER_BASE_SECONDS) -> str:
    """`Retry-After` for every 503 and 429 (contract §10): uniform over [base, 2 × base] whole
    seconds, so a fleet that failed together does not come back together."""
    return str(random.randint(base, 2 * base))


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
    if kind.status in _RETRY_STATUSES:
        hdrs.setdefault("Retry-After", retry_after())
    return Response(body, status_code=kind.status, media_type=PROBLEM_MEDIA_TYPE, headers=hdrs)


def unavailable() -> Response[bytes]:
    return problem_response(errors.UNAVAILABLE, "the database is unavailable; retry later")


def on_domain_error(_: Request[Any, Any, Any], exc: DomainError) -> Response[bytes]:
    return problem_response(exc.kind, exc.detail, exc.headers)


def sqlstate_problem(sqlstate: str | None, message: str | None) -> Response[bytes]:
    """The problem for a SQLSTATE, through the one table (errors.py). `message` is the function's
    MESSAGE (None for a heartbeat batch item, which carries only its SQLSTATE)."""
    kind = errors.kind_for_sqlstate(sqlstate)
    if kind is None:
        log.error("unmapped database error %s: %s", sqlstate, message)
        return problem_response(errors.INTERNAL, "internal error")
    if kind is errors.UNAVAILABLE:
        log.warning("database unavailable (%s): %s", sqlstate, message)
        return unavailable()
    if kind.detail is not None:  # a uniform refusal: the table's constant, whatever the cause
        return problem_response(kind, kind.detail)
    if sqlstate not in errors.SQLSTATE_ERRORS:
        # A class 22/23 error: never echo a raw database message, it may quote stored values.
        return problem_response(kind, "the request has a value the database cannot accept")
    return problem_response(kind, message or kind.title)


def on_postgres_error(_: Request[Any, Any, Any], exc: asyncpg.PostgresError) -> Response[bytes]:
    return sqlstate_problem(getattr(exc, "sqlstate", None), getattr(exc, "message", None))


def on_sqlstate_refusal(_: Request[Any, Any, Any], exc: SqlStateRefusal) -> Response[bytes]:
    return sqlstate_problem(exc.sqlstate, exc.message)


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
        headers = dict(exc.headers or {})
        if "allow" in headers:  # the router's list lacks HEAD (served for GET: methods.py)
            headers["allow"] = complete_allow(headers["allow"])
        return problem_response(errors.METHOD_NOT_ALLOWED, "method not allowed", headers or None)
    if status == 413:
        return problem_response(errors.TOO_LARGE, "request body exceeds 64 KiB")
    if status == 415:
        return problem_response(errors.UNSUPPORTED_MEDIA_TYPE, "send application/json")
    if status == 503:
        return unavailable()
    if 400 <= status < 500:
        return problem_response(errors.INVALID, exc.detail or "invalid request")
    if exc.detail == CLIENT_DISCONNECTED:
        # The client went away mid-body (or the connection guard closed it at the body
        # deadline): nobody hears this answer; it is no server error.
        log.debug("client disconnected before sending the whole body")
        return problem_response(errors.INVALID, "the request body was not received in full")
    log.error("HTTP exception %s: %s", status, exc.detail)
    return problem_response(errors.INTERNAL, "internal error")


def on_unexpected(_: Request[Any, Any, Any], exc: Exception) -> Response[bytes]:
    log.exception("unhandled error", exc_info=exc)
    return problem_response(errors.INTERNAL, "internal error")


def exception_handlers() -> ExceptionHandlersMap:
    """Every exception the app maps to a problem. Litestar picks the handler of the closest
    class in the exception's MRO, so the connection failures (database.CONNECTION_ERRORS, the one
    list) win over the generic PostgresError and Exception handlers."""
    handlers: ExceptionHandlersMap = {
        DomainError: on_domain_error,
        asyncpg.PostgresError: on_postgres_error,
        SqlStateRefusal: on_sqlstate_refusal,
        ValidationException: on_validation_error,
        HTTPException: on_http_exception,
        Exception: on_unexpected,
    }
    handlers.update({kind: on_connection_error for kind in CONNECTION_ERRORS})
    return handlers
