"""The one table that maps SQLSTATEs (and HTTP-layer refusals) to problem status, code, title
and — for the constant uniform refusals — detail.

SQLSTATEs are the error language of the service: the SQL functions raise them (every one of them
has a row here; a test greps `sql/` for `ERRCODE`s), the heartbeat batch returns one per item, and
every handler maps them through `kind_for_sqlstate`.

Who owns a problem's `detail`: the function's MESSAGE, except for the uniform refusals (401
`auth.unauthenticated`, 403 `runtimenode.permission_denied`), whose detail is the constant of their
row below. Those must be byte-identical whatever the cause and whoever refuses (auth.py in Python,
any SQL function, an item of the heartbeat batch, which returns no message at all), so the table
owns them and the SQL message is never echoed for them.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class ErrorKind:
    status: int
    code: str
    title: str
    # Set only for the uniform refusals: the one detail every such problem carries.
    detail: str | None = None


# The constant details of the uniform refusals (see the module docstring).
UNAUTHENTICATED_DETAIL = "missing, unknown, expired or revoked bearer token"
PERMISSION_DENIED_DETAIL = "permission denied"
UNAUTHENTICATED = ErrorKind(401, "auth.unauthenticated", "Unauthenticated", UNAUTHENTICATED_DETAIL)
PERMISSION_DENIED = ErrorKind(
    403, "runtimenode.permission_denied", "Permission denied", PERMISSION_DENIED_DETAIL
)
INVALID = ErrorKind(400, "request.invalid", "Invalid request")
NOT_FOUND = ErrorKind(404, "not_found", "Not found")

# Custom SQLSTATEs raised by the functions in sql/functions (docs/design.md lists them).
SQLSTATE_ERRORS: dict[str, ErrorKind] = {
    "CP400": INVALID,
    "CP401": UNAUTHENTICATED,
    "CP403": PERMISSION_DENIED,
    "CP404": ErrorKind(404, "runtimenode.not_found", "Runtime node not found"),
    "CPN04": NOT_FOUND,
    "CPC01": ErrorKind(409, "runtimenode.attach_conflict", "Attach conflict"),
    "CPC02": ErrorKind(409, "runtimenode.attach_revoked", "Attachment revoked"),
    "CPC03": ErrorKind(409, "runtimenode.capabilityupdate_conflict", "Capability update conflict"),
    "CPC04": ErrorKind(409, "version.floor_exceeded", "Client version below the session floor"),
    "CPC05": ErrorKind(409, "session.not_active", "Session not active"),
    "CPC06": ErrorKind(
        409, "session.floor_lowering_forbidden", "The version floor may only be raised"
    ),
    "CPC07": ErrorKind(
        409, "session.state_transition_forbidden", "A session's state may only move forward"
    ),
    "CPG10": ErrorKind(410, "events.cursor_expired", "Event cursor expired"),
}

FORBIDDEN_ADMIN = ErrorKind(403, "auth.forbidden", "Forbidden")
METHOD_NOT_ALLOWED = ErrorKind(405, "request.method_not_allowed", "Method not allowed")
UNSUPPORTED_MEDIA_TYPE = ErrorKind(415, "request.unsupported_media_type", "Unsupported media type")
TOO_LARGE = ErrorKind(413, "request.too_large", "Request body too large")
UNAVAILABLE = ErrorKind(503, "service.unavailable", "Service unavailable")
RATE_LIMITED = ErrorKind(429, "request.rate_limited", "Too many requests")
INTERNAL = ErrorKind(500, "internal", "Internal error")

# Classes of SQLSTATE meaning "the database is not able to serve right now" → 503.
UNAVAILABLE_SQLSTATE_PREFIXES = ("08", "53", "57", "58", "55P03", "40001", "40P01", "25006")
# Data/integrity exceptions can only come from input the HTTP layer let through → 400.
INVALID_SQLSTATE_PREFIXES = ("22", "23")


def kind_for_sqlstate(sqlstate: str | None) -> ErrorKind | None:
    """The problem kind for a SQLSTATE, or None when it is a server-side bug (→ 500)."""
    if not sqlstate:
        return None
    kind = SQLSTATE_ERRORS.get(sqlstate)
    if kind is not None:
        return kind
    if sqlstate.startswith(UNAVAILABLE_SQLSTATE_PREFIXES):
        return UNAVAILABLE
    if sqlstate.startswith(INVALID_SQLSTATE_PREFIXES):
        return INVALID
    return None


class DomainError(Exception):
    """A refusal decided in Python (authentication header, media type, path syntax).

    `detail` defaults to the kind's own constant detail (the uniform refusals)."""

    def __init__(
        self, kind: ErrorKind, detail: str | None = None, headers: dict[str, str] | None = None
    ):
        detail = detail if detail is not None else kind.detail or kind.title
        super().__init__(detail)
        self.kind = kind
        self.detail = detail
        self.headers = headers or {}


class SqlStateRefusal(Exception):
    """A SQLSTATE returned rather than raised (an item of the heartbeat batch): the problem
    handler maps it exactly like a raised one (no MESSAGE: the table's detail or title)."""

    def __init__(self, sqlstate: str, message: str | None = None):
        super().__init__(sqlstate)
        self.sqlstate = sqlstate
        self.message = message
