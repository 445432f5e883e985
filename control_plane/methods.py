"""HEAD and OPTIONS for every route, and complete `Allow` lists (RFC 9110 §9.3.2, §9.3.7, §15.5.6).

Litestar answers HEAD on a GET route with 405, and the OPTIONS handler it adds to a path is built
before the path's last method is registered (a path with GET and POST answered `Allow: OPTIONS,
POST`). Both are fixed here for every path at once, in front of Litestar's router:

- HEAD is served as the GET of the same path, with the GET's status and headers and no body; a
  path without GET answers 405 as before.
- OPTIONS answers Litestar's 204 with `Allow` recomputed from the matched route's methods.
- Every `Allow` (OPTIONS and 405) lists HEAD wherever GET is served, in one sorted order.
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


def _with_header(headers: Any, name: bytes, value: str) -> list[tuple[bytes, bytes]]:
    kept = [(k, v) for k, v in headers if k.lower() != name]
    return [*kept, (name, value.encode("latin-1"))]


def _header(headers: Any, name: bytes) -> str | None:
    for key, value in headers:
        if key.lower() == name:
            return bytes(value).decode("latin-1")
    return None


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
        # Any: the ASGI scope/message unions do not narrow on `scope["type"]`.
        if scope["type"] != "http":
            await super().__call__(scope, receive, send)
        elif scope["method"] == "HEAD":
            await self._head(scope, receive, send)
        else:
            await super().__call__(scope, receive, self._allow_fixer(scope, send))

    def _allow_fixer(self, scope: Any, send: Any) -> Any:
        """Rewrites `Allow` on the OPTIONS answer (from the matched route) and on 405s."""

        async def fixed(message: Any) -> None:
            if message["type"] == "http.response.start":
                headers = message.get("headers", [])
                allow: str | None = None
                if message["status"] == 405:
                    listed = _header(headers, b"allow")
                    if listed is not None:
                        allow = allow_header({m.strip() for m in listed.split(",") if m.strip()})
                elif scope["method"] == "OPTIONS" and message["status"] < 300:
                    methods = self._methods_by_template.get(scope.get("path_template", ""))
                    if methods is not None:
                        allow = allow_header(methods)
                if allow is not None:
                    message = {**message, "headers": _with_header(headers, b"allow", allow)}
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

        await super().__call__(get_scope, head_receive, self._allow_fixer(get_scope, head_send))
