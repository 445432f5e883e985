"""Operations endpoints over real HTTP: /healthz, /readyz, /metrics (contract §6.9).

The database is shared with other tests and with the live pg_cron sweep. Rows other tests left
behind may hold the outage guard (stall mode: nobody beats), which /readyz rightly reports; the
tests that need "ready" keep a witness node beating, which is how that guard is released.
"""

from __future__ import annotations

import re
import secrets
import time
from collections.abc import Iterator

import httpx
import psycopg
import pytest

from tests.conftest import start_server

POLL_SECONDS = 0.2
# The sweep runs every 5 s once pg_cron's loop is going; the loop starts at a full minute.
READY_TIMEOUT_SECONDS = 90.0
SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{.*\})? (\S+)$")


def samples(text: str) -> dict[str, float]:
    """`name{labels}` → value for every sample line of a Prometheus text exposition."""
    out: dict[str, float] = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        match = SAMPLE.match(line)
        assert match, f"not a Prometheus sample line: {line!r}"
        out[match.group(1) + (match.group(2) or "")] = float(match.group(3))
    return out


def scrape(client: httpx.Client) -> dict[str, float]:
    response = client.get("/metrics")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    return samples(response.text)


@pytest.fixture
def witness(db: psycopg.Connection) -> Iterator[str]:
    """A presence row that beats whenever `beat_witness` is called; deleted afterwards."""
    node = f"ops-witness-{secrets.token_hex(6)}"
    db.execute(
        "INSERT INTO control_plane.runtime_node_presence VALUES (%s, now(), 'online')", [node]
    )
    yield node
    db.execute("DELETE FROM control_plane.runtime_node_presence WHERE node_id = %s", [node])


def beat_witness(db: psycopg.Connection, node: str) -> None:
    db.execute(
        "UPDATE control_plane.runtime_node_presence"
        " SET last_heartbeat_at = now(), health_state = 'online' WHERE node_id = %s",
        [node],
    )


def wait_ready(
    client: httpx.Client, db: psycopg.Connection, node: str, *, swept: bool = False
) -> httpx.Response:
    """/readyz once it answers 200 (and, with `swept`, once the sweep has run at least once:
    during the app's first 75 s "ready" does not wait for pg_cron's first sweep, which may be up
    to a minute away — a test that runs first in a random order would find none yet)."""
    deadline = time.monotonic() + READY_TIMEOUT_SECONDS
    while True:
        beat_witness(db, node)
        response = client.get("/readyz")
        if response.status_code == 200 and (
            not swept or (response.json().get("sweep") or {}).get("totalRuns", 0) >= 1
        ):
            return response
        if time.monotonic() > deadline:
            return response
        time.sleep(POLL_SECONDS)


def test_healthz(client: httpx.Client) -> None:
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_readyz_ready_reports_the_sweep(
    client: httpx.Client, db: psycopg.Connection, witness: str
) -> None:
    response = wait_ready(client, db, witness, swept=True)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "ready"
    assert body["reasons"] == []
    sweep = body["sweep"]
    assert sweep["mode"] in ("normal", "gap_grace")
    assert sweep["intervalSeconds"] == 5
    assert sweep["totalRuns"] >= 1
    assert response.headers["cache-control"] == "no-store"


def test_readyz_is_503_while_the_outage_guard_holds(
    client: httpx.Client, db: psycopg.Connection, witness: str
) -> None:
    """stall_hold is written the way the sweep writes it. The live sweep may overwrite it at
    any moment (it recomputes the mode every 5 s), so an attempt that a sweep interleaved with
    (total_runs moved) is retried; one that no sweep touched must show the 503."""
    assert wait_ready(client, db, witness).status_code == 200
    for _ in range(10):
        runs = db.execute(
            "UPDATE control_plane.sweep_state SET mode = 'stall_hold', stall_since = now()"
            " RETURNING total_runs"
        ).fetchone()[0]
        response = client.get("/readyz")
        interfered = db.execute("SELECT total_runs FROM control_plane.sweep_state").fetchone()[0]
        if interfered == runs:
            break
    else:
        pytest.fail("the live sweep interleaved with every attempt")
    # Let the next sweep recompute the mode (the witness is fresh: it leaves stall_hold).
    beat_witness(db, witness)
    assert response.status_code == 503, response.text
    body = response.json()
    assert body["status"] == "not ready"
    assert any("outage guard" in reason for reason in body["reasons"]), body
    assert body["sweep"]["mode"] == "stall_hold"
    assert wait_ready(client, db, witness).status_code == 200, "the guard was not released"


def test_metrics_request_counts_by_route_template(client: httpx.Client) -> None:
    before = scrape(client)
    node = f"ops-metrics-{secrets.token_hex(6)}"
    for _ in range(3):
        assert client.get("/healthz").status_code == 200
    unauthenticated = client.post(f"/v1/runtime-nodes/{node}/heartbeat", json={})
    assert unauthenticated.status_code == 401
    response = client.get("/metrics")
    after = samples(response.text)

    healthz = 'control_plane_http_requests_total{method="GET",route="/healthz",status="200"}'
    assert after[healthz] - before.get(healthz, 0) >= 3
    heartbeat_401 = next(
        key
        for key in after
        if key.startswith("control_plane_http_requests_total{")
        and 'method="POST"' in key
        and 'status="401"' in key
        and "/heartbeat" in key
    )
    assert 'route="/v1/runtime-nodes/{node' in heartbeat_401, "labels use the route template"
    assert node not in response.text, "a raw path (node id) leaked into a label"
    latency = healthz.replace("_requests_total{", "_request_duration_seconds_count{")
    assert after[latency] == after[healthz], "one latency observation per request"


