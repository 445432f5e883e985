"""What every drill stands on: the PostgreSQL cluster (stop/start it), the real server process,
superuser SQL for setup and assertions, timing settings, and the one-line verdict.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psycopg
from psycopg.rows import dict_row

REPO_ROOT = Path(__file__).resolve().parent.parent


def log(message: str) -> None:
    """Progress and diagnostics go to stderr; stdout carries only the verdict lines."""
    print(f"[drills {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# --- verdicts ---------------------------------------------------------------------------------


@dataclass
class Verdict:
    """The outcome of one drill: figures (printed on the verdict line) and failed checks."""

    name: str
    figures: dict[str, Any] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)

    def check(self, ok: bool, failure: str) -> bool:
        if not ok:
            self.failures.append(failure)
        return ok

    @property
    def passed(self) -> bool:
        return not self.failures

    def line(self) -> str:
        figures = " ".join(f"{k}={_fmt(v)}" for k, v in self.figures.items())
        return f"drill {self.name}: {'pass' if self.passed else 'fail'} {figures}".rstrip()


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 100 else f"{value:.0f}"
    return str(value)


# --- the database -----------------------------------------------------------------------------


def connect(url: str) -> psycopg.Connection[dict[str, Any]]:
    """Superuser autocommit connection for setup and assertions (never the app's role)."""
    return psycopg.connect(url, autocommit=True, row_factory=dict_row, connect_timeout=5)


def wait_database(url: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with connect(url) as conn:
                conn.execute("SELECT 1")
                return
        except psycopg.OperationalError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


@dataclass
class Cluster:
    """The PostgreSQL cluster behind DATABASE_URL, when it runs on this machine: the drills stop
    and start it with its own pg_ctl, as the OS user that owns the data directory."""

    url: str
    data_dir: Path
    bin_dir: Path
    os_user: str | None
    log_path: Path
    frozen: list[int] = field(default_factory=list)  # pids a freeze drill stopped

    @classmethod
    def discover(cls, url: str) -> Cluster:
        with connect(url) as conn:
            row = conn.execute(
                "SELECT current_setting('data_directory') AS data,"
                " current_setting('server_version_num')::int / 10000 AS major"
            ).fetchone()
        assert row is not None
        data_dir = Path(row["data"])
        if not (data_dir / "PG_VERSION").exists():
            raise RuntimeError(
                f"the server's data directory {data_dir} is not on this machine: the restart "
                "drills need a local cluster (unset DATABASE_URL to use the private one)"
            )
        bin_dir = Path(os.environ.get("PG_BINDIR") or f"/usr/lib/postgresql/{row['major']}/bin")
        owner = pwd.getpwuid(data_dir.stat().st_uid).pw_name
        os_user = owner if os.geteuid() == 0 and owner != "root" else None
        return cls(url, data_dir, bin_dir, os_user, _server_log(data_dir))

    def pg_ctl(self, *args: str, timeout: float = 120.0) -> subprocess.CompletedProcess[str]:
        cmd = [str(self.bin_dir / "pg_ctl"), "-D", str(self.data_dir), *args]
        if self.os_user:
            cmd = ["runuser", "-u", self.os_user, "--", *cmd]
        # cwd=/: the postgres OS user may not be able to enter the repository.
        return subprocess.run(
            cmd, cwd="/", capture_output=True, text=True, timeout=timeout, check=False
        )

    def stop(self, mode: str) -> None:
        proc = self.pg_ctl("-m", mode, "-w", "-t", "60", "stop")
        if proc.returncode != 0:
            raise RuntimeError(f"pg_ctl stop -m {mode} failed: {proc.stderr or proc.stdout}")

    def start(self) -> None:
        proc = self.pg_ctl("-l", str(self.log_path), "-w", "-t", "120", "start")
        if proc.returncode != 0:
            raise RuntimeError(f"pg_ctl start failed: {proc.stderr or proc.stdout}")

    def freeze(self) -> None:
        """SIGSTOP the postmaster and every backend: a hung server (storage stall, network black
        hole) rather than a dead one."""
        pid = int((self.data_dir / "postmaster.pid").read_text().split()[0])
        self.frozen = [pid, *_descendants(pid)]
        for p in self.frozen:
            with contextlib.suppress(ProcessLookupError):
                os.kill(p, signal.SIGSTOP)

    def thaw(self) -> None:
        for p in reversed(self.frozen):  # backends first, the postmaster last
            with contextlib.suppress(ProcessLookupError):
                os.kill(p, signal.SIGCONT)
        self.frozen = []

    def recover(self) -> None:
        """Whatever a drill left behind (it failed or was interrupted mid-outage): running."""
        if self.frozen:
            self.thaw()
        if not self.running():
            log("PostgreSQL is not running: starting it")
            self.start()

    def running(self) -> bool:
        return self.pg_ctl("status").returncode == 0

    def ensure_running(self) -> None:
        self.recover()
        wait_database(self.url)

    def log_size(self) -> int:
        try:
            return self.log_path.stat().st_size
        except OSError:
            return 0

    def log_since(self, offset: int) -> str:
        try:
            with open(self.log_path, "rb") as fh:
                fh.seek(offset)
                return fh.read().decode(errors="replace")
        except OSError:
            return ""


def _server_log(data_dir: Path) -> Path:
    """Where the running postmaster writes its stderr (the file pg_ctl -l gave it), so that a
    restart keeps logging to the same file; DRILLS_PG_LOG overrides."""
    if os.environ.get("DRILLS_PG_LOG"):
        return Path(os.environ["DRILLS_PG_LOG"])
    with contextlib.suppress(OSError, ValueError, IndexError):
        pid = int((data_dir / "postmaster.pid").read_text().split()[0])
        target = Path(os.readlink(f"/proc/{pid}/fd/2"))
        if target.is_file():
            return target
    return data_dir / "postgresql.log"


# --- timing settings --------------------------------------------------------------------------

SETTINGS_COLUMNS = (
    "heartbeat_interval",
    "degraded_after",
    "offline_after",
    "sweep_interval",
    "gap_grace",
    "stall_min_nodes",
)
# Short timings so that an outage longer than offline_after fits in a drill of a minute.
FAST_TIMINGS: dict[str, Any] = {
    "heartbeat_interval": "2 seconds",
    "degraded_after": "6 seconds",
    "offline_after": "12 seconds",
    "sweep_interval": "1 second",
    "gap_grace": "15 seconds",  # >= 3 x the 5 s interval a running sweep loop may still use
    "stall_min_nodes": 10,
}
# contract §7 defaults.
CONTRACT_TIMINGS: dict[str, Any] = {
    "heartbeat_interval": "15 seconds",
    "degraded_after": "30 seconds",
    "offline_after": "60 seconds",
    "sweep_interval": "5 seconds",
    "gap_grace": "15 seconds",
    "stall_min_nodes": 10,
}


def read_settings(url: str) -> dict[str, Any]:
    with connect(url) as conn:
        row = conn.execute(
            f"SELECT {', '.join(SETTINGS_COLUMNS)} FROM control_plane.settings"
        ).fetchone()
    assert row is not None
    return dict(row)


def write_settings(url: str, values: dict[str, Any]) -> None:
    # One UPDATE: the CHECKs (degraded < offline, gap_grace >= sweep, ...) see the final row.
    assignments = ", ".join(f"{k} = %({k})s" for k in values)
    with connect(url) as conn:
        conn.execute(f"UPDATE control_plane.settings SET {assignments}", values)


@contextlib.contextmanager
def timings(url: str, values: dict[str, Any]) -> Iterator[None]:
    """Run with these settings, then put the previous ones back (also on failure)."""
    previous = read_settings(url)
    write_settings(url, values)
    try:
        yield
    finally:
        try:
            write_settings(url, previous)
        except psycopg.Error as exc:  # the database may be the thing that broke
            log(f"could not restore settings {previous}: {exc}")


def sweep_state(conn: psycopg.Connection[dict[str, Any]]) -> dict[str, Any]:
    row = conn.execute(
        "SELECT mode, resumed_at, stall_since, last_finished_at, total_runs, total_transitions,"
        " now() AS db_now FROM control_plane.sweep_state"
    ).fetchone()
    assert row is not None
    return dict(row)


def deadlocks(conn: psycopg.Connection[dict[str, Any]]) -> int:
    row = conn.execute(
        "SELECT deadlocks FROM pg_stat_database WHERE datname = current_database()"
    ).fetchone()
    return int(row["deadlocks"]) if row else 0


# --- the server -------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    """`python -m control_plane.serve` as a child process on a loopback port."""

    def __init__(
        self,
        database_url: str,
        admin_token: str,
        log_dir: Path,
        port: int | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        self.extra_env = env or {}
        self.database_url = database_url
        self.admin_token = admin_token
        self.port = port or free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_dir / f"server-{self.port}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 30.0) -> None:
        env = {
            k: v
            for k, v in os.environ.items()
            if k not in ("CONTROL_PLANE_API_DATABASE_URL", "CONTROL_PLANE_ADMIN_DATABASE_URL")
        }
        env.update(
            DATABASE_URL=self.database_url,
            CONTROL_PLANE_ADMIN_TOKEN=self.admin_token,
            HOST="127.0.0.1",
            PORT=str(self.port),
            WEB_CONCURRENCY=os.environ.get("DRILLS_WEB_CONCURRENCY", "2"),
            PYTHONUNBUFFERED="1",
        )
        env.update(self.extra_env)
        with open(self.log_path, "ab") as log_file:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "control_plane.serve"],
                cwd=REPO_ROOT,
                env=env,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # a terminal's ^C reaches the drill, which stops us
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}: {self.log_tail()}")
            try:
                if httpx.get(f"{self.base_url}/healthz", timeout=1.0).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"server did not answer /healthz within {timeout}s: {self.log_tail()}")

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def terminate(self) -> None:
        """SIGTERM: the server stops accepting and drains in-flight requests."""
        if self.alive():
            assert self.proc is not None
            self.proc.send_signal(signal.SIGTERM)

    def wait(self, timeout: float) -> int | None:
        assert self.proc is not None
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None

    def stop(self, timeout: float = 20.0) -> int | None:
        if self.proc is None:
            return None
        if self.alive():
            self.terminate()
            if self.wait(timeout) is None:
                log(f"server {self.pid} did not stop within {timeout}s: killing it")
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode

    def processes(self) -> list[int]:
        """The server's process and its workers."""
        if not self.alive():
            return []
        return [self.pid, *_descendants(self.pid)]

    def rss_kib(self) -> int:
        """Resident memory of the server and its workers (VmRSS from /proc/<pid>/status)."""
        return sum(_rss_kib(pid) for pid in self.processes())

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""


