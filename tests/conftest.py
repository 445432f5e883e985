"""Shared fixtures: the real database (superuser, for assertions) and the real HTTP server.

Tests run against one shared database: other tests, other suites and the live pg_cron sweep write
to it at the same time. So every fixture creates its own rows with random ids and nothing is ever
truncated; assertions look only at the rows a test created itself.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
# `make test` runs pytest from an interpreter where the project may not be installed (/tmp/v):
# make the repository's modules importable the same way `python -m` from the root would.
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

SCHEMA = "control_plane"
TABLES = (
    "participants",
    "participant_tokens",
    "sessions",
    "session_memberships",
    "runtime_node_attachments",
    "runtime_node_presence",
    "settings",
)
SERVER_START_TIMEOUT = 30.0


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    """Tests run in random order (pytest-randomly); `-q` hides its header, so repeat the seed:
    `pytest -p randomly --randomly-seed=<seed>` replays an order, `-p no:randomly` disables it."""
    seed = getattr(config.option, "randomly_seed", None)
    if seed is not None:
        terminalreporter.write_line(f"test order: --randomly-seed={seed}")


# --- database ---------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def database_url() -> str:
    url = os.environ.get("DATABASE_URL", "").strip()
    if not url:
        pytest.exit(
            "DATABASE_URL is not set: run `make test` (it provides one) or export "
            "DATABASE_URL=postgresql://<superuser>@<host>/<db> of a migrated database",
            returncode=2,
        )
    return url


def _schema_present(conn: psycopg.Connection) -> bool:
    row = conn.execute("SELECT to_regclass('control_plane.runtime_node_attachments')").fetchone()
    return row is not None and row[0] is not None


@pytest.fixture(scope="session")
def migrated(database_url: str) -> None:
    """The schema is at head. `make test` migrates before pytest; a bare `pytest` run against an
    empty database migrates here (cheap and idempotent)."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        if _schema_present(conn):
            return
    migrate_cli(database_url)


