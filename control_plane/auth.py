"""Bearer credentials: parse the header, digest participant tokens, check the admin token.

Participant tokens are resolved inside each SQL function from their SHA-256 digest, in the same
call as the operation: no lookup round trip here and nothing cached, so revocation is immediate.
"""

from __future__ import annotations

import hashlib
import hmac
from enum import StrEnum

from control_plane import errors
from control_plane.errors import DomainError

_MAX_TOKEN_CHARS = 512


def bearer_token(authorization: str | None) -> str:
    """The token of an `Authorization: Bearer <token>` header, or a 401 refusal."""
    if authorization:
        scheme, _, token = authorization.partition(" ")
        token = token.strip()
        if scheme.lower() == "bearer" and token and len(token) <= _MAX_TOKEN_CHARS:
            return token
    raise DomainError(errors.UNAUTHENTICATED)  # the uniform 401: the table's constant detail


def participant_digest(authorization: str | None) -> bytes:
    """SHA-256 of the participant bearer token: what the SQL functions authenticate with."""
    return hashlib.sha256(bearer_token(authorization).encode()).digest()


def is_admin(authorization: str | None, admin_token: str | None) -> bool:
    """Constant-time check of the admin token; always false while no admin token is set."""
    if not admin_token or not authorization:
        return False
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer":
        return False
    return hmac.compare_digest(token.strip().encode(), admin_token.encode())


def require_admin(authorization: str | None, admin_token: str | None) -> None:
    if not admin_token:
        raise DomainError(errors.FORBIDDEN_ADMIN, "the admin API is disabled")
    if not authorization:
        raise DomainError(errors.UNAUTHENTICATED, "missing admin bearer token")
    if not is_admin(authorization, admin_token):
        raise DomainError(errors.FORBIDDEN_ADMIN, "the admin API needs the admin token")


class Auth(StrEnum):
    """Which bearer token a route takes, declared once per router or handler with `auth_opt`;
    the OpenAPI document's `security` is derived from it (control_plane/openapi.py)."""

    NONE = "none"  # operations endpoints
    ADMIN = "admin"  # CONTROL_PLANE_ADMIN_TOKEN
    PARTICIPANT = "participant"  # a token issued by the admin API
    ADMIN_OR_PARTICIPANT = "admin_or_participant"  # revoke: a session owner or the admin


AUTH_OPT_KEY = "auth"


def auth_opt(auth: Auth) -> dict[str, Auth]:
    """The `opt` entry declaring a router's or handler's credentials (handler beats router)."""
    return {AUTH_OPT_KEY: auth}
