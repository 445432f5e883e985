"""503 answers carry a jittered Retry-After (contract §10): uniform over [base, 2 × base] whole
seconds, so a fleet that failed together does not retry together. Through the real app, with its
database login pointing at a port nothing listens on."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from control_plane.problems import RETRY_AFTER_BASE_SECONDS

REPO_ROOT = Path(__file__).resolve().parents[2]


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def database_down(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    port = _port()
    env = {k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"}
    env.update(
        DATABASE_URL=database_url,
        CONTROL_PLANE_API_DATABASE_URL=f"postgresql://control_plane_api@127.0.0.1:{_port()}/x",
        HOST="127.0.0.1",
        PORT=str(port),
        WEB_CONCURRENCY="1",
    )
    log = tmp_path_factory.mktemp("database-down") / "server.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "control_plane.serve"],
            cwd=REPO_ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            assert proc.poll() is None, log.read_text()
            try:
                if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


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
