"""Admin API (contract §6.8, §11): participants, tokens, sessions, memberships, the raise-only
floor, the forward-only session lifecycle, and paged reads of participants and sessions.

Each handler: admin check → strict body or query → one SQL function, called through the admin
role's pool (the only role that may EXECUTE admin_*) → its jsonb passed through.
"""

from __future__ import annotations

from typing import Any

from litestar import Request, Response, Router, delete, get, post, put
from litestar.params import Parameter

from control_plane.auth import Auth, auth_opt, require_admin
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
from routes._common import (
    BODY_PROBLEMS,
    FLOOR_LOWERING_FORBIDDEN,
    FORBIDDEN_ADMIN,
    INVALID,
    NOT_FOUND,
    RATE_LIMITED,
    REFUSE_EARLY,
    STATE_TRANSITION_FORBIDDEN,
    UNAUTHENTICATED,
    UNAVAILABLE,
    admin_pool_of,
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
    result = await admin_pool_of(request).fetchval(
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
    result = await admin_pool_of(request).fetchval(
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
    await admin_pool_of(request).execute("SELECT control_plane.admin_revoke_token($1)", tid)
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
    result = await admin_pool_of(request).fetchval(
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
    result = await admin_pool_of(request).fetchval(
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
    result = await admin_pool_of(request).fetchval(
        "SELECT control_plane.admin_raise_floor($1, $2)", sid, body.min_client_version
    )
    return json_response(result)


@put(
    "/sessions/{session_id:str}/state",
    summary="Move a session along its lifecycle",
    request_body_doc=SessionStateRequest,
    responses=problems(*_ADMIN_BODY_PROBLEMS, NOT_FOUND, STATE_TRANSITION_FORBIDDEN),
)
async def set_session_state(request: Req, session_id: str) -> Response[SessionResult]:
    """Move the session forward along provisioning → active → archived → closed (skipping states
    is allowed). The same state again is a no-op 200; backwards is refused with 409
    `session.state_transition_forbidden`. Only attach looks at the state: nodes already attached
    are left as they are."""
    _authorize(request)
    sid = path_uuid(session_id, "sessionId")
    body = await read_body(request, SessionStateRequest)
    result = await admin_pool_of(request).fetchval(
        "SELECT control_plane.admin_set_session_state($1, $2)", sid, body.state
    )
    return json_response(result)


# --- reads (contract §11) ----------------------------------------------------------------------

_LIMIT_DOC = "Page size, an integer from 1 to 1000 (default 100)."
_AFTER_DOC = "The `next` of the previous page; omit it for the first page."
_PAGE_QUERY = frozenset({"limit", "after"})
_SESSION_QUERY = _PAGE_QUERY | {"state"}


# Query values arrive as text (Litestar's lenient conversions are not used) and are judged by the
# SQL function; only their syntax (integer, UUID) and the set of names are checked here.
@get(
    "/participants",
    summary="List participants",
    responses=problems(*_ADMIN_PROBLEMS),
)
async def list_participants(
    request: Req,
    limit: str | None = Parameter(default=None, description=_LIMIT_DOC),
    after: str | None = Parameter(default=None, description=_AFTER_DOC),
) -> Response[ParticipantPage]:
    """One page of participants in creation order: `{items, next}`, where `next` is the value to
    pass as `after` for the following page (null on the last). Keyset pagination: a walk never
    repeats or skips a participant, whatever is created meanwhile."""
    _authorize(request)
    check_query(request, _PAGE_QUERY)
    result = await admin_pool_of(request).fetchval(
        "SELECT control_plane.admin_list_participants($1, $2)",
        query_int(limit, "limit"),
        query_uuid(after, "after"),
    )
    return json_response(result)


@get(
    "/participants/{participant_id:str}",
    summary="Read a participant and its tokens",
    responses=problems(*_ADMIN_PROBLEMS, NOT_FOUND),
)
async def get_participant(request: Req, participant_id: str) -> Response[ParticipantDetail]:
    """The participant with the metadata of every token issued to it (label, creation, expiry,
    revocation), oldest first; never a token's secret or digest. 404 for an unknown id."""
    _authorize(request)
    pid = path_uuid(participant_id, "participantId")
    result = await admin_pool_of(request).fetchval(
        "SELECT control_plane.admin_get_participant($1)", pid
    )
    return json_response(result)


@get(
    "/sessions",
    summary="List sessions",
    responses=problems(*_ADMIN_PROBLEMS),
)
async def list_sessions(
    request: Req,
    # `state` is a reserved handler argument in Litestar: the query name is given explicitly.
    session_state: str | None = Parameter(
        query="state",
        default=None,
        description="Only sessions in this state: provisioning, active, archived or closed.",
    ),
    limit: str | None = Parameter(default=None, description=_LIMIT_DOC),
    after: str | None = Parameter(default=None, description=_AFTER_DOC),
) -> Response[SessionPage]:
    """One page of sessions in creation order, optionally of one state: `{items, next}`, where
    `next` is the value to pass as `after` for the following page (null on the last)."""
    _authorize(request)
    check_query(request, _SESSION_QUERY)
    result = await admin_pool_of(request).fetchval(
        "SELECT control_plane.admin_list_sessions($1, $2, $3)",
        session_state,
        query_int(limit, "limit"),
        query_uuid(after, "after"),
    )
    return json_response(result)


@get(
    "/sessions/{session_id:str}",
    summary="Read a session and its members",
    responses=problems(*_ADMIN_PROBLEMS, NOT_FOUND),
)
async def get_session(request: Req, session_id: str) -> Response[SessionDetail]:
    """The session's state and version floor with every membership (role, state, joinedAt) in
    joining order. 404 for an unknown id."""
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
    opt=auth_opt(Auth.ADMIN),
    middleware=REFUSE_EARLY,
)
