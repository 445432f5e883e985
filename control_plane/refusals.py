"""Refuse early: the per-token rate check and the admission capacity check, run as soon as the
route is known and before the body is read, so that a refused request costs no body read, no
decoding and no handler. Under a flood or a reconnect storm most requests are refused; if each
refusal cost what serving costs, refusing would starve serving (measured: see
docs/reliability.md, "Overload").

Attached per router or handler to every route but the heartbeat (routes._common.REFUSE_EARLY),
so the hot path does not pass through it. The handler's own admission (routes._common.pool_of)
still decides for requests that get past this point.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import msgspec
from litestar.types import (
    ASGIApp,
    HTTPResponseBodyEvent,
    HTTPResponseStartEvent,
    Receive,
    Scope,
    Send,
)

from control_plane import errors
from control_plane.admission import SHED_DETAIL, Admission, classify
from control_plane.errors import ErrorKind
from control_plane.overload_metrics import count_rate_limited
from control_plane.problems import PROBLEM_MEDIA_TYPE, Problem, retry_after
from control_plane.rate_limit import RateLimits


def _body(kind: ErrorKind, detail: str) -> bytes:
    return msgspec.json.encode(
        Problem(
            type=f"urn:control-plane:problem:{kind.code}",
            title=kind.title,
            status=kind.status,
            detail=detail,
            code=kind.code,
        )
    )


_LIMITED = _body(errors.RATE_LIMITED, "too many requests for this token; retry later")
_SHED = _body(errors.UNAVAILABLE, SHED_DETAIL)


class RefuseEarlyMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        request_class = classify(scope.get("path_template") or "", scope.get("method", "GET"))
        if request_class is None:  # an operations route
            await self.app(scope, receive, send)
            return
        state = scope["litestar_app"].state
        authorization = _authorization(scope["headers"])
        if authorization is not None:  # no credentials: a 401 without a database call
            limits: RateLimits = state.rate_limits
            wait = limits.wait(request_class, authorization)
            if wait > 0.0:
                count_rate_limited(str(request_class))
                await _refuse(send, 429, _LIMITED, retry_after(max(1, math.ceil(wait))))
                return
        admission: Admission = state.admission
        gate = admission.gates.get(request_class)
        if gate is not None and gate.full():
            refusal = gate.refuse()  # counted, with the class's current Retry-After
            await _refuse(send, 503, _SHED, refusal.headers["Retry-After"])
            return
        await self.app(scope, receive, send)


async def _refuse(send: Send, status: int, body: bytes, retry: str) -> None:
    start: HTTPResponseStartEvent = {
        "type": "http.response.start",
        "status": status,
        "headers": [
            (b"content-type", PROBLEM_MEDIA_TYPE.encode()),
            (b"content-length", str(len(body)).encode()),
            (b"retry-after", retry.encode()),
        ],
    }
    end: HTTPResponseBodyEvent = {"type": "http.response.body", "body": body, "more_body": False}
    await send(start)
    await send(end)


def _authorization(headers: Iterable[tuple[bytes, bytes]]) -> bytes | None:
    for name, value in headers:
        if name == b"authorization":
            return value or None
    return None
