"""Configuration through the real `python -m control_plane.serve`: a malformed environment value
stops the process with one line naming the variable — never a traceback, never a server."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _serve(database_url: str, **overrides: str) -> subprocess.CompletedProcess[str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("CONTROL_PLANE_API_DATABASE_URL", "PROMETHEUS_MULTIPROC_DIR")
    }
    env.update(
        DATABASE_URL=database_url, HOST="127.0.0.1", PORT=str(free_port()), WEB_CONCURRENCY="1"
    )
    env.update(overrides)
    return subprocess.run(
        [sys.executable, "-m", "control_plane.serve"],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("PORT", "abc"),
        ("PORT", "70000"),
        ("WEB_CONCURRENCY", "0"),
        ("WEB_CONCURRENCY", "two"),
        ("DB_POOL_SIZE", "-1"),
        ("HEARTBEAT_MAX_BATCH", "1.5"),
        ("HEARTBEAT_MAX_IN_FLIGHT", "0"),
    ],
)
def test_a_malformed_value_is_one_line_naming_the_variable(
    database_url: str, variable: str, value: str
) -> None:
    proc = _serve(database_url, **{variable: value})
    assert proc.returncode != 0
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith(f"{variable} must be an integer"), lines
    assert repr(value) in lines[0], lines
    assert "Traceback" not in proc.stderr + proc.stdout


def test_a_missing_database_url_is_one_line(database_url: str) -> None:
    proc = _serve(database_url, DATABASE_URL="")
    assert proc.returncode != 0
    assert proc.stderr.strip().splitlines() == [proc.stderr.strip()], proc.stderr
    assert proc.stderr.startswith("DATABASE_URL is not set")


def test_a_libpq_parameter_the_driver_cannot_honour_is_one_line(database_url: str) -> None:
    """Dropping it silently could weaken a security setting (channel_binding=require...)."""
    sep = "&" if "?" in database_url else "?"
    proc = _serve(database_url, DATABASE_URL=f"{database_url}{sep}keepalives=1")
    assert proc.returncode != 0
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("DATABASE_URL:"), proc.stderr
    assert "keepalives" in lines[0] and "Traceback" not in proc.stderr
