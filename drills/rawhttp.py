"""A minimal keep-alive HTTP/1.1 client for the soak's heartbeats.

10,000 nodes beating every 15 s is ~670 requests/s; httpx spends about a core on that alone on a
2-core machine that must also run the server and PostgreSQL, so the generator, not the server,
would be what falls behind. This client writes a prebuilt request and parses only the status
line, the headers it needs and a Content-Length body, over a fixed set of persistent
connections. Anything unexpected closes the connection and is reported as a transport error.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import time
from collections.abc import Callable
from dataclasses import dataclass

from drills.fleet import CLIENT_TIMEOUT, BeatStats, Outcome, Recorder
from drills.seed import Node

_BODY = b'{"healthState":"online"}'


@dataclass
class _Item:
    request: bytes
    node_id: str
    sent: float
    future: asyncio.Future[Outcome]
    op: str = "heartbeat"


class RawPool:
    def __init__(self, host: str, port: int, connections: int) -> None:
        self._host, self._port = host, port
        self._queue: asyncio.Queue[_Item | None] = asyncio.Queue()
        self._workers = [asyncio.create_task(self._worker()) for _ in range(connections)]

    def heartbeat_request(self, node: Node) -> bytes:
        return (
            f"POST /v1/runtime-nodes/{node.node_id}/heartbeat HTTP/1.1\r\n"
            f"Host: {self._host}:{self._port}\r\n"
            f"Authorization: Bearer {node.token}\r\n"
            "Content-Type: application/json\r\n"
            f"Content-Length: {len(_BODY)}\r\n\r\n"
        ).encode() + _BODY

    def request(self, method: str, path: str, token: str, body: object = None) -> bytes:
        """Any request, prebuilt: a JSON body (or none) and a bearer token."""
        payload = b"" if body is None else json.dumps(body, separators=(",", ":")).encode()
        return (
            f"{method} {path} HTTP/1.1\r\nHost: {self._host}:{self._port}\r\n"
            f"Authorization: Bearer {token}\r\n"
            + ("Content-Type: application/json\r\n" if body is not None else "")
            + f"Content-Length: {len(payload)}\r\n\r\n"
        ).encode() + payload

    async def heartbeat(self, rec: Recorder | None, node: Node, request: bytes) -> Outcome:
        return await self.send(rec, "heartbeat", node.node_id, request)

    async def send(self, rec: Recorder | None, op: str, node_id: str, request: bytes) -> Outcome:
        future: asyncio.Future[Outcome] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait(_Item(request, node_id, time.monotonic(), future, op))
        outcome = await future
        if rec is not None:
            rec.add(outcome)
        return outcome

    async def close(self) -> None:
        for _ in self._workers:
            self._queue.put_nowait(None)
        await asyncio.gather(*self._workers, return_exceptions=True)

    async def _worker(self) -> None:
        reader: asyncio.StreamReader | None = None
        writer: asyncio.StreamWriter | None = None
        while True:
            item = await self._queue.get()
            if item is None:
                break
            try:
                reused = writer is not None
                for attempt in (1, 2):
                    if writer is None:
                        reader, writer = await asyncio.wait_for(
                            asyncio.open_connection(self._host, self._port), CLIENT_TIMEOUT
                        )
                    assert reader is not None and writer is not None
                    try:
                        writer.write(item.request)
                        outcome = await asyncio.wait_for(
                            _read_response(reader, item), CLIENT_TIMEOUT
                        )
                        break
                    except (ConnectionResetError, asyncio.IncompleteReadError) as exc:
                        # The server closed an idle keep-alive connection (its keep-alive
                        # timeout) just as we reused it: like any HTTP client, retry once on a
                        # new connection, when no byte of the answer had arrived.
                        if (
                            not reused
                            or attempt == 2
                            or (isinstance(exc, asyncio.IncompleteReadError) and exc.partial)
                        ):
                            raise
                        writer.close()
                        reader = writer = None
            except (OSError, asyncio.IncompleteReadError, ValueError, TimeoutError) as exc:
                kind = "timeout" if isinstance(exc, TimeoutError) else "transport"
                outcome = Outcome(item.op, item.node_id, item.sent, time.monotonic(), 0,
                                  error=f"{kind}:{type(exc).__name__}")  # fmt: skip
                if writer is not None:
                    writer.close()
                reader = writer = None
            if not item.future.done():  # the beat loop may have been cancelled meanwhile
                item.future.set_result(outcome)
        if writer is not None:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()


async def _read_response(reader: asyncio.StreamReader, item: _Item) -> Outcome:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    headers = {}
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if sep:
            headers[name.strip().lower()] = value.strip()
    length = int(headers.get("content-length", "0"))
    body = await reader.readexactly(length) if length else b""
    code = None
    if body and b'"code"' in body:
        with contextlib.suppress(ValueError):
            code = json.loads(body).get("code")
    return Outcome(
        item.op, item.node_id, item.sent, time.monotonic(), status, code,
        headers.get("retry-after"), body=body if item.op != "heartbeat" else None,
    )  # fmt: skip


async def beat_forever(
    pool: RawPool,
    rec: Recorder | None,
    node: Node,
    *,
    interval: float,
    jitter: float,
    until: Callable[[], bool],
    stats: BeatStats,
) -> None:
    """fleet.beat_forever over the raw pool (same fixed schedule)."""
    request = pool.heartbeat_request(node)
    due = time.monotonic() + random.uniform(0, interval)
    while True:
        delay = due - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        if until():
            return
        stats.max_lateness = max(stats.max_lateness, time.monotonic() - due)
        outcome = await pool.heartbeat(rec, node, request)
        if outcome.status == 204:
            stats.acked(node.node_id, outcome.done)
        due += interval + random.uniform(-jitter, jitter)
