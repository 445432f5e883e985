"""Runtime-node API (contract §6.1–6.7): attach, declaration, capabilities, heartbeat, detach,
roster, revoke.

Each handler: strict body → one SQL function (caller resolved inside it from the token digest)
→ its jsonb passed through, or the function's SQLSTATE mapped to a problem.
"""

from __future__ import annotations

from typing import Any

from litestar import Request, Response, Router, get, post, put

from control_plane.auth import Auth, auth_opt, is_admin, participant_digest
from control_plane.errors import SqlStateRefusal
from control_plane.heartbeats import coalescer_of
from control_plane.http import (
    encode_json,
    json_response,
    no_content,
    path_node_id,
    path_uuid,
    read_body,
)
from control_plane.schemas import (
    AttachRequest,
    AttachResult,
    CapabilityUpdateRequest,
    DeclarationRequest,
    HeartbeatRequest,
    NodeStateResult,
    ReasonRequest,
    RosterResult,
)
from routes._common import (
    ATTACH_CONFLICT,
    ATTACH_REVOKED,
    BODY_PROBLEMS,
    CAPABILITY_UPDATE_CONFLICT,
    FLOOR_EXCEEDED,
    INVALID,
    NODE_NOT_FOUND,
    NOT_FOUND,
    PERMISSION_DENIED,
    RATE_LIMITED,
    REFUSE_EARLY,
    SESSION_NOT_ACTIVE,
    UNAUTHENTICATED,
    UNAVAILABLE,
    admin_pool_of,
    pool_of,
    problems,
    settings_of,
)
from routes.events import events

Req = Request[Any, Any, Any]
# Every call: a bad path value, no valid token, the uniform 403, the database away.
_PROBLEMS = (INVALID, UNAUTHENTICATED, PERMISSION_DENIED, UNAVAILABLE)
_BODY_PROBLEMS = (*_PROBLEMS, *BODY_PROBLEMS)


def _digest(request: Req) -> bytes:
    return participant_digest(request.headers.get("authorization"))


@post(
    "/sessions/{session_id:str}/runtime-nodes",
    status_code=200,
    summary="Attach a runtime node to a session",
    request_body_doc=AttachRequest,
    responses=problems(
        *_BODY_PROBLEMS, ATTACH_CONFLICT, ATTACH_REVOKED, SESSION_NOT_ACTIVE, RATE_LIMITED
    ),
    middleware=REFUSE_EARLY,
)
async def attach(request: Req, session_id: str) -> Response[AttachResult]:
    """Attach the caller's node to an active session (upsert): a new slot starts `registering`;
    an offline slot of the same owner reconnects with the same attachment id. A node below the
    session's version floor is admitted read-only. A node active in another session, or whose
    slot was revoked, gets 409."""
    sid = path_uuid(session_id, "sessionId")
    digest = _digest(request)
    body = await read_body(request, AttachRequest)
    result = await pool_of(request).fetchval(
        "SELECT control_plane.runtime_node_attach($1, $2, $3, $4, $5, $6::jsonb)",
        digest,
        sid,
        body.participant_id,
        body.node_id,
        body.client_version,
        encode_json(body.capabilities),
    )
    return json_response(result)


@post(
    "/runtime-nodes/{node_id:str}/declaration",
    status_code=200,
    summary="Declare a node's capabilities",
    request_body_doc=DeclarationRequest,
    responses=problems(*_BODY_PROBLEMS, FLOOR_EXCEEDED, RATE_LIMITED),
    middleware=REFUSE_EARLY,
)
async def declare(request: Req, node_id: str) -> Response[NodeStateResult]:
    """Declare the capabilities of the caller's attached node (at least one): this brings a
    `registering` or `degraded` slot `online`. Refused with 409 `version.floor_exceeded` for a
    read-only node."""
    nid = path_node_id(node_id)
    digest = _digest(request)
    body = await read_body(request, DeclarationRequest)
    result = await pool_of(request).fetchval(
        "SELECT control_plane.runtime_node_declare($1, $2, $3::jsonb)",
        digest,
        nid,
        encode_json(body.capabilities),
    )
    return json_response(result)


@put(
    "/runtime-nodes/{node_id:str}/capabilities",
    summary="Update a node's capabilities",
    request_body_doc=CapabilityUpdateRequest,
    responses=problems(*_BODY_PROBLEMS, CAPABILITY_UPDATE_CONFLICT, FLOOR_EXCEEDED, RATE_LIMITED),
    middleware=REFUSE_EARLY,
)
async def update_capabilities(request: Req, node_id: str) -> Response[NodeStateResult]:
    """Replace the capabilities of the caller's active node and optionally move it between
    `online` and `degraded` (`healthChanges`). Only a declaration brings a `registering` node
    online (409 `runtimenode.capabilityupdate_conflict`); a read-only node gets 409
    `version.floor_exceeded`."""
    nid = path_node_id(node_id)
    digest = _digest(request)
    body = await read_body(request, CapabilityUpdateRequest)
    changes = body.health_changes
    result = await pool_of(request).fetchval(
        "SELECT control_plane.runtime_node_update_capabilities($1, $2, $3::jsonb, $4, $5)",
        digest,
        nid,
        encode_json(body.capabilities),
        changes.state if changes else None,
        changes.reason if changes else None,
    )
    return json_response(result)


