"""`make run` as a new user meets it: a busy port is named (with how to pick another) before any
database work; a free one serves, printing its URL, and logs start-up, requests (ACCESS_LOG) and
shutdown at the default LOG_LEVEL."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import httpx

from tests.conftest import REPO_ROOT, free_port

START_TIMEOUT = 120.0  # make run migrates first


def make_run_env(**extra: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("CONTROL_PLANE_API_DATABASE_URL", "LOG_LEVEL", "ACCESS_LOG", "MAKEFLAGS")
    }
    env.update(HOST="127.0.0.1", WEB_CONCURRENCY="1", PYTHONUNBUFFERED="1")
    env.update(extra)
    return env


def test_busy_port_is_reported_before_the_database_is_touched(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        # A database URL nothing answers at: touching it would fail differently (and slowly).
        env = make_run_env(
            PORT=str(port),
            DATABASE_URL=f"postgresql://nobody@/nowhere?host={tmp_path}&port=1",
            CONTROL_PLANE_ADMIN_TOKEN="unused",
        )
        proc = subprocess.run(
            ["make", "--no-print-directory", "run"],
            cwd=REPO_ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert proc.returncode != 0
    assert f"port {port} on 127.0.0.1 is already in use" in proc.stderr
    assert f"PORT={port + 1} make run" in proc.stderr
    assert "env:" not in proc.stderr and "migrate" not in proc.stderr  # stopped before both


def test_a_bad_log_level_is_reported_before_the_database_is_touched(tmp_path: Path) -> None:
    env = make_run_env(
        PORT=str(free_port()),
        LOG_LEVEL="loud",
        DATABASE_URL=f"postgresql://nobody@/nowhere?host={tmp_path}&port=1",
    )
    proc = subprocess.run(
        ["make", "--no-print-directory", "run"],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode != 0
    assert "LOG_LEVEL must be one of debug, info, warning, error, not 'loud'" in proc.stderr
    assert "env:" not in proc.stderr


def test_make_run_prints_its_url_and_logs_start_access_and_shutdown(
    database_url: str, migrated: None, tmp_path: Path
) -> None:
    port = free_port()
    log_path = tmp_path / "make-run.log"
    env = make_run_env(
        PORT=str(port),
        DATABASE_URL=database_url,
        CONTROL_PLANE_ADMIN_TOKEN="adm_" + os.urandom(8).hex(),
        ACCESS_LOG="on",
    )
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            ["make", "--no-print-directory", "run"],
            cwd=REPO_ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            deadline = time.monotonic() + START_TIMEOUT
            while True:
                assert proc.poll() is None, log_path.read_text()
                try:
                    if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                assert time.monotonic() < deadline, log_path.read_text()
                time.sleep(0.2)
        finally:
            os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C in the terminal sends
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
    out = log_path.read_text()
    assert f"control-plane: serving http://127.0.0.1:{port} " in out
    assert "LOG_LEVEL=info" in out
    assert "Application startup complete" in out
    assert '"GET /healthz HTTP/1.1" 200' in out  # ACCESS_LOG=on
    assert "Shutting down" in out
    assert "Application shutdown complete" in out
