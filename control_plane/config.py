"""Every environment variable the service reads: one typed definition, one set of defaults.

Each `Settings` field names its variable, its default and its bounds once; `load_settings` reads
them all at start-up. A malformed value stops the process with one line naming the variable
(`PORT must be an integer from 1 to 65535, not 'abc'`), never a traceback.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import MISSING, dataclass, field, fields
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
SQL_DIR = REPO_ROOT / "sql"

MAX_BODY_BYTES = 64 * 1024  # contract §6: request bodies above this → 413
MAX_CAPABILITIES_BYTES = 16 * 1024  # compact JSON
MAX_CAPABILITIES_DEPTH = 8


class ConfigError(SystemExit):
    """A missing or malformed environment variable: exits with its one-line message."""


def _text(name: str, raw: str) -> str:
    return raw


def _optional_text(name: str, raw: str) -> str | None:
    return raw or None


def _path(name: str, raw: str) -> Path:
    return Path(raw)


def _integer(low: int, high: int | None = None) -> Callable[[str, str], int]:
    bounds = f"from {low} to {high}" if high is not None else f"of at least {low}"

    def parse(name: str, raw: str) -> int:
        try:
            value = int(raw.strip())
        except ValueError:
            value = None
        if value is None or value < low or (high is not None and value > high):
            raise ConfigError(f"{name} must be an integer {bounds}, not {raw!r}")
        return value

    return parse


def _number(low: float, high: float) -> Callable[[str, str], float]:
    def parse(name: str, raw: str) -> float:
        try:
            value = float(raw.strip())
        except ValueError:
            value = None
        if value is None or not low <= value <= high:
            raise ConfigError(f"{name} must be a number from {low:g} to {high:g}, not {raw!r}")
        return value

    return parse


def _choice(*allowed: str) -> Callable[[str, str], str]:
    def parse(name: str, raw: str) -> str:
        value = raw.strip().lower()
        if value not in allowed:
            raise ConfigError(f"{name} must be one of {', '.join(allowed)}, not {raw!r}")
        return value

    return parse


def _flag(name: str, raw: str) -> bool:
    value = raw.strip().lower()
    if value in ("0", "false", "off", "no"):
        return False
    if value in ("1", "true", "on", "yes"):
        return True
    raise ConfigError(f"{name} must be on or off, not {raw!r}")


def _env(variable: str, parse: Callable[[str, str], Any], default: Any = MISSING) -> Any:
    """A settings field read from `variable` (no default: the variable is required)."""
    return field(default=default, metadata={"env": variable, "parse": parse})


@dataclass(frozen=True, slots=True)
class Settings:
    # A superuser URL: migrations run as it; the app logs in as the API role (database.py).
    database_url: str = _env("DATABASE_URL", _text)
    api_database_url: str | None = _env("CONTROL_PLANE_API_DATABASE_URL", _optional_text, None)
    # The admin surface's login (database.py): the only role that may run the admin functions.
    admin_database_url: str | None = _env("CONTROL_PLANE_ADMIN_DATABASE_URL", _optional_text, None)
    admin_token: str | None = _env("CONTROL_PLANE_ADMIN_TOKEN", _optional_text, None)
    host: str = _env("HOST", _text, "127.0.0.1")
    port: int = _env("PORT", _integer(1, 65535), 8000)
    workers: int = _env("WEB_CONCURRENCY", _integer(1, 256), 2)
    pool_size: int = _env("DB_POOL_SIZE", _integer(1, 1000), 8)
    state_dir: Path = _env("CONTROL_PLANE_STATE_DIR", _path, REPO_ROOT / ".local")
    # Heartbeat coalescer (docs/performance.md): beats per batch call, batches out at once.
    heartbeat_max_batch: int = _env("HEARTBEAT_MAX_BATCH", _integer(1, 100_000), 512)
    heartbeat_max_in_flight: int = _env("HEARTBEAT_MAX_IN_FLIGHT", _integer(1, 64), 1)
    # What `make run` shows: start-up (the URL), shutdown, errors; one line per request on demand.
    log_level: str = _env("LOG_LEVEL", _choice("debug", "info", "warning", "error"), "info")
    access_log: bool = _env("ACCESS_LOG", _flag, False)
    # Change feed (contract §9; control_plane/feed.py): the SSE keep-alive comment and
    # re-authorization interval (at most 15 s), and the per-worker cap on waiting requests.
    feed_keepalive_seconds: int = _env("FEED_KEEPALIVE_SECONDS", _integer(1, 15), 15)
    feed_max_waiters: int = _env("FEED_MAX_WAITERS", _integer(1, 1_000_000), 10_000)
    # Bench-only routes (routes/bench.py), never in the product's route table by default.
    bench_routes: bool = _env("CONTROL_PLANE_BENCH_ROUTES", _flag, False)
    # Overload protection (docs/reliability.md, "Overload"). Admission: database calls in flight
    # per worker and request class; the three together leave the heartbeat batch its connection.
    admission_writes: int = _env("ADMISSION_WRITES", _integer(1, 1000), 4)
    admission_reads: int = _env("ADMISSION_READS", _integer(1, 1000), 2)
    admission_admin: int = _env("ADMISSION_ADMIN", _integer(1, 1000), 1)
    # Requests of a class waiting for one of its slots (beyond: shed at once), and how long.
    admission_queue: int = _env("ADMISSION_QUEUE", _integer(0, 100_000), 16)
    admission_queue_wait_ms: int = _env("ADMISSION_QUEUE_WAIT_MS", _integer(1, 8000), 250)
    # Beats waiting for the next batch per worker (beyond: shed).
    heartbeat_max_queued: int = _env("HEARTBEAT_MAX_QUEUED", _integer(1, 1_000_000), 8192)
    # Per-token request rates, service-wide (each worker enforces rate / WEB_CONCURRENCY);
    # 0 turns a class's limit off. Burst: that many seconds' worth of requests at once.
    rate_limit_writes: float = _env("RATE_LIMIT_WRITES_PER_S", _number(0, 1e6), 10.0)
    rate_limit_reads: float = _env("RATE_LIMIT_READS_PER_S", _number(0, 1e6), 10.0)
    rate_limit_admin: float = _env("RATE_LIMIT_ADMIN_PER_S", _number(0, 1e6), 1000.0)
    rate_limit_burst_s: float = _env("RATE_LIMIT_BURST_S", _number(1, 3600), 3.0)
    # Connection hygiene (control_plane/connection_limits.py): per worker.
    http_max_connections: int = _env("HTTP_MAX_CONNECTIONS", _integer(1, 1_000_000), 4096)
    http_header_timeout_s: float = _env("HTTP_HEADER_TIMEOUT_S", _number(0.1, 600), 5.0)
    http_body_timeout_s: float = _env("HTTP_BODY_TIMEOUT_S", _number(0.1, 600), 10.0)
    http_keepalive_timeout_s: int = _env("HTTP_KEEPALIVE_TIMEOUT_S", _integer(1, 600), 5)

    @property
    def api_password_file(self) -> Path:
        return self.state_dir / "api-role.password"

    @property
    def admin_password_file(self) -> Path:
        return self.state_dir / "admin-role.password"


_MISSING_DATABASE_URL = (
    "DATABASE_URL is not set. Use `make run` (it starts the embedded cluster) "
    "or export DATABASE_URL=postgresql://superuser@host/db"
)


def load_settings(environ: Mapping[str, str] | None = None) -> Settings:
    """Settings from the environment; an empty variable counts as unset (its default)."""
    env = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    for f in fields(Settings):
        variable: str = f.metadata["env"]
        raw = env.get(variable, "").strip()
        if not raw:
            if f.default is MISSING:
                missing = _MISSING_DATABASE_URL if variable == "DATABASE_URL" else None
                raise ConfigError(missing or f"{variable} is not set")
            continue
        values[f.name] = f.metadata["parse"](variable, raw)
    return Settings(**values)
