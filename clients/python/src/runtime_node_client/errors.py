"""One exception class per problem `code` of the API; every one is a `ControlPlaneError`.

The classes form a small hierarchy by meaning (`Conflict`, `Unavailable`, ...) so a daemon can
catch a family or one exact code. An unknown code from a newer server still raises the
`ControlPlaneError` of its status family.
"""

from __future__ import annotations

import math

import httpx
import msgspec

from runtime_node_client.models import Problem


class ControlPlaneError(Exception):
    """A problem answer (RFC 9457) from the control plane, or a transport failure."""

    code: str = "internal"
    status: int = 0

    def __init__(
        self,
        detail: str,
        *,
        status: int | None = None,
        code: str | None = None,
        title: str = "",
        retry_after: float | None = None,
    ) -> None:
        super().__init__(detail)
        self.detail = detail
        self.title = title
        self.retry_after = retry_after
        if status is not None:
            self.status = status
        if code is not None:
            self.code = code

    def __str__(self) -> str:
        return f"{self.code} ({self.status}): {self.detail}"


# --- families ----------------------------------------------------------------------------------


class InvalidRequest(ControlPlaneError):
    """400: the request itself is wrong; retrying it unchanged cannot help."""

    code, status = "request.invalid", 400


class Unauthenticated(ControlPlaneError):
    """401: the token is missing, unknown, expired or revoked. A new token is needed."""

    code, status = "auth.unauthenticated", 401


class Forbidden(ControlPlaneError):
    """403 on the admin surface: not the admin token, or no admin token configured."""

    code, status = "auth.forbidden", 403


class PermissionDenied(ControlPlaneError):
    """403: the caller may not see or touch this (unknown session or node, not a member, not the
    owner, detached or revoked slot). Deliberately uninformative."""

    code, status = "runtimenode.permission_denied", 403


class NotFound(ControlPlaneError):
    """404 `not_found`: unknown route or admin id."""

    code, status = "not_found", 404


class RuntimeNodeNotFound(NotFound):
    code = "runtimenode.not_found"


class MethodNotAllowed(ControlPlaneError):
    code, status = "request.method_not_allowed", 405


class Conflict(ControlPlaneError):
    """409: the request is valid but the current state refuses it."""

    code, status = "conflict", 409


class AttachConflict(Conflict):
    """The node is owned by someone else, or active in another session."""

    code = "runtimenode.attach_conflict"


class AttachRevoked(Conflict):
    """The node's slot in this session is revoked: terminal, it can never attach there again."""

    code = "runtimenode.attach_revoked"


class CapabilityUpdateConflict(Conflict):
    """`registering → online` asked through a capability update: declare instead."""

    code = "runtimenode.capabilityupdate_conflict"


class FloorExceeded(Conflict):
    """The node's client version is below the session's floor: it is read-only."""

    code = "version.floor_exceeded"


class SessionNotActive(Conflict):
    code = "session.not_active"


class FloorLoweringForbidden(Conflict):
    code = "session.floor_lowering_forbidden"


class SessionStateTransitionForbidden(Conflict):
    code = "session.state_transition_forbidden"


class CursorExpired(ControlPlaneError):
    """410: the change-feed cursor is older than the retention horizon: re-list the roster."""

    code, status = "events.cursor_expired", 410


class TooLarge(ControlPlaneError):
    code, status = "request.too_large", 413


class UnsupportedMediaType(ControlPlaneError):
    code, status = "request.unsupported_media_type", 415


class RetryableError(ControlPlaneError):
    """The server could not serve now; `retry_after` says when to try again."""


class RateLimited(RetryableError):
    code, status = "request.rate_limited", 429


class Unavailable(RetryableError):
    code, status = "service.unavailable", 503


class InternalError(ControlPlaneError):
    code, status = "internal", 500


class TransportError(RetryableError):
    """No answer: connection refused or reset, or a timeout. The request may or may not have
    been applied by the server."""

    code, status = "transport", 0


_ALL: tuple[type[ControlPlaneError], ...] = (
    InvalidRequest,
    Unauthenticated,
    Forbidden,
    PermissionDenied,
    NotFound,
    RuntimeNodeNotFound,
    MethodNotAllowed,
    AttachConflict,
    AttachRevoked,
    CapabilityUpdateConflict,
    FloorExceeded,
    SessionNotActive,
    FloorLoweringForbidden,
    SessionStateTransitionForbidden,
    CursorExpired,
    TooLarge,
    UnsupportedMediaType,
    RateLimited,
    Unavailable,
    InternalError,
)
ERROR_BY_CODE: dict[str, type[ControlPlaneError]] = {cls.code: cls for cls in _ALL}
_FAMILY_BY_STATUS: dict[int, type[ControlPlaneError]] = {
    400: InvalidRequest,
    401: Unauthenticated,
    403: PermissionDenied,
    404: NotFound,
    409: Conflict,
    410: CursorExpired,
    429: RateLimited,
    503: Unavailable,
}
_problem_decoder = msgspec.json.Decoder(Problem)


def retry_after_seconds(response: httpx.Response) -> float | None:
    """`Retry-After` as seconds (the delta-seconds form; an HTTP date is ignored)."""
    value = response.headers.get("retry-after")
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        return None
    return seconds if math.isfinite(seconds) and seconds >= 0 else None


def error_from_response(response: httpx.Response) -> ControlPlaneError:
    """The exception for a non-2xx answer: by the problem's `code`, else by status family."""
    try:
        problem = _problem_decoder.decode(response.content)
    except (msgspec.DecodeError, msgspec.ValidationError):
        problem = Problem(status=response.status_code, detail=response.text[:200])
    cls = ERROR_BY_CODE.get(problem.code)
    if cls is None:
        cls = _FAMILY_BY_STATUS.get(response.status_code)
    if cls is None:
        cls = InternalError if response.status_code >= 500 else ControlPlaneError
    return cls(
        problem.detail or response.reason_phrase,
        status=response.status_code,
        code=problem.code or None,
        title=problem.title,
        retry_after=retry_after_seconds(response),
    )
