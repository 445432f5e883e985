"""examples/daemon.py, run as a daemon author would run it, against the real server."""

from __future__ import annotations

import asyncio
import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path

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


def wait_for(world: World, node: str, want: tuple[str, str], timeout: float) -> float:
    start = time.monotonic()
    while time.monotonic() - start < timeout:
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


def test_killed_example_daemon_is_swept_offline(world: World, fast_timings: None) -> None:
    """No detach (kill -9): the sweep takes its presence offline after offline_after (6 s) plus
    the wait for the next sweep: one interval (5 s), or up to two at a minute boundary on
    pg_cron 1.4, whose per-minute loop ends after its :55 sweep and the next minute's run starts
    when cron launches it (a bgworker start, seconds late on a loaded machine)."""
    node = f"example-{secrets.token_hex(4)}"
    daemon = start_daemon(world, node)
    try:
        wait_for(world, node, ("online", "online"), 15)
    finally:
        daemon.kill()
        daemon.communicate()
    took = wait_for(world, node, ("online", "offline"), 6 + 2 * 5 + 5)
    assert took >= 5, f"swept offline too early ({took:.1f}s): offline_after is 6 s"