def migrate_cli(database_url: str, *, check: bool = True) -> subprocess.CompletedProcess[str]:
    """`python -m control_plane.migrate` against `database_url`, as `make test` runs it."""
    env = {**os.environ, "DATABASE_URL": database_url}
    proc = subprocess.run(
        [sys.executable, "-m", "control_plane.migrate"],
        check=False,
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    if check and proc.returncode != 0:
        pytest.fail(f"migrate failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


@pytest.fixture(scope="session")
def run_migrate() -> Callable[..., subprocess.CompletedProcess[str]]:
    """`run_migrate(url, check=True)`: the real `python -m control_plane.migrate` subprocess."""
    return migrate_cli


@pytest.fixture(scope="session")
def db(database_url: str, migrated: None) -> Iterator[psycopg.Connection]:
    """Superuser autocommit connection for assertions and snapshots (never for setup shortcuts
    that the API offers)."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        yield conn


def table_snapshot(conn: psycopg.Connection, tables: tuple[str, ...] | list[str]) -> str:
    """md5 over every row's text of the given tables, in a stable order: equal snapshots mean
    byte-identical tables."""
    parts = []
    for table in tables:
        row = conn.execute(
            f"SELECT md5(coalesce(string_agg(t::text, E'\\n' ORDER BY t::text), ''))"
            f" FROM {SCHEMA}.{table} t"
        ).fetchone()
        parts.append(f"{table}:{row[0] if row else ''}")
    return ";".join(parts)


@pytest.fixture
def snapshot(db: psycopg.Connection) -> Callable[..., str]:
    """`snapshot(tables=TABLES)`: the byte-identity fingerprint of those tables.

    Shared database: a comparison is only meaningful for rows no one else writes at the moment.
    Use `scoped_snapshot` for tables that the sweep or concurrent tests touch.
    """

    def take(tables: tuple[str, ...] | list[str] = TABLES) -> str:
        return table_snapshot(db, tables)

    return take


@pytest.fixture
def scoped_snapshot(db: psycopg.Connection) -> Callable[..., str]:
    """`scoped_snapshot(session_ids=..., participant_ids=..., node_ids=...)`: md5 of every row
    of every table that belongs to the given ids — byte-identity restricted to a test's own data,
    immune to concurrent writers elsewhere in the shared database."""

    def take(
        session_ids: list[str] | tuple[str, ...] = (),
        participant_ids: list[str] | tuple[str, ...] = (),
        node_ids: list[str] | tuple[str, ...] = (),
    ) -> str:
        s, p, n = list(session_ids), list(participant_ids), list(node_ids)
        queries = {
            "participants": (
                "SELECT t::text FROM control_plane.participants t WHERE id = ANY(%(p)s::uuid[])"
            ),
            "participant_tokens": (
                "SELECT t::text FROM control_plane.participant_tokens t"
                " WHERE participant_id = ANY(%(p)s::uuid[])"
            ),
            "sessions": (
                "SELECT t::text FROM control_plane.sessions t WHERE id = ANY(%(s)s::uuid[])"
            ),
            "session_memberships": (
                "SELECT t::text FROM control_plane.session_memberships t"
                " WHERE session_id = ANY(%(s)s::uuid[]) OR participant_id = ANY(%(p)s::uuid[])"
            ),
            "runtime_node_attachments": (
                "SELECT t::text FROM control_plane.runtime_node_attachments t"
                " WHERE session_id = ANY(%(s)s::uuid[]) OR participant_id = ANY(%(p)s::uuid[])"
                " OR node_id = ANY(%(n)s::text[])"
            ),
            "runtime_node_presence": (
                "SELECT t::text FROM control_plane.runtime_node_presence t"
                " WHERE node_id = ANY(%(n)s::text[])"
            ),
        }
        parts = []
        for table, query in queries.items():
            rows = sorted(r[0] for r in db.execute(query, {"s": s, "p": p, "n": n}).fetchall())
            parts.append(f"{table}:{hashlib.md5(chr(10).join(rows).encode()).hexdigest()}")
        return ";".join(parts)

    return take


# --- the real server --------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# The server derives both logins from DATABASE_URL and gets its admin token from the test.
_NOT_INHERITED = (
    "CONTROL_PLANE_ADMIN_TOKEN",
    "CONTROL_PLANE_API_DATABASE_URL",
    "CONTROL_PLANE_ADMIN_DATABASE_URL",
    "PROMETHEUS_MULTIPROC_DIR",
)


class ServerProcess:
    """`python -m control_plane.serve` as a child process, with its log captured to a file."""

    def __init__(
        self,
        database_url: str,
        admin_token: str | None,
        log_path: Path,
        extra_env: dict[str, str] | None = None,
        port: int | None = None,
    ) -> None:
        self.port = port or free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        env = {k: v for k, v in os.environ.items() if k not in _NOT_INHERITED}
        env.update(
            DATABASE_URL=database_url,
            HOST="127.0.0.1",
            PORT=str(self.port),
            WEB_CONCURRENCY="1",
            PYTHONUNBUFFERED="1",
        )
        if admin_token is not None:
            env["CONTROL_PLANE_ADMIN_TOKEN"] = admin_token
        env.update(extra_env or {})
        self._log = open(log_path, "wb")  # noqa: SIM115 - lives as long as the process
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "control_plane.serve"],
            cwd=REPO_ROOT,
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_ready(self) -> None:
        deadline = time.monotonic() + SERVER_START_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}:\n{self.log()}")
            try:
                if httpx.get(f"{self.base_url}/healthz", timeout=1.0).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(
            f"server did not answer /healthz in {SERVER_START_TIMEOUT}s:\n{self.log()}"
        )

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()


def start_server(
    database_url: str,
    admin_token: str | None,
    tmp_dir: Path,
    name: str,
    extra_env: dict[str, str] | None = None,
    port: int | None = None,
) -> ServerProcess:
    """A started server; `port` reuses a port (a restart at the same address)."""
    server = ServerProcess(database_url, admin_token, tmp_dir / f"{name}.log", extra_env, port)
    server.wait_ready()
    return server


@pytest.fixture(scope="session")
def admin_token() -> str:
    return "adm_" + secrets.token_urlsafe(32)


@pytest.fixture(scope="session")
def server(
    database_url: str,
    migrated: None,
    admin_token: str,
    tmp_path_factory: pytest.TempPathFactory,
    request: pytest.FixtureRequest,
) -> Iterator[str]:
    """Base URL of the real app, started once per test session."""
    proc = start_server(database_url, admin_token, tmp_path_factory.mktemp("server"), "server")
    failed_before = request.session.testsfailed
    try:
        yield proc.base_url
    finally:
        proc.stop()
        if request.session.testsfailed > failed_before:
            # The server's own log is the first thing to read when an HTTP test fails.
            sys.stderr.write(f"\n----- server log ({proc.log_path}) -----\n{proc.log()}\n")


@pytest.fixture(scope="session")
def client(server: str) -> Iterator[httpx.Client]:
    """No credentials."""
    with httpx.Client(base_url=server, timeout=30.0) as c:
        yield c


@pytest.fixture(scope="session")
def admin(server: str, admin_token: str) -> Iterator[httpx.Client]:
    """Admin bearer on every request."""
    with httpx.Client(
        base_url=server, timeout=30.0, headers={"Authorization": f"Bearer {admin_token}"}
    ) as c:
        yield c


@pytest.fixture
def spawn_server(
    database_url: str, migrated: None, tmp_path: Path
) -> Iterator[Callable[[str | None], str]]:
    """`spawn_server(admin_token)` → base URL of one more real server (e.g. one without an admin
    token); stopped at the end of the test."""
    started: list[ServerProcess] = []

    def spawn(admin_token: str | None) -> str:
        proc = start_server(database_url, admin_token, tmp_path, f"extra-{len(started)}")
        started.append(proc)
        return proc.base_url

    yield spawn
    for proc in started:
        proc.stop()


PROBLEM_FIELDS = {"type", "title", "status", "detail", "code"}


def assert_problem(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    """An RFC 9457 problem with exactly the documented members, this status and this code."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json"), response.headers
    body = response.json()
    assert set(body) == PROBLEM_FIELDS, body
    assert body["status"] == status and body["code"] == code, body
    assert isinstance(body["detail"], str) and body["detail"], body
    return body


@pytest.fixture
def problem() -> Callable[[httpx.Response, int, str], dict[str, Any]]:
    """`problem(response, status, code)` asserts a problem response and returns its body."""
    return assert_problem


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def random_node_id(prefix: str = "node") -> str:
    return f"{prefix}-{secrets.token_hex(8)}"


# --- factories (through the admin HTTP API) ----------------------------------------------------


def _created(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    return response.json()


@pytest.fixture
def make_participant(admin: httpx.Client) -> Callable[..., tuple[str, str]]:
    """`make_participant(display_name=None, expires_in_seconds=None)` → (participant_id, token)."""

    def make(
        display_name: str | None = None, expires_in_seconds: int | None = None
    ) -> tuple[str, str]:
        body = {"displayName": display_name} if display_name else {}
        pid = _created(admin.post("/v1/admin/participants", json=body), 201)["participantId"]
        token_body = {"expiresInSeconds": expires_in_seconds} if expires_in_seconds else {}
        token = _created(admin.post(f"/v1/admin/participants/{pid}/tokens", json=token_body), 201)[
            "token"
        ]
        return pid, token

    return make


@pytest.fixture
def make_session(admin: httpx.Client) -> Callable[..., str]:
    """`make_session(floor=None, state="active")` → session_id."""

    def make(floor: str | None = None, state: str = "active") -> str:
        body: dict[str, Any] = {"state": state}
        if floor is not None:
            body["minClientVersion"] = floor
        return _created(admin.post("/v1/admin/sessions", json=body), 201)["sessionId"]

    return make


@pytest.fixture
def add_member(admin: httpx.Client) -> Callable[..., dict[str, Any]]:
    """`add_member(session_id, participant_id, role="collaborator", state="active")` → body."""

    def add(
        session_id: str, participant_id: str, role: str = "collaborator", state: str = "active"
    ) -> dict[str, Any]:
        return _created(
            admin.put(
                f"/v1/admin/sessions/{session_id}/members/{participant_id}",
                json={"role": role, "state": state},
            ),
            200,
        )

    return add


@dataclass(frozen=True)
class Member:
    """A participant with a token and a membership of a session."""

    participant_id: str
    token: str
    session_id: str

    @property
    def auth(self) -> dict[str, str]:
        return bearer(self.token)


def attach_node(
    client: httpx.Client,
    member: Member,
    node_id: str | None = None,
    capabilities: dict[str, Any] | None = None,
) -> str:
    """Attach a node (a new id unless given) for `member` in its session, version 1.0, online;
    asserts the 200 and returns the node id."""
    node_id = node_id or random_node_id()
    r = client.post(
        f"/v1/sessions/{member.session_id}/runtime-nodes",
        json={
            "participantId": member.participant_id,
            "nodeId": node_id,
            "clientVersion": "1.0",
            "capabilities": capabilities or {},
            "healthState": "online",
        },
        headers=member.auth,
    )
    assert r.status_code == 200, r.text
    return node_id


@pytest.fixture
def make_member(
    make_participant: Callable[..., tuple[str, str]],
    make_session: Callable[..., str],
    add_member: Callable[..., dict[str, Any]],
) -> Callable[..., Member]:
    """`make_member(session_id=None, role="owner", state="active", floor=None)` → Member; a new
    session (with that floor) unless one is given."""

    def make(
        session_id: str | None = None,
        role: str = "owner",
        state: str = "active",
        floor: str | None = None,
    ) -> Member:
        sid = session_id or make_session(floor=floor)
        pid, token = make_participant()
        add_member(sid, pid, role=role, state=state)
        return Member(pid, token, sid)

    return make
