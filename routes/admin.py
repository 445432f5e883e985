"""Admin API (contract §6.8, §11): participants, tokens, sessions, memberships, the raise-only
floor, the forward-only session lifecycle, and paged reads of participants and sessions.

Each handler: admin check → strict body or query → one SQL function, called through the admin
role's pool (the only role that may EXECUTE admin_*) → its jsonb passed through.
"""

from __future__ import annotations

from typing import Any

from litestar import Request, Response, Router, delete, get, post, put
from litestar.params import Parameter

from control_plane.auth import require_admin
from control_plane.http import (
    check_query,
    json_response,
    no_content,
    path_uuid,
    query_int,
    query_uuid,
    read_body,
)
from control_plane.schemas import (
    CreateParticipantRequest,
    CreateSessionRequest,
    FloorResult,
    IssueTokenRequest,
    MembershipResult,
    ParticipantDetail,
    ParticipantPage,
    ParticipantResult,
    PutMembershipRequest,
    RaiseFloorRequest,
    SessionDetail,
    SessionPage,
    SessionResult,
    SessionStateRequest,
    TokenResult,
)
from routes._common import admin_pool_of, problems, settings_of

Req = Request[Any, Any, Any]
_ADMIN_ERRORS = (400, 401, 403, 413, 415, 503)


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
    result = await admin_pool_of(request).fetchval(
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
    result = await admin_pool_of(request).fetchval(
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
    await admin_pool_of(request).execute("SELECT control_plane.admin_revoke_token($1)", tid)
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
    result = await admin_pool_of(request).fetchval(
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
    result = await admin_pool_of(request).fetchval(
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
    result = await admin_pool_of(request).fetchval(
        "SELECT control_plane.admin_raise_floor($1, $2)", sid, body.min_client_version
    )
    return json_response(result)


@put(
    "/sessions/{session_id:str}/state",
    request_body_doc=SessionStateRequest,
    responses=problems(*_ADMIN_ERRORS, 404, 409),
)
async def set_session_state(request: Req, session_id: str) -> Response[SessionResult]:
    _authorize(request)
    sid = path_uuid(session_id, "sessionId")
    body = await read_body(request, SessionStateRequest)
    result = await admin_pool_of(request).fetchval(
        "SELECT control_plane.admin_set_session_state($1, $2)", sid, body.state
    )
    return json_response(result)


# --- reads (contract §11) ----------------------------------------------------------------------

_READ_ERRORS = (400, 401, 403, 503)
_LIMIT_DOC = "page size, 1 to 1000 (default 100)"
_AFTER_DOC = "the `next` of the previous page (omit for the first page)"
_PAGE_QUERY = frozenset({"limit", "after"})
_SESSION_QUERY = _PAGE_QUERY | {"state"}


# Query values arrive as text (Litestar's lenient conversions are not used) and are judged by the
# SQL function; only their syntax (integer, UUID) is checked here.
@get("/participants", responses=problems(*_READ_ERRORS))
async def list_participants(
    request: Req,
    limit: str | None = Parameter(default=None, description=_LIMIT_DOC),
    after: str | None = Parameter(default=None, description=_AFTER_DOC),
) -> Response[ParticipantPage]:
    _authorize(request)
    check_query(request, _PAGE_QUERY)
    result = await admin_pool_of(request).fetchval(
        "SELECT control_plane.admin_list_participants($1, $2)",
        query_int(limit, "limit"),
        query_uuid(after, "after"),
    )
    return json_response(result)


@get("/participants/{participant_id:str}", responses=problems(*_READ_ERRORS, 404))
async def get_participant(request: Req, participant_id: str) -> Response[ParticipantDetail]:
    _authorize(request)
    pid = path_uuid(participant_id, "participantId")
    result = await admin_pool_of(request).fetchval(
        "SELECT control_plane.admin_get_participant($1)", pid
    )
    return json_response(result)


@get("/sessions", responses=problems(*_READ_ERRORS))
async def list_sessions(
    request: Req,
    # `state` is a reserved handler argument in Litestar: the query name is given explicitly.
    session_state: str | None = Parameter(
        query="state",
        default=None,
        description="only sessions in this state: provisioning|active|archived|closed",
    ),
    limit: str | None = Parameter(default=None, description=_LIMIT_DOC),
    after: str | None = Parameter(default=None, description=_AFTER_DOC),
) -> Response[SessionPage]:
    _authorize(request)
    check_query(request, _SESSION_QUERY)
    result = await admin_pool_of(request).fetchval(
        "SELECT control_plane.admin_list_sessions($1, $2, $3)",
        session_state,
        query_int(limit, "limit"),
        query_uuid(after, "after"),
    )
    return json_response(result)


@get("/sessions/{session_id:str}", responses=problems(*_READ_ERRORS, 404))
async def get_session(request: Req, session_id: str) -> Response[SessionDetail]:
    _authorize(request)
    sid = path_uuid(session_id, "sessionId")
    result = await admin_pool_of(request).fetchval(
        "SELECT control_plane.admin_get_session($1)", sid
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
        set_session_state,
        list_participants,
        get_participant,
        list_sessions,
        get_session,
    ],
    tags=["admin"],
)
