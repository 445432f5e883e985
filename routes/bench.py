"""Bench-only routes: the fair HTTP ceiling next to the heartbeat (docs/performance.md).

`POST /bench/hello-post/{nodeId}` does everything a heartbeat request does except the database:
path check, bearer digest, strict body decode (the heartbeat's own struct), 204. Mounted only
with CONTROL_PLANE_BENCH_ROUTES=1 (bench/run.sh sets it); never in the product's route table by
default, and never under /v1.
"""

from __future__ import annotations

from typing import Any

from litestar import Request, Response, post
from litestar.handlers import BaseRouteHandler

from control_plane.auth import participant_digest
from control_plane.config import Settings
from control_plane.http import no_content, path_node_id, read_body
from control_plane.schemas import HeartbeatRequest


@post("/bench/hello-post/{node_id:str}", status_code=204, include_in_schema=False)
async def hello_post(request: Request[Any, Any, Any], node_id: str) -> Response[None]:
    path_node_id(node_id)
    participant_digest(request.headers.get("authorization"))
    await read_body(request, HeartbeatRequest)
    return no_content()


def bench_routes(settings: Settings) -> list[BaseRouteHandler]:
    return [hello_post] if settings.bench_routes else []