@post(
    "/runtime-nodes/{node_id:str}/heartbeat",
    status_code=204,
    summary="Report a node's liveness",
    request_body_doc=HeartbeatRequest,
    responses=problems(*_BODY_PROBLEMS),
)
async def heartbeat(request: Req, node_id: str) -> Response[None]:
    """Record that the caller's active node is alive (database clock) with its self-reported
    health, every 15 s. A node the sweep demoted returns straight to the reported health.
    Exempt from the version floor."""
    # The hot path: path check → digest → strict body → enqueue into the coalescer, which sends
    # one set-based call per round trip; this request awaits only its own item's verdict.
    nid = path_node_id(node_id)
    digest = _digest(request)
    body = await read_body(request, HeartbeatRequest)
    refusal = await coalescer_of(request).beat(digest, nid, body.health_state)
    if refusal is None:
        return no_content()
    raise SqlStateRefusal(refusal)  # mapped like any raised SQLSTATE (problems.py)


@post(
    "/runtime-nodes/{node_id:str}/detach",
    status_code=204,
    summary="Detach a runtime node",
    request_body_doc=ReasonRequest,
    responses=problems(*_BODY_PROBLEMS, RATE_LIMITED),
    middleware=REFUSE_EARLY,
)
async def detach(request: Req, node_id: str) -> Response[None]:
    """Take the caller's active node offline (slot and presence). Idempotent: with nothing
    active it is a no-op 204. Never touches a revoked slot."""
    nid = path_node_id(node_id)
    digest = _digest(request)
    body = await read_body(request, ReasonRequest, optional=True)
    # The reason is stored in the detached event (contract §9).
    await pool_of(request).execute(
        "SELECT control_plane.runtime_node_detach($1, $2, $3)", digest, nid, body.reason
    )
    return no_content()


def _is_admin(request: Req) -> bool:
    return is_admin(request.headers.get("authorization"), settings_of(request).admin_token)


@get(
    "/sessions/{session_id:str}/runtime-nodes",
    summary="List a session's runtime nodes",
    responses=problems(*_PROBLEMS, NOT_FOUND, RATE_LIMITED),
    opt=auth_opt(Auth.ADMIN_OR_PARTICIPANT),
    middleware=REFUSE_EARLY,
)
async def roster(request: Req, session_id: str) -> Response[RosterResult]:
    """Every attachment of the session in all five slot states, ordered by `attachedAt` then
    `nodeId`, with presence health (null when the node never beat) and the read-only verdict
    against the current floor. For active members of the session, or the admin token (any
    session; 404 `not_found` for an unknown one)."""
    sid = path_uuid(session_id, "sessionId")
    if _is_admin(request):
        result = await admin_pool_of(request).fetchval(
            "SELECT control_plane.admin_session_roster_v2($1)", sid
        )
    else:
        result = await pool_of(request).fetchval(
            "SELECT control_plane.runtime_node_roster_v2($1, $2)", _digest(request), sid
        )
    return json_response(result)


@post(
    "/sessions/{session_id:str}/runtime-nodes/{node_id:str}/revoke",
    status_code=204,
    summary="Revoke a node's attachment",
    request_body_doc=ReasonRequest,
    responses=problems(*_BODY_PROBLEMS, NODE_NOT_FOUND, RATE_LIMITED),
    middleware=REFUSE_EARLY,
    opt=auth_opt(Auth.ADMIN_OR_PARTICIPANT),
)
async def revoke(request: Req, session_id: str, node_id: str) -> Response[None]:
    """Revoke the node's attachment to the session for good (terminal) and take its presence
    offline; already revoked is a no-op 204. For a session owner's participant token or the
    admin token; 404 when the session has no attachment of that node."""
    sid = path_uuid(session_id, "sessionId")
    nid = path_node_id(node_id)
    # A session owner's token, or the admin token (through the admin role, which alone may).
    as_admin = _is_admin(request)
    digest = None if as_admin else _digest(request)
    body = await read_body(request, ReasonRequest, optional=True)
    # The reason is stored in the revoked event (contract §9).
    if as_admin:
        await admin_pool_of(request).execute(
            "SELECT control_plane.admin_revoke_runtime_node($1, $2, $3)", sid, nid, body.reason
        )
    else:
        await pool_of(request).execute(
            "SELECT control_plane.runtime_node_revoke($1, $2, $3, $4)",
            digest,
            sid,
            nid,
            body.reason,
        )
    return no_content()


runtime_node_router = Router(
    path="/v1",
    route_handlers=[
        attach,
        declare,
        update_capabilities,
        heartbeat,
        detach,
        roster,
        events,
        revoke,
    ],
    tags=["runtime-nodes"],
    opt=auth_opt(Auth.PARTICIPANT),
)
