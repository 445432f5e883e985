"""HEAD and OPTIONS for every route, and complete `Allow` lists (RFC 9110 §9.3.2, §9.3.7, §15.5.6).

Litestar answers HEAD on a GET route with 405, and the OPTIONS handler it adds to a path is built
before the path's last method is registered (a path with GET and POST answered `Allow: OPTIONS,
POST`). Both are fixed here for every path at once, in front of Litestar's router:

- HEAD is served as the GET of the same path, with the GET's status and headers and no body; a
  path without GET answers 405 as before.
- OPTIONS answers Litestar's 204 with `Allow` recomputed from the matched route's methods.
- Every `Allow` (OPTIONS here, 405 in problems.py) lists HEAD wherever GET is served, in one
  sorted order.
"""

from __future__ import annotations

import asyncio
from functools import cached_property
from typing import Any

from litestar import Litestar
from litestar.routes import HTTPRoute


def allow_header(methods: set[str] | frozenset[str]) -> str:
    """The `Allow` value for a route serving `methods` (HEAD implied by GET)."""
    allowed = {m.upper() for m in methods}
    if "GET" in allowed:
        allowed.add("HEAD")
    return ", ".join(sorted(allowed))


def complete_allow(listed: str) -> str:
    """A router's `Allow` list (405) made complete: HEAD with GET, one sorted order."""
    return allow_header({m.strip() for m in listed.split(",") if m.strip()})


def _with_header(headers: Any, name: bytes, value: str) -> list[tuple[bytes, bytes]]:
    kept = [(k, v) for k, v in headers if k.lower() != name]
    return [*kept, (name, value.encode("latin-1"))]


class ControlPlaneApp(Litestar):
    """Litestar with HEAD/OPTIONS semantics for every route (see the module docstring)."""

    @cached_property
    def _methods_by_template(self) -> dict[str, frozenset[str]]:
        # `scope["path_template"]`, set by the router once it matched, is the route's path_format.
        return {
            route.path_format: frozenset(route.methods)
            for route in self.routes
            if isinstance(route, HTTPRoute)
        }

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        # Any: the ASGI scope/message unions do not narrow on `scope["type"]`. Other methods
        # pass straight through (the heartbeat hot path pays nothing here).
        if scope["type"] == "http" and scope["method"] == "HEAD":
            await self._head(scope, receive, send)
        elif scope["type"] == "http" and scope["method"] == "OPTIONS":
            await super().__call__(scope, receive, self._options_send(scope, send))
        else:
            await super().__call__(scope, receive, send)

    def _options_send(self, scope: Any, send: Any) -> Any:
        """Rewrites `Allow` on the OPTIONS answer from the matched route's methods."""

        async def fixed(message: Any) -> None:
            if message["type"] == "http.response.start" and message["status"] < 300:
                methods = self._methods_by_template.get(scope.get("path_template", ""))
                if methods is not None:
                    headers = _with_header(
                        message.get("headers", []), b"allow", allow_header(methods)
                    )
                    message = {**message, "headers": headers}
            await send(message)

        return fixed

    async def _head(self, scope: Any, receive: Any, send: Any) -> None:
        # A copy: the server keeps seeing HEAD in its own scope (and drops any body itself too).
        get_scope: Any = {**scope, "method": "GET"}
        finished = asyncio.Event()

        async def head_send(message: Any) -> None:
            if finished.is_set():
                return  # the rest of a GET body (a stream, say): never sent for HEAD
            if message["type"] == "http.response.body":
                finished.set()
                message = {"type": "http.response.body", "body": b"", "more_body": False}
            await send(message)

        async def head_receive() -> Any:
            # A streaming GET runs until the client goes: for HEAD it has, once headers are out.
            received = asyncio.ensure_future(receive())
            done = asyncio.ensure_future(finished.wait())
            await asyncio.wait((received, done), return_when=asyncio.FIRST_COMPLETED)
            done.cancel()
            if received.done():
                return received.result()
            received.cancel()
            return {"type": "http.disconnect"}

        await super().__call__(get_scope, head_receive, head_send)
