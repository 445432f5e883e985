"""Runtime-node API (contract §6.1–6.7): attach, declaration, capabilities, heartbeat, detach,
roster, revoke.

Each handler: strict body → one SQL function (caller resolved inside it from the token digest)
→ its jsonb passed through, or the function's SQLSTATE mapped to a problem.
"""

from __future__ import annotations

from typing import Any

from litestar import Request, Response, Router, get, post, put

from control_plane.auth import is_admin, participant_digest
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
from routes._common import REFUSE_EARLY, pool_of, problems, settings_of

Req = Request[Any, Any, Any]
_BODY_ERRORS = (400, 401, 403, 413, 415, 503)
_LIMITED = 429  # every route but the heartbeat (control_plane/rate_limit.py)


def _digest(request: Req) -> bytes:
    return participant_digest(request.headers.get("authorization"))


@post(
    "/sessions/{session_id:str}/runtime-nodes",
    status_code=200,
    request_body_doc=AttachRequest,
    responses=problems(*_BODY_ERRORS, 409, _LIMITED),
    middleware=REFUSE_EARLY,
)
async def attach(request: Req, session_id: str) -> Response[AttachResult]:
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
    request_body_doc=DeclarationRequest,
    responses=problems(*_BODY_ERRORS, 409, _LIMITED),
    middleware=REFUSE_EARLY,
)
async def declare(request: Req, node_id: str) -> Response[NodeStateResult]:
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
    request_body_doc=CapabilityUpdateRequest,
    responses=problems(*_BODY_ERRORS, 409, _LIMITED),
    middleware=REFUSE_EARLY,
)
async def update_capabilities(request: Req, node_id: str) -> Response[NodeStateResult]:
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
    request_body_doc=HeartbeatRequest,
    responses=problems(*_BODY_ERRORS),
)
async def heartbeat(request: Req, node_id: str) -> Response[None]:
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
    request_body_doc=ReasonRequest,
    responses=problems(*_BODY_ERRORS, _LIMITED),
    middleware=REFUSE_EARLY,
)
async def detach(request: Req, node_id: str) -> Response[None]:
    nid = path_node_id(node_id)
    digest = _digest(request)
    await read_body(request, ReasonRequest, optional=True)  # reason: accepted, not stored
    await pool_of(request).execute("SELECT control_plane.runtime_node_detach($1, $2)", digest, nid)
    return no_content()


@get(
    "/sessions/{session_id:str}/runtime-nodes",
    responses=problems(400, 401, 403, 503, _LIMITED),
    middleware=REFUSE_EARLY,
)
async def roster(request: Req, session_id: str) -> Response[RosterResult]:
    sid = path_uuid(session_id, "sessionId")
    digest = _digest(request)
    result = await pool_of(request).fetchval(
        "SELECT control_plane.runtime_node_roster($1, $2)", digest, sid
    )
    return json_response(result)


@post(
    "/sessions/{session_id:str}/runtime-nodes/{node_id:str}/revoke",
    status_code=204,
    request_body_doc=ReasonRequest,
    responses=problems(*_BODY_ERRORS, 404, _LIMITED),
    middleware=REFUSE_EARLY,
)
async def revoke(request: Req, session_id: str, node_id: str) -> Response[None]:
    sid = path_uuid(session_id, "sessionId")
    nid = path_node_id(node_id)
    authorization = request.headers.get("authorization")
    # The admin token is accepted here (and on /v1/admin) only; otherwise a participant token.
    as_admin = is_admin(authorization, settings_of(request).admin_token)
    digest = None if as_admin else participant_digest(authorization)
    await read_body(request, ReasonRequest, optional=True)  # reason: accepted, not stored
    await pool_of(request).execute(
        "SELECT control_plane.runtime_node_revoke($1, $2, $3, $4)", digest, sid, nid, as_admin
    )
    return no_content()


runtime_node_router = Router(
    path="/v1",
    route_handlers=[attach, declare, update_capabilities, heartbeat, detach, roster, revoke],
    tags=["runtime-nodes"],
)
