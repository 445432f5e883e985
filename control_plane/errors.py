"""The one table that maps function SQLSTATEs (and HTTP-layer refusals) to problem codes."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class ErrorKind:
    status: int
    code: str
    title: str


# Custom SQLSTATEs raised by the functions in sql/functions (documented in docs/api.md).
SQLSTATE_ERRORS: dict[str, ErrorKind] = {
    "CP400": ErrorKind(400, "request.invalid", "Invalid request"),
    "CP401": ErrorKind(401, "auth.unauthenticated", "Unauthenticated"),
    "CP403": ErrorKind(403, "runtimenode.permission_denied", "Permission denied"),
    "CP404": ErrorKind(404, "runtimenode.not_found", "Runtime node not found"),
    "CPN04": ErrorKind(404, "not_found", "Not found"),
    "CPC01": ErrorKind(409, "runtimenode.attach_conflict", "Attach conflict"),
    "CPC02": ErrorKind(409, "runtimenode.attach_revoked", "Attachment revoked"),
    "CPC03": ErrorKind(409, "runtimenode.capabilityupdate_conflict", "Capability update conflict"),
    "CPC04": ErrorKind(409, "version.floor_exceeded", "Client version below the session floor"),
    "CPC05": ErrorKind(409, "session.not_active", "Session not active"),
    "CPC06": ErrorKind(
        409, "session.floor_lowering_forbidden", "The version floor may only be raised"
    ),
    "CPG10": ErrorKind(410, "events.cursor_expired", "Event cursor expired"),
}

# The details the SQL functions raise with CP401 (caller_participant) and CP403 (every
# operation): Python refusals of the same causes must be byte-identical to them.
UNAUTHENTICATED_DETAIL = "missing, unknown, expired or revoked bearer token"
PERMISSION_DENIED_DETAIL = "permission denied"

INVALID = ErrorKind(400, "request.invalid", "Invalid request")
UNAUTHENTICATED = SQLSTATE_ERRORS["CP401"]
FORBIDDEN_ADMIN = ErrorKind(403, "auth.forbidden", "Forbidden")
NOT_FOUND = ErrorKind(404, "not_found", "Not found")
METHOD_NOT_ALLOWED = ErrorKind(405, "request.method_not_allowed", "Method not allowed")
UNSUPPORTED_MEDIA_TYPE = ErrorKind(415, "request.unsupported_media_type", "Unsupported media type")
TOO_LARGE = ErrorKind(413, "request.too_large", "Request body too large")
UNAVAILABLE = ErrorKind(503, "service.unavailable", "Service unavailable")
INTERNAL = ErrorKind(500, "internal", "Internal error")

# Classes of SQLSTATE meaning "the database is not able to serve right now" → 503.
UNAVAILABLE_SQLSTATE_PREFIXES = ("08", "53", "57", "58", "55P03", "40001", "40P01", "25006")


def kind_for_sqlstate(sqlstate: str | None) -> ErrorKind | None:
    """The problem kind for a SQLSTATE, or None when it is a server-side bug (→ 500)."""
    if not sqlstate:
        return None
    kind = SQLSTATE_ERRORS.get(sqlstate)
    if kind is not None:
        return kind
    if sqlstate.startswith(UNAVAILABLE_SQLSTATE_PREFIXES):
        return UNAVAILABLE
    if sqlstate.startswith(("22", "23")):
        # Data/integrity exceptions can only come from input the HTTP layer let through.
        return INVALID
    return None


class DomainError(Exception):
    """A refusal decided in Python (authentication header, media type, path syntax)."""

    def __init__(self, kind: ErrorKind, detail: str, headers: dict[str, str] | None = None):
        super().__init__(detail)
        self.kind = kind
        self.detail = detail
        self.headers = headers or {}
