"""Change-feed followers for the drills (contract §9): SSE and long-poll clients that record every
event id they are handed, checked at the end against runtime_node_events itself.

A follower must observe every event of its session after its start cursor, once, in id order.
An SSE follower whose stream breaks reconnects with Last-Event-ID (the resume path); a
long-poll follower re-polls from `next`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import psycopg


@dataclass
class Follower:
    kind: str  # sse | poll
    session_id: str
    token: str
    after: int
    ids: list[int] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    reconnects: int = 0

    @property
    def path(self) -> str:
        return f"/v1/sessions/{self.session_id}/runtime-nodes/events"

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


def start_cursor(conn: psycopg.Connection[Any]) -> int:
    row = conn.execute("SELECT coalesce(max(id), 0) AS n FROM control_plane.runtime_node_events")
    found = row.fetchone()
    return int(found["n"] if isinstance(found, dict) else found[0]) if found else 0


async def run(http: httpx.AsyncClient, f: Follower, stop: Callable[[], bool]) -> None:
    if f.kind == "sse":
        await _sse(http, f, stop)
    else:
        await _poll(http, f, stop)


async def _poll(http: httpx.AsyncClient, f: Follower, stop: Callable[[], bool]) -> None:
    cursor = f.after
    while not stop():
        try:
            r = await http.get(
                f.path, params={"after": cursor, "wait": 5, "limit": 1000}, headers=f.headers,
                timeout=30,
            )  # fmt: skip
        except httpx.HTTPError as exc:
            f.errors.append(repr(exc))
            await asyncio.sleep(0.5)
            continue
        if r.status_code != 200:
            f.errors.append(f"{r.status_code} {r.text[:200]}")
            await asyncio.sleep(0.5)
            continue
        page = r.json()
        f.ids.extend(int(e["id"]) for e in page["events"])
        cursor = page["next"]


async def _sse(http: httpx.AsyncClient, f: Follower, stop: Callable[[], bool]) -> None:
    last: int | None = None
    while not stop():
        headers = {**f.headers, "Accept": "text/event-stream"}
        params: dict[str, Any] = {"after": f.after}
        if last is not None:
            headers["Last-Event-ID"] = str(last)  # resume where the broken stream stopped
        try:
            async with http.stream(
                "GET", f.path, params=params, headers=headers, timeout=httpx.Timeout(60.0)
            ) as r:
                if r.status_code != 200:
                    f.errors.append(f"{r.status_code} {(await r.aread())[:200]!r}")
                    await asyncio.sleep(0.5)
                    continue
                async for line in r.aiter_lines():
                    if line.startswith("data: "):
                        event = json.loads(line[6:])
                        f.ids.append(int(event["id"]))
                        last = int(event["id"])
                    if stop():
                        return
        except httpx.HTTPError as exc:
            f.errors.append(repr(exc))
        if not stop():
            f.reconnects += 1
            await asyncio.sleep(0.2)


def check(conn: psycopg.Connection[Any], followers: list[Follower], upto: int) -> dict[str, int]:
    """Compares what each follower got (ids <= upto) with the table: missed, duplicated and
    out-of-order ids, summed over the followers."""
    missed = duplicated = unordered = 0
    for f in followers:
        rows = conn.execute(
            "SELECT id FROM control_plane.runtime_node_events"
            " WHERE session_id = %s AND id > %s AND id <= %s ORDER BY id",
            (f.session_id, f.after, upto),
        ).fetchall()
        expected = [int(r["id"] if isinstance(r, dict) else r[0]) for r in rows]
        got = [i for i in f.ids if i <= upto]
        missed += len(set(expected) - set(got))
        duplicated += len(got) - len(set(got))
        unordered += sum(1 for a, b in zip(got, got[1:], strict=False) if b <= a)
    return {"missed": missed, "duplicated": duplicated, "unordered": unordered}


async def stop_all(tasks: list[asyncio.Task[None]]) -> None:
    for task in tasks:
        task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await asyncio.gather(*tasks, return_exceptions=True)
