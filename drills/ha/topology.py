"""The HA topology `scripts/ha/ha.sh up` started: its members, who is primary, and the blunt
instruments the drills use on it (kill -9, switchover, restart a member or an app instance)."""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import signal
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from drills.harness import REPO_ROOT, log

HA_SH = REPO_ROOT / "scripts" / "ha" / "ha.sh"
MEMBERS = ("m1", "m2", "m3")
APPS = ("a1", "a2")
REST_PORT = 18008


def member_address(member: str) -> str:
    return f"127.0.0.1{member[1:]}"


def rest_url(member: str, path: str) -> str:
    return f"http://{member_address(member)}:{REST_PORT}/{path.lstrip('/')}"


def _http(url: str, method: str = "GET", body: Any = None, timeout: float = 2.0) -> tuple[int, Any]:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method)
    if data is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            raw = resp.read()
            status = resp.status
    except urllib.error.HTTPError as exc:
        raw, status = exc.read(), exc.code
    except (OSError, urllib.error.URLError):
        return 0, None
    try:
        return status, json.loads(raw) if raw else None
    except ValueError:
        return status, raw.decode(errors="replace")


@dataclass
class Topology:
    env: dict[str, str]

    @classmethod
    def load(cls) -> Topology:
        out = subprocess.run(
            ["bash", str(HA_SH), "env"], capture_output=True, text=True, check=True
        ).stdout
        env: dict[str, str] = {}
        for line in out.splitlines():
            if line.startswith("export "):
                key, _, value = line[len("export ") :].partition("=")
                env[key] = shlex.split(value)[0] if value else ""
        return cls(env)

    @property
    def dir(self) -> Path:
        return Path(self.env["HA_DIR"])

    @property
    def database_url(self) -> str:
        """Superuser, multi-host, target_session_attrs=read-write: always the primary."""
        return self.env["HA_DATABASE_URL"]

    def member_url(self, member: str) -> str:
        """Superuser URL of one member, whatever its role."""
        password = (self.dir / "run" / "superuser.secret").read_text().strip()
        return (
            f"postgresql://postgres:{password}@{member_address(member)}:15432/control_plane"
            "?connect_timeout=3"
        )

    @property
    def app_urls(self) -> list[str]:
        return [self.env["HA_APP1_URL"], self.env["HA_APP2_URL"]]

    @property
    def lb_url(self) -> str:
        return self.env["HA_APP_URL"]

    @property
    def admin_token(self) -> str:
        return self.env["HA_ADMIN_TOKEN"]

    # --- roles ------------------------------------------------------------------------------

    def primary(self, among: tuple[str, ...] = MEMBERS) -> str | None:
        for m in among:
            if _http(rest_url(m, "primary"), timeout=1.0)[0] == 200:
                return m
        return None

    def cluster(self) -> list[dict[str, Any]]:
        for m in MEMBERS:
            status, body = _http(rest_url(m, "cluster"), timeout=1.0)
            if status == 200 and isinstance(body, dict):
                return list(body.get("members", []))
        return []

    def role(self, member: str) -> str | None:
        for row in self.cluster():
            if row.get("name") == member:
                return str(row.get("role"))
        return None

    def sync_standby(self) -> str | None:
        return next((m["name"] for m in self.cluster() if m.get("role") == "sync_standby"), None)

    def wait_primary(self, among: tuple[str, ...], timeout: float) -> tuple[str | None, float]:
        """The first member of `among` that Patroni reports primary, and when (monotonic)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            m = self.primary(among)
            if m is not None:
                return m, time.monotonic()
            time.sleep(0.1)
        return None, time.monotonic()

    def wait_healthy(self, timeout: float = 120.0) -> bool:
        """One leader, two streaming replicas, one of them synchronous."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            rows = self.cluster()
            leaders = [r for r in rows if r.get("role") == "leader" and r.get("state") == "running"]
            streaming = [
                r
                for r in rows
                if r.get("role") in ("replica", "sync_standby") and r.get("state") == "streaming"
            ]
            sync = [r for r in rows if r.get("role") == "sync_standby"]
            if len(leaders) == 1 and len(streaming) == 2 and sync:
                return True
            time.sleep(0.5)
        return False

    # --- instruments ------------------------------------------------------------------------

    def _pid(self, name: str) -> int | None:
        with contextlib.suppress(OSError, ValueError):
            pid = int((self.dir / "run" / f"{name}.pid").read_text().split()[0])
            os.kill(pid, 0)
            return pid
        return None

    def postmaster_pid(self, member: str) -> int | None:
        with contextlib.suppress(OSError, ValueError, IndexError):
            text = (self.dir / "pg" / member / "data" / "postmaster.pid").read_text()
            pid = int(text.split()[0])
            os.kill(pid, 0)
            return pid
        return None

    def kill_member(self, member: str) -> None:
        """kill -9 Patroni and the postmaster of a member: a host lost at once."""
        pids = [self._pid(f"patroni-{member}"), self.postmaster_pid(member)]
        log(f"kill -9 Patroni and the postmaster of {member}: {pids}")
        for pid in pids:
            if pid is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)

    def start_member(self, member: str) -> None:
        self._ha("start-member", member)

    def switchover(self, leader: str, candidate: str) -> tuple[int, Any]:
        return _http(
            rest_url(leader, "switchover"),
            "POST",
            {"leader": leader, "candidate": candidate},
            timeout=60.0,
        )

    def set_strict(self, strict: bool) -> None:
        """synchronous_mode_strict in the DCS (Patroni applies it within one loop_wait)."""
        for m in MEMBERS:
            status, _ = _http(
                rest_url(m, "config"), "PATCH", {"synchronous_mode_strict": strict}, timeout=5.0
            )
            if status == 200:
                time.sleep(3.0)  # > loop_wait: every member has read it
                return
        raise RuntimeError("could not change synchronous_mode_strict through any member")

    def stop_app(self, app: str) -> None:
        self._ha("stop-app", app)

    def start_app(self, app: str) -> None:
        self._ha("start-app", app)

    def app_pid(self, app: str) -> int | None:
        return self._pid(f"app-{app}")

    def patroni_log(self, member: str) -> str:
        with contextlib.suppress(OSError):
            return (self.dir / "pg" / member / "patroni.log").read_text(errors="replace")
        return ""

    def _ha(self, *args: str) -> None:
        proc = subprocess.run(["bash", str(HA_SH), *args], capture_output=True, text=True)
        if proc.returncode != 0:
            raise RuntimeError(f"ha.sh {' '.join(args)} failed: {proc.stderr[-500:]}")
