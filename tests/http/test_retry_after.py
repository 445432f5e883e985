"""503 answers carry a jittered Retry-After (contract §10): uniform over [base, 2 × base] whole
seconds, so a fleet that failed together does not retry together. Through the real app, with its
database login pointing at a port nothing listens on."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import httpx
import pytest

from control_plane.problems import RETRY_AFTER_BASE_SECONDS
from tests.conftest import free_port, start_server


@pytest.fixture(scope="module")
def database_down(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The app with its API login pointed at a port nothing listens on: every call is a 503."""
    server = start_server(
        database_url,
        None,
        tmp_path_factory.mktemp("database-down"),
        "server",
        {
            "CONTROL_PLANE_API_DATABASE_URL": f"postgresql://control_plane_api@127.0.0.1:{free_port()}/x"
        },
    )
    try:
        yield server.base_url
    finally:
        server.stop()


def test_every_503_has_a_jittered_retry_after(database_down: str) -> None:
    auth = {"Authorization": "Bearer cpt_unknown"}
    values: list[int] = []
    with httpx.Client(base_url=database_down, timeout=30, headers=auth) as c:
        for i in range(20):
            for response in (
                c.post("/v1/runtime-nodes/n1/heartbeat", json={"healthState": "online"}),
                c.get(f"/v1/sessions/{uuid.uuid4()}/runtime-nodes"),
            ):
                assert response.status_code == 503, (i, response.text)
                assert response.json()["code"] == "service.unavailable"
                values.append(int(response.headers["retry-after"]))
    base = RETRY_AFTER_BASE_SECONDS
    assert all(base <= v <= 2 * base for v in values), values
    # 40 draws over 6 values: all equal has probability 6 × 6**-40.
    assert len(set(values)) > 1, values
