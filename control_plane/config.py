"""Every environment variable the service reads, in one place (read once at start-up)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
SQL_DIR = REPO_ROOT / "sql"

MAX_BODY_BYTES = 64 * 1024  # contract §6: request bodies above this → 413
MAX_CAPABILITIES_BYTES = 16 * 1024  # compact JSON
MAX_CAPABILITIES_DEPTH = 8
LOG_LEVELS = ("debug", "info", "warning", "error")
RETRY_AFTER_SECONDS = 5  # one sweep interval: a daemon retrying then finds the database back


@dataclass(frozen=True, slots=True)
class Settings:
    database_url: str
    api_database_url: str | None
    admin_token: str | None
    host: str
    port: int
    workers: int
    pool_size: int
    state_dir: Path
    # Hot path tuning (docs/performance.md): ASGI server and the heartbeat coalescer.
    asgi_server: str = "uvicorn"
    heartbeat_max_batch: int = 512
    heartbeat_max_in_flight: int = 1
    heartbeat_linger_ms: float = 1.0
    # What `make run` shows: start-up (the URL), shutdown, errors; one line per request on demand.
    log_level: str = "info"
    access_log: bool = False

    @property
    def api_password_file(self) -> Path:
        return self.state_dir / "api-role.password"


def _log_level(value: str) -> str:
    level = value.strip().lower() or "info"
    if level not in LOG_LEVELS:
        raise SystemExit(f"LOG_LEVEL must be one of {', '.join(LOG_LEVELS)}, not {value!r}")
    return level


def _flag(name: str, value: str) -> bool:
    flag = value.strip().lower()
    if flag in ("", "0", "false", "off", "no"):
        return False
    if flag in ("1", "true", "on", "yes"):
        return True
    raise SystemExit(f"{name} must be on or off, not {value!r}")


def listen_address(environ: Mapping[str, str] | None = None) -> tuple[str, int]:
    """HOST and PORT (also read before the database exists: `make run` checks the port first)."""
    env = os.environ if environ is None else environ
    host = env.get("HOST", "127.0.0.1").strip() or "127.0.0.1"
    port = env.get("PORT", "8000").strip() or "8000"
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise SystemExit(f"PORT must be a TCP port number (1-65535), not {port!r}")
    return host, int(port)


def load_settings(environ: dict[str, str] | None = None) -> Settings:
    env = os.environ if environ is None else environ
    database_url = env.get("DATABASE_URL", "").strip()
    if not database_url:
        raise SystemExit(
            "DATABASE_URL is not set. Use `make run` (it starts the embedded cluster) "
            "or export DATABASE_URL=postgresql://superuser@host/db"
        )
    host, port = listen_address(env)
    return Settings(
        database_url=database_url,
        api_database_url=env.get("CONTROL_PLANE_API_DATABASE_URL") or None,
        admin_token=env.get("CONTROL_PLANE_ADMIN_TOKEN") or None,
        host=host,
        port=port,
        workers=int(env.get("WEB_CONCURRENCY", "2")),
        pool_size=int(env.get("DB_POOL_SIZE", "8")),
        state_dir=Path(env.get("CONTROL_PLANE_STATE_DIR", str(REPO_ROOT / ".local"))),
        asgi_server=env.get("ASGI_SERVER", "uvicorn").strip().lower() or "uvicorn",
        heartbeat_max_batch=int(env.get("HEARTBEAT_MAX_BATCH", "512")),
        heartbeat_max_in_flight=int(env.get("HEARTBEAT_MAX_IN_FLIGHT", "1")),
        heartbeat_linger_ms=float(env.get("HEARTBEAT_LINGER_MS", "1")),
        log_level=_log_level(env.get("LOG_LEVEL", "info")),
        access_log=_flag("ACCESS_LOG", env.get("ACCESS_LOG", "")),
    )
