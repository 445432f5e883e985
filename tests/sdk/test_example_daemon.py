"""examples/daemon.py, run as a daemon author would run it, against the real server."""

from __future__ import annotations

import asyncio
import os
import secrets
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import psycopg
from runtime_node_client import ControlPlaneClient

from tests.sdk.conftest import World

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "daemon.py"


def start_daemon(world: World, node: str) -> subprocess.Popen[str]:
    env = {
        **os.environ,
        "CONTROL_PLANE_URL": world.base_url,
        "CONTROL_PLANE_TOKEN": world.token,
        "SESSION_ID": world.session_id,
        "PARTICIPANT_ID": world.participant_id,
        "NODE_ID": node,
    }
    return subprocess.Popen(
        [sys.executable, str(EXAMPLE)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def roster_row(world: World, node: str) -> tuple[str, str | None]:
    async def read() -> tuple[str, str | None]:
        async with ControlPlaneClient(world.base_url, world.token) as client:
            roster = await client.roster(world.session_id)
        row = next((n for n in roster.nodes if n.node_id == node), None)
        return (row.state, row.health_state) if row else ("absent", None)

    return asyncio.run(read())


def wait_for(
    world: World,
    node: str,
    want: tuple[str, str],
    timeout: float,
    tick: Callable[[], object] | None = None,
) -> float:
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if tick is not None:
            tick()
        if roster_row(world, node) == want:
            return time.monotonic() - start
        time.sleep(0.2)
    raise AssertionError(f"{node} not {want} within {timeout}s: {roster_row(world, node)}")


def test_example_daemon_stays_online_then_detaches_on_sigterm(
    world: World, fast_timings: None
) -> None:
    """Online for longer than offline_after (6 s here), then offline at once on SIGTERM."""
    node = f"example-{secrets.token_hex(4)}"
    daemon = start_daemon(world, node)
    try:
        wait_for(world, node, ("online", "online"), 15)
        deadline = time.monotonic() + 8  # > offline_after
        while time.monotonic() < deadline:
            assert roster_row(world, node) == ("online", "online")
            assert daemon.poll() is None
            time.sleep(0.5)
        daemon.send_signal(signal.SIGTERM)
        assert daemon.wait(timeout=15) == 0
        assert roster_row(world, node) == ("offline", "offline")  # detached on its way out
    finally:
        if daemon.poll() is None:
            daemon.kill()
        output = daemon.communicate()[0]
    assert "detaching" in output, output


@contextmanager
def fleet_beating(world: World) -> Iterator[None]:
    """Another node of the session beats every second meanwhile: the rest of a fleet is alive.
    Without it, whether the sweep demotes at all depends on the shared test database: if no node
    anywhere beats and other tests left enough nodes online, the ingestion-stall guard rightly
    holds every offline demotion (contract §7) and the killed daemon stays where it is."""
    node = f"example-peer-{secrets.token_hex(4)}"
    headers = {"Authorization": f"Bearer {world.token}"}
    stop = threading.Event()
    with httpx.Client(base_url=world.base_url, headers=headers, timeout=10) as client:
        r = client.post(
            f"/v1/sessions/{world.session_id}/runtime-nodes",
            json={"participantId": world.participant_id, "nodeId": node, "clientVersion": "1.0",
                  "capabilities": {}, "healthState": "online"},
        )  # fmt: skip
        assert r.status_code == 200, r.text

        def beat() -> None:
            while not stop.wait(1.0):
                client.post(f"/v1/runtime-nodes/{node}/heartbeat", json={"healthState": "online"})

        beater = threading.Thread(target=beat, daemon=True)
        beater.start()
        try:
            yield
        finally:
            stop.set()
            beater.join()
            client.post(f"/v1/runtime-nodes/{node}/detach")


def test_killed_example_daemon_is_swept_offline(
    world: World, fast_timings: None, db: psycopg.Connection
) -> None:
    """No detach (kill -9): the sweep takes its presence offline once offline_after (6 s) has
    passed since its last beat, not before. The test runs the sweep itself (every 0.2 s, from
    5 s after the kill) rather than waiting for pg_cron: on the shared test cluster pg_cron
    1.4's runs can pause for most of a minute (a background DROP DATABASE of another test waits
    for its launcher), which says nothing about the daemon or the sweep's rules. pg_cron may
    sweep too: both are serialized on sweep_state."""
    node = f"example-{secrets.token_hex(4)}"

    def sweep() -> None:
        db.execute("SELECT count(*) FROM control_plane.runtime_node_sweep(now())")

    with fleet_beating(world):
        daemon = start_daemon(world, node)
        try:
            # Swept while it beats too, so no gap guard grace (sweep_state) starts at the kill.
            wait_for(world, node, ("online", "online"), 15, tick=sweep)
        finally:
            daemon.kill()
            daemon.communicate()
        killed = time.monotonic()

        def sweep_after_5s() -> None:  # an early demotion by pg_cron would still be seen
            if time.monotonic() - killed >= 5:
                sweep()

        took = wait_for(world, node, ("online", "offline"), 6 + 5, tick=sweep_after_5s)
    assert took >= 5, f"swept offline too early ({took:.1f}s): offline_after is 6 s"
