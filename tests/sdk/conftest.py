"""Fixtures for the SDK and CLI tests: a participant, a session and a membership made through the
SDK's own admin calls, and short timings so a keep-alive loop can be watched in seconds."""

from __future__ import annotations

import asyncio
import contextlib
import os
import tempfile
import threading
from collections.abc import Coroutine, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import psycopg.conninfo
import pytest
from runtime_node_client import ControlPlaneClient

REPO_ROOT = Path(__file__).resolve().parents[2]
# heartbeat 1 s, degraded after 3 s, offline after 6 s (the settings CHECKs keep the order).
FAST = {
    "heartbeat_interval": "1 second",
    "degraded_after": "3 seconds",
    "offline_after": "6 seconds",
}


@dataclass(frozen=True)
class World:
    base_url: str
    admin_token: str
    participant_id: str
    token: str
    session_id: str


async def make_world(base_url: str, admin_token: str, *, floor: str | None = None) -> World:
    """A participant with a token, owner of a new active session — through the SDK's admin calls."""
    async with ControlPlaneClient(base_url, admin_token) as admin:
        participant = await admin.create_participant("sdk-test")
        issued = await admin.issue_token(participant.participant_id, label="sdk")
        session = await admin.create_session(min_client_version=floor)
        await admin.put_membership(
            session.session_id, participant.participant_id, role="owner", state="active"
        )
    return World(
        base_url,
        admin_token,
        str(participant.participant_id),
        issued.token,
        str(session.session_id),
    )


@pytest.fixture
def world(server: str, admin_token: str) -> World:
    return asyncio.run(make_world(server, admin_token))


@pytest.fixture
def fast_timings(db: psycopg.Connection) -> Iterator[None]:
    """Short heartbeat/degraded/offline timings for this test, the previous ones restored after."""
    columns = ", ".join(FAST)
    before = db.execute(f"SELECT {columns} FROM control_plane.settings").fetchone()
    assert before is not None
    assignments = ", ".join(f"{name} = %s::interval" for name in FAST)
    db.execute(f"UPDATE control_plane.settings SET {assignments}", list(FAST.values()))
    try:
        yield
    finally:
        # One statement: the CHECKs (heartbeat < degraded < offline) hold before and after.
        db.execute(
            "UPDATE control_plane.settings SET heartbeat_interval = %s, degraded_after = %s,"
            " offline_after = %s",
            tuple(before),
        )


class DatabaseLink:
    """A Unix-socket relay in front of the test cluster's socket, for one app server: `cut()`
    refuses new connections and drops every open one (what the app sees when its database
    stops or crashes), `restore()` brings it back. The shared cluster and every other test's
    connections are untouched, so an outage can be staged in the middle of the suite."""

    def __init__(self, database_url: str, directory: Path) -> None:
        params = psycopg.conninfo.conninfo_to_dict(database_url)
        host, port = str(params["host"]), str(params.get("port") or 5432)
        self.target = os.path.join(host, f".s.PGSQL.{port}")
        self.path = str(directory / f".s.PGSQL.{port}")
        self.url = psycopg.conninfo.make_conninfo(database_url, host=str(directory))
        self._loop = asyncio.new_event_loop()
        self._server: asyncio.AbstractServer | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        self.restore()

    def _call(self, coro: Coroutine[Any, Any, None]) -> None:
        asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout=10)

    def restore(self) -> None:
        self._call(self._listen())

    def cut(self) -> None:
        self._call(self._cut())

    def close(self) -> None:
        self.cut()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)

    async def _listen(self) -> None:
        if self._server is None:
            self._server = await asyncio.start_unix_server(self._relay, path=self.path)

    async def _cut(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.path)
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_unix_connection(self.target)
        except OSError:
            writer.transport.abort()
            return
        self._writers |= {writer, up_writer}

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(OSError, asyncio.IncompleteReadError):
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            dst.transport.abort()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
        self._writers -= {writer, up_writer}


@pytest.fixture
def database_link(database_url: str, migrated: None) -> Iterator[DatabaseLink]:
    if "host=/" not in psycopg.conninfo.make_conninfo(database_url):
        pytest.skip("needs a Unix-socket DATABASE_URL (the private test cluster of `make test`)")
    with tempfile.TemporaryDirectory(prefix="cp-link-") as directory:
        link = DatabaseLink(database_url, Path(directory))
        try:
            yield link
        finally:
            link.close()
