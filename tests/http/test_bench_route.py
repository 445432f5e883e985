"""The bench-only hello-post route (docs/performance.md): absent by default, and with
CONTROL_PLANE_BENCH_ROUTES=1 a heartbeat's request checks without the database."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from tests.conftest import start_server

Problem = Callable[[httpx.Response, int, str], dict[str, Any]]
BODY = {"healthState": "online"}


def test_not_in_the_product_route_table(client: httpx.Client, problem: Problem) -> None:
    r = client.post("/bench/hello-post/n1", json=BODY, headers={"Authorization": "Bearer x"})
    problem(r, 404, "not_found")
    assert "/bench/hello-post" not in client.get("/schema/openapi.json").text


def test_with_the_setting_it_does_a_heartbeats_checks_without_the_database(
    database_url: str, migrated: None, tmp_path: Path, problem: Problem
) -> None:
    server = start_server(
        database_url, None, tmp_path, "bench-routes", {"CONTROL_PLANE_BENCH_ROUTES": "1"}
    )
    try:
        with httpx.Client(base_url=server.base_url, timeout=10) as c:
            auth = {"Authorization": "Bearer anything"}
            assert c.post("/bench/hello-post/n1", json=BODY, headers=auth).status_code == 204
            problem(c.post("/bench/hello-post/n1", json=BODY), 401, "auth.unauthenticated")
            r = c.post("/bench/hello-post/n1", json={"healthState": "offline"}, headers=auth)
            problem(r, 400, "request.invalid")
            r = c.post("/bench/hello-post/n1", json={**BODY, "x": 1}, headers=auth)
            problem(r, 400, "request.invalid")
            r = c.post("/bench/hello-post/%01", json=BODY, headers=auth)
            problem(r, 400, "request.invalid")
    finally:
        server.stop()
