"""Admin API (contract §6.8): participants, tokens, sessions, memberships, the raise-only floor.

Each handler: admin check → strict body → one SQL function → its jsonb passed through.
"""

from __future__ import annotations

from typing import Any

from litestar import Request, Response, Router, delete, post, put

from control_plane.auth import Auth, auth_opt, require_admin
from control_plane.http import json_response, no_content, path_uuid, read_body
from control_plane.schemas import (
    CreateParticipantRequest,
    CreateSessionRequest,
    FloorResult,
    IssueTokenRequest,
    MembershipResult,
    ParticipantResult,
    PutMembershipRequest,
    RaiseFloorRequest,
    SessionResult,
    TokenResult,
)
from routes._common import (
    BODY_PROBLEMS,
    FLOOR_LOWERING_FORBIDDEN,
    FORBIDDEN_ADMIN,
    INVALID,
    NOT_FOUND,
    RATE_LIMITED,
    REFUSE_EARLY,
    UNAUTHENTICATED,
    UNAVAILABLE,
    pool_of,
    problems,
    settings_of,
)

Req = Request[Any, Any, Any]
# Every admin call: a bad path id, no or a wrong admin token, the database away.
_ADMIN_PROBLEMS = (INVALID, UNAUTHENTICATED, FORBIDDEN_ADMIN, RATE_LIMITED, UNAVAILABLE)
_ADMIN_BODY_PROBLEMS = (*_ADMIN_PROBLEMS, *BODY_PROBLEMS)


def _authorize(request: Req) -> None:
    require_admin(request.headers.get("authorization"), settings_of(request).admin_token)


@post(
    "/participants",
    status_code=201,
    summary="Create a participant",
    request_body_doc=CreateParticipantRequest,
    responses=problems(*_ADMIN_BODY_PROBLEMS),
)
async def create_participant(request: Req) -> Response[ParticipantResult]:
    """Create a participant (a person or service that owns runtime nodes), with an optional
    display name. It can act only once it has a token and a session membership."""
    _authorize(request)
    body = await read_body(request, CreateParticipantRequest, optional=True)
    result = await pool_of(request).fetchval(
        "SELECT control_plane.admin_create_participant($1)", body.display_name
    )
    return json_response(result, 201)


@post(
    "/participants/{participant_id:str}/tokens",
    status_code=201,
    summary="Issue a participant token",
    request_body_doc=IssueTokenRequest,
    responses=problems(*_ADMIN_BODY_PROBLEMS, NOT_FOUND),
)
async def issue_token(request: Req, participant_id: str) -> Response[TokenResult]:
    """Issue a bearer token for a participant, with an optional label and lifetime. The secret
    is in this response only: the service keeps its SHA-256 digest. 404 for an unknown
    participant."""
    _authorize(request)
    pid = path_uuid(participant_id, "participantId")
    body = await read_body(request, IssueTokenRequest, optional=True)
    result = await pool_of(request).fetchval(
        "SELECT control_plane.admin_issue_token($1, $2, $3)",
        pid,
        body.label,
        body.expires_in_seconds,
    )
    return json_response(result, 201)


@delete(
    "/tokens/{token_id:str}",
    status_code=204,
    summary="Revoke a participant token",
    responses=problems(*_ADMIN_PROBLEMS, NOT_FOUND),
)
async def revoke_token(request: Req, token_id: str) -> Response[None]:
    """Revoke a participant token: every later request with it gets 401 at once. Revoking a
    revoked token again is a no-op 204; 404 for an unknown token id."""
    _authorize(request)
    tid = path_uuid(token_id, "tokenId")
    await pool_of(request).execute("SELECT control_plane.admin_revoke_token($1)", tid)
    return no_content()


@post(
    "/sessions",
    status_code=201,
    summary="Create a session",
    request_body_doc=CreateSessionRequest,
    responses=problems(*_ADMIN_BODY_PROBLEMS),
)
async def create_session(request: Req) -> Response[SessionResult]:
    """Create a collaborative session (state `active` unless given), optionally with a minimum
    client version: nodes below it are admitted read-only."""
    _authorize(request)
    body = await read_body(request, CreateSessionRequest, optional=True)
    result = await pool_of(request).fetchval(
        "SELECT control_plane.admin_create_session($1, $2)", body.min_client_version, body.state
    )
    return json_response(result, 201)


@put(
    "/sessions/{session_id:str}/members/{participant_id:str}",
    summary="Set a session membership",
    request_body_doc=PutMembershipRequest,
    responses=problems(*_ADMIN_BODY_PROBLEMS, NOT_FOUND),
)
async def put_membership(
    request: Req, session_id: str, participant_id: str
) -> Response[MembershipResult]:
    """Create or replace a participant's membership of a session: its role and state (in any
    session state). 404 for an unknown session or participant."""
    _authorize(request)
    sid = path_uuid(session_id, "sessionId")
    pid = path_uuid(participant_id, "participantId")
    body = await read_body(request, PutMembershipRequest)
    result = await pool_of(request).fetchval(
        "SELECT control_plane.admin_put_membership($1, $2, $3, $4)", sid, pid, body.role, body.state
    )
    return json_response(result)


@put(
    "/sessions/{session_id:str}/min-client-version",
    summary="Raise a session's version floor",
    request_body_doc=RaiseFloorRequest,
    responses=problems(*_ADMIN_BODY_PROBLEMS, NOT_FOUND, FLOOR_LOWERING_FORBIDDEN),
)
async def raise_floor(request: Req, session_id: str) -> Response[FloorResult]:
    """Raise the session's minimum client version; it applies to the next write of every node.
    The same value again is a no-op 200; lowering or clearing it is refused with 409
    `session.floor_lowering_forbidden`."""
    _authorize(request)
    sid = path_uuid(session_id, "sessionId")
    body = await read_body(request, RaiseFloorRequest)
    result = await pool_of(request).fetchval(
        "SELECT control_plane.admin_raise_floor($1, $2)", sid, body.min_client_version
    )
    return json_response(result)


admin_router = Router(
    path="/v1/admin",
    route_handlers=[
        create_participant,
        issue_token,
        revoke_token,
        create_session,
        put_membership,
        raise_floor,
    ],
    tags=["admin"],
    opt=auth_opt(Auth.ADMIN),
    middleware=REFUSE_EARLY,
)
