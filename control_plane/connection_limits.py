"""Connection hygiene for uvicorn: a slow or idle client must not hold a worker.

uvicorn bounds only the idle time between requests on a keep-alive connection
(`timeout_keep_alive`); it has no timeout for reading a request's headers or body, does not time
out a connection that never sends a byte, and parses headers of any size. `GuardedHttpTools`
is uvicorn's httptools protocol (its documented `http=` option takes a protocol class) with:

- a header deadline: a request's headers must arrive within `HTTP_HEADER_TIMEOUT_S` of its first
  byte (of the connection's opening, for the first request: a connection that sends nothing is
  closed at the same deadline);
- a body deadline: the whole body within `HTTP_BODY_TIMEOUT_S` of the end of the headers;
- at most MAX_HEADER_BYTES of request line and headers;
- at most `HTTP_MAX_CONNECTIONS` open connections per worker: one more is answered 503
  `service.unavailable` with a jittered `Retry-After` and closed at once.

A connection past a deadline is closed without an answer (what nginx does on its
client_header/body timeouts): the client stopped talking; the request's handler, if one was
waiting for the body, sees the disconnect. Deadlines are checked by one timer per worker every
CHECK_SECONDS over the open connections, so a request pays three clock reads, not timers: a
connection is closed between its deadline and CHECK_SECONDS later.
"""

from __future__ import annotations

import asyncio
from functools import cache
from typing import Any

import msgspec
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from control_plane import errors
from control_plane.config import Settings, load_settings
from control_plane.overload_metrics import count_closed
from control_plane.problems import Problem, retry_after

CHECK_SECONDS = 0.25
MAX_HEADER_BYTES = 32 * 1024  # request line + headers; nginx's default buffers are 4 x 8 KiB

# Phases a connection can be in (what its deadline bounds).
_HEADERS, _BODY, _IDLE = 1, 2, 0


@cache
def _limits() -> Settings:
    return load_settings()  # the worker's environment (read once per process)


class _Watch:
    """Per worker: the deadline timer over this worker's open connections."""

    def __init__(self, connections: set[Any], loop: asyncio.AbstractEventLoop) -> None:
        self.connections = connections
        self.loop = loop
        loop.call_later(CHECK_SECONDS, self.check)

    def check(self) -> None:
        now = self.loop.time()
        for conn in list(self.connections):
            if isinstance(conn, GuardedHttpTools) and conn.phase and now >= conn.deadline:
                conn.expire()
        self.loop.call_later(CHECK_SECONDS, self.check)


_watch: _Watch | None = None


def open_connections() -> int:
    """This worker's open client connections (for the metrics sampler)."""
    return len(_watch.connections) if _watch is not None else 0


def _refusal() -> bytes:
    body = msgspec.json.encode(
        Problem(
            type=f"urn:control-plane:problem:{errors.UNAVAILABLE.code}",
            title=errors.UNAVAILABLE.title,
            status=503,
            detail="too many connections; retry later",
            code=errors.UNAVAILABLE.code,
        )
    )
    head = (
        "HTTP/1.1 503 Service Unavailable\r\n"
        "content-type: application/problem+json\r\n"
        f"content-length: {len(body)}\r\n"
        f"retry-after: {retry_after(1)}\r\n"
        "connection: close\r\n\r\n"
    )
    return head.encode() + body


class GuardedHttpTools(HttpToolsProtocol):
    """uvicorn's httptools protocol with header/body deadlines, a header size cap and a
    connection limit (module docstring)."""

    phase = _IDLE
    deadline = 0.0
    header_bytes = 0

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        global _watch
        super().connection_made(transport)
        limits = _limits()
        if _watch is None:
            _watch = _Watch(self.connections, self.loop)
        if len(self.connections) > limits.http_max_connections:
            count_closed("connection_limit")
            transport.write(_refusal())
            transport.close()
            return
        self.phase = _HEADERS
        self.deadline = self.loop.time() + limits.http_header_timeout_s

    def data_received(self, data: bytes) -> None:
        if self.phase != _HEADERS:
            super().data_received(data)
            return
        self.header_bytes += len(data)
        super().data_received(data)
        if self.phase == _HEADERS and self.header_bytes > MAX_HEADER_BYTES:
            self._close("headers_too_large")  # still no end of headers after that much

    def on_message_begin(self) -> None:
        if self.phase != _HEADERS:  # a further request on a keep-alive connection
            self.phase = _HEADERS
            self.deadline = self.loop.time() + _limits().http_header_timeout_s
        super().on_message_begin()

    def on_headers_complete(self) -> None:
        self.phase = _BODY
        self.header_bytes = 0
        self.deadline = self.loop.time() + _limits().http_body_timeout_s
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self.phase = _IDLE  # now uvicorn's keep-alive timeout bounds the idle connection
        super().on_message_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self.phase = _IDLE
        super().connection_lost(exc)

    def expire(self) -> None:
        self._close("header_timeout" if self.phase == _HEADERS else "body_timeout")

    def _close(self, reason: str) -> None:
        self.phase = _IDLE
        count_closed(reason)
        if not self.transport.is_closing():
            self.transport.close()
