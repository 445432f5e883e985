"""Every libpq parameter of the operator's database URL reaches the app's connections; only the
login is swapped for the API role (contract §13).

- `login_dsn` keeps hosts, ports, database and every parameter, as libpq itself reads them;
- the libpq parameters asyncpg does not know are handled: `options` reaches the server,
  `connect_timeout` becomes the connect timeout, `application_name` and
  `fallback_application_name` name the connection;
- a multi-host URL whose first host refuses, with `target_session_attrs=read-write`, serves
  requests through the real app, logged in as the API role.
"""

from __future__ import annotations

import asyncio
import secrets
import socket
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import asyncpg
import httpx
import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict

from control_plane.database import (
    API_ROLE,
    ConnectionConfigError,
    asyncpg_connect_args,
    login_dsn,
)
from tests.conftest import attach_node, start_server


def _refusing_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


URLS = [
    "postgresql://su:secret@h1:5432,h2:5433/app?sslmode=verify-full&sslrootcert=/etc/ca.crt"
    "&sslcert=/etc/c.crt&sslkey=/etc/c.key&options=-c%20work_mem%3D3MB"
    "&target_session_attrs=read-write&connect_timeout=4&application_name=cp&user=other",
    "postgres://h/db",
    "postgresql:///db?host=/run/postgresql,10.0.0.2&port=5432,6432&password=x",
    "host=h1,h2 port=5432,5433 dbname=app user=su sslmode=require connect_timeout=3",
]


@pytest.mark.parametrize("url", URLS)
def test_login_dsn_swaps_only_the_login(url: str) -> None:
    """What libpq reads from the result equals what it reads from the input, but the login."""
    swapped = login_dsn(url, "api user", "p@ss:w/rd")
    before = {k: v for k, v in conninfo_to_dict(url).items() if k not in ("user", "password")}
    after = conninfo_to_dict(swapped)
    assert after.pop("user") == "api user"
    assert after.pop("password") == "p@ss:w/rd"
    assert after == before
    assert "password" not in conninfo_to_dict(login_dsn(url, "api", None))


def test_login_dsn_keeps_a_url_byte_for_byte_but_the_login() -> None:
    assert (
        login_dsn(URLS[0], "control_plane_api", None)
        == "postgresql://control_plane_api@h1:5432,h2:5433/app?sslmode=verify-full"
        "&sslrootcert=/etc/ca.crt&sslcert=/etc/c.crt&sslkey=/etc/c.key"
        "&options=-c%20work_mem%3D3MB&target_session_attrs=read-write&connect_timeout=4"
        "&application_name=cp"
    )


def test_connect_args_translate_what_asyncpg_does_not_know() -> None:
    args = asyncpg_connect_args(login_dsn(URLS[0], "api", None))
    assert args["timeout"] == 4.0
    assert "connect_timeout" not in args["dsn"]
    assert "server_settings" not in args  # application_name stays in the URL: asyncpg sends it
    args = asyncpg_connect_args("postgres://h/db?fallback_application_name=fb")
    assert args["server_settings"] == {"application_name": "fb"}
    assert "fallback_application_name" not in args["dsn"]
    for param in ("keepalives=1", "channel_binding=require", "gssencmode=require"):
        with pytest.raises(ConnectionConfigError, match=param.split("=")[0]):
            asyncpg_connect_args(f"postgres://h/db?{param}")


def _with_params(url: str, params: str) -> str:
    return url + ("&" if "?" in url else "?") + params


def test_the_api_login_honours_options_timeout_and_application_name(database_url: str) -> None:
    """Against the real server, logged in as the API role (what the app's pool does)."""
    name = f"dsn-test-{secrets.token_hex(4)}"
    url = _with_params(
        database_url,
        f"options=-c%20work_mem%3D3MB&connect_timeout=5&fallback_application_name={name}",
    )

    async def probe() -> tuple[str, str, str]:
        conn = await asyncpg.connect(**asyncpg_connect_args(login_dsn(url, API_ROLE, None)))
        try:
            return (
                await conn.fetchval("SELECT current_user"),
                await conn.fetchval("SHOW work_mem"),
                await conn.fetchval("SHOW application_name"),
            )
        finally:
            await conn.close()

    assert asyncio.run(probe()) == (API_ROLE, "3MB", name)


# --- several hosts, through the real app -------------------------------------------------------


def _multi_host_url(database_url: str, application_name: str, form: str) -> str:
    """The test database's URL with a refusing loopback host first, as a URL (hosts and ports
    as lists in the query: the test cluster listens on a socket only) or a key=value conninfo."""
    params = {k: str(v) for k, v in conninfo_to_dict(database_url).items() if v is not None}
    host, port = params.pop("host", "localhost"), params.pop("port", "5432")
    params.update(
        host=f"127.0.0.1,{host}",
        port=f"{_refusing_port()},{port}",
        target_session_attrs="read-write",
        application_name=application_name,
        connect_timeout="5",
    )
    if form == "conninfo":
        return psycopg.conninfo.make_conninfo(**params)
    user, dbname = params.pop("user", ""), params.pop("dbname", "")
    query = "&".join(f"{k}={quote(v, safe='/,')}" for k, v in params.items())
    return f"postgresql://{quote(user)}@/{quote(dbname)}?{query}"


@pytest.fixture(params=["url", "conninfo"])
def multi_host_server(
    database_url: str, migrated: None, tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[str]:
    name = f"multi-host-{secrets.token_hex(4)}"
    server = start_server(
        _multi_host_url(database_url, name, request.param), None, tmp_path, "multi-host"
    )
    try:
        yield f"{server.base_url}#{name}"
    finally:
        server.stop()


def test_a_multi_host_url_serves_through_the_reachable_host(
    multi_host_server: str, db: psycopg.Connection, make_member: Callable[..., Any]
) -> None:
    base, name = multi_host_server.split("#")
    member = make_member(role="owner")
    node = f"multi-host-{secrets.token_hex(6)}"
    with httpx.Client(base_url=base, timeout=30, headers=member.auth) as c:
        attach_node(c, member, node)
        beat = c.post(f"/v1/runtime-nodes/{node}/heartbeat", json={"healthState": "online"})
        assert beat.status_code == 204, beat.text
    # The app's connections carry the URL's application_name and log in as the API role.
    users = {
        r[0]
        for r in db.execute(
            "SELECT usename FROM pg_stat_activity WHERE application_name = %s", (name,)
        ).fetchall()
    }
    assert users == {API_ROLE}
