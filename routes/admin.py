"""Admin API (contract §6.8): participants, tokens, sessions, memberships, the raise-only floor.

Each handler: admin check → strict body → one SQL function → its jsonb passed through.
"""

from __future__ import annotations

from typing import Any

from litestar import Request, Response, Router, delete, post, put

from control_plane.auth import require_admin
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
from routes._common import REFUSE_EARLY, pool_of, problems, settings_of

Req = Request[Any, Any, Any]
_ADMIN_ERRORS = (400, 401, 403, 413, 415, 429, 503)


def _authorize(request: Req) -> None:
    require_admin(request.headers.get("authorization"), settings_of(request).admin_token)


@post(
    "/participants",
    status_code=201,
    request_body_doc=CreateParticipantRequest,
    responses=problems(*_ADMIN_ERRORS),
)
async def create_participant(request: Req) -> Response[ParticipantResult]:
    _authorize(request)
    body = await read_body(request, CreateParticipantRequest, optional=True)
    result = await pool_of(request).fetchval(
        "SELECT control_plane.admin_create_participant($1)", body.display_name
    )
    return json_response(result, 201)


@post(
    "/participants/{participant_id:str}/tokens",
    status_code=201,
    request_body_doc=IssueTokenRequest,
    responses=problems(*_ADMIN_ERRORS, 404),
)
async def issue_token(request: Req, participant_id: str) -> Response[TokenResult]:
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


@delete("/tokens/{token_id:str}", status_code=204, responses=problems(*_ADMIN_ERRORS, 404))
async def revoke_token(request: Req, token_id: str) -> Response[None]:
    _authorize(request)
    tid = path_uuid(token_id, "tokenId")
    await pool_of(request).execute("SELECT control_plane.admin_revoke_token($1)", tid)
    return no_content()


@post(
    "/sessions",
    status_code=201,
    request_body_doc=CreateSessionRequest,
    responses=problems(*_ADMIN_ERRORS),
)
async def create_session(request: Req) -> Response[SessionResult]:
    _authorize(request)
    body = await read_body(request, CreateSessionRequest, optional=True)
    result = await pool_of(request).fetchval(
        "SELECT control_plane.admin_create_session($1, $2)", body.min_client_version, body.state
    )
    return json_response(result, 201)


@put(
    "/sessions/{session_id:str}/members/{participant_id:str}",
    request_body_doc=PutMembershipRequest,
    responses=problems(*_ADMIN_ERRORS, 404),
)
async def put_membership(
    request: Req, session_id: str, participant_id: str
) -> Response[MembershipResult]:
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
    request_body_doc=RaiseFloorRequest,
    responses=problems(*_ADMIN_ERRORS, 404, 409),
)
async def raise_floor(request: Req, session_id: str) -> Response[FloorResult]:
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
    middleware=REFUSE_EARLY,
)