def test_metrics_count_heartbeat_batches(client: httpx.Client) -> None:
    """The coalescer's round trips and the beats they carried (beats per round trip)."""
    before = scrape(client)
    token = f"cpt_{secrets.token_urlsafe(32)}"  # unknown: the batch refuses it (CP401)
    for _ in range(3):
        response = client.post(
            f"/v1/runtime-nodes/ops-{secrets.token_hex(4)}/heartbeat",
            json={"healthState": "online"},
            headers={"Authorization": f"Bearer {token}"},
        )
        assert response.status_code == 401, response.text
    after = scrape(client)
    batches = "control_plane_heartbeat_batches_total"
    beats = "control_plane_heartbeat_batch_beats_total"
    assert after[batches] - before.get(batches, 0) >= 1
    assert after[beats] - before.get(beats, 0) >= 3
    assert after[beats] >= after[batches]


def test_metrics_database_gauges(
    client: httpx.Client, db: psycopg.Connection, witness: str
) -> None:
    # The last-sweep gauges exist once pg_cron has swept: a test that runs first in a random
    # order waits for that (up to a minute on pg_cron 1.4), then for the 2 s gauge cache.
    assert wait_ready(client, db, witness, swept=True).status_code == 200
    deadline = time.monotonic() + 5
    first = scrape(client)
    while "control_plane_sweep_last_duration_seconds" not in first and time.monotonic() < deadline:
        time.sleep(POLL_SECONDS)
        first = scrape(client)
    assert first["control_plane_database_up"] == 1
    for state in ("registering", "online", "degraded", "offline", "revoked"):
        assert f'control_plane_runtime_node_attachments{{state="{state}"}}' in first
    for health in ("online", "degraded", "offline"):
        assert f'control_plane_runtime_node_presence{{health="{health}"}}' in first
    modes = {
        mode: first[f'control_plane_sweep_mode{{mode="{mode}"}}']
        for mode in ("normal", "gap_grace", "stall_hold")
    }
    assert sorted(modes.values()) == [0, 0, 1], modes
    for name in (
        "control_plane_sweep_runs_total",
        "control_plane_sweep_transitions_total",
        "control_plane_sweep_last_transitions",
        "control_plane_sweep_last_duration_seconds",
        "control_plane_sweep_age_seconds",
        "control_plane_sweep_interval_seconds",
    ):
        assert name in first, name

    # The gauges follow the database (after the ~2 s cache): three new offline rows, which
    # the sweep never touches.
    nodes = [f"ops-gauge-{secrets.token_hex(6)}" for _ in range(3)]
    offline = 'control_plane_runtime_node_presence{health="offline"}'
    try:
        db.execute(
            "INSERT INTO control_plane.runtime_node_presence"
            " SELECT n, now(), 'offline' FROM unnest(%s::text[]) n",
            [nodes],
        )
        expected = db.execute(
            "SELECT count(*) FROM control_plane.runtime_node_presence"
            " WHERE health_state = 'offline'"
        ).fetchone()[0]
        deadline = time.monotonic() + 30
        seen = first[offline]
        while seen < expected and time.monotonic() < deadline:
            time.sleep(POLL_SECONDS)
            seen = scrape(client)[offline]
        assert seen >= expected
    finally:
        db.execute(
            "DELETE FROM control_plane.runtime_node_presence WHERE node_id = ANY(%s)", [nodes]
        )


# --- several workers ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def two_workers(
    database_url: str, migrated: None, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """The app under WEB_CONCURRENCY=2, as deployed by default."""
    server = start_server(
        database_url,
        None,
        tmp_path_factory.mktemp("two-workers"),
        "server",
        {"WEB_CONCURRENCY": "2"},
    )
    try:
        yield server.base_url
    finally:
        server.stop()


def test_metrics_add_up_across_workers(two_workers: str) -> None:
    """Whichever worker answers the scrape, it reports every worker's requests. A request is
    counted before its response's last byte leaves (the fixture's own /healthz probes too), so
    the baseline is exact however soon it follows them."""
    requests = 40
    key = 'control_plane_http_requests_total{method="GET",route="/healthz",status="200"}'
    baseline = samples(httpx.get(f"{two_workers}/metrics", timeout=5).text).get(key, 0)
    # Fresh connections, so the kernel spreads them over both workers.
    for _ in range(requests):
        assert httpx.get(f"{two_workers}/healthz", timeout=5).status_code == 200
    for _ in range(6):
        text = httpx.get(f"{two_workers}/metrics", timeout=5).text
        assert samples(text)[key] == baseline + requests


def test_a_request_is_counted_once_its_client_has_the_response(two_workers: str) -> None:
    """Read-your-requests: a scrape that follows a response counts it, whichever worker served
    either (was a race: the counter was incremented after the response had been sent, so a
    scrape on the other worker could come first). Fresh connections spread over both workers."""
    key = 'control_plane_http_requests_total{method="GET",route="/healthz",status="200"}'
    for _ in range(50):
        before = samples(httpx.get(f"{two_workers}/metrics", timeout=5).text).get(key, 0)
        assert httpx.get(f"{two_workers}/healthz", timeout=5).status_code == 200
        assert samples(httpx.get(f"{two_workers}/metrics", timeout=5).text)[key] == before + 1