def _descendants(pid: int) -> list[int]:
    found: list[int] = []
    for child in _children(pid):
        found.append(child)
        found.extend(_descendants(child))
    return found


def _children(pid: int) -> list[int]:
    children: list[int] = []
    with contextlib.suppress(OSError):
        for task in os.listdir(f"/proc/{pid}/task"):
            with contextlib.suppress(OSError):
                text = Path(f"/proc/{pid}/task/{task}/children").read_text()
                children.extend(int(c) for c in text.split())
    return children


_RSS = re.compile(r"^VmRSS:\s+(\d+)\s+kB", re.MULTILINE)


def _rss_kib(pid: int) -> int:
    with contextlib.suppress(OSError):
        match = _RSS.search(Path(f"/proc/{pid}/status").read_text())
        if match:
            return int(match.group(1))
    return 0


# --- the context every drill gets -------------------------------------------------------------


@dataclass
class Context:
    database_url: str
    cluster: Cluster | None
    admin_token: str
    work_dir: Path
    server: Server | None = None

    def ensure_server(self) -> Server:
        """The shared server (started on first use, restarted if a drill left it stopped)."""
        if self.server is None or not self.server.alive():
            port = self.server.port if self.server is not None else None
            self.server = Server(self.database_url, self.admin_token, self.work_dir, port)
            self.server.start()
        return self.server

    def close(self) -> None:
        if self.server is not None:
            self.server.stop()
