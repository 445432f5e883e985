"""`python -m control_plane.serve`: serve the app with uvicorn (uvloop + httptools) on HOST and
PORT with WEB_CONCURRENCY workers (docs/performance.md has the numbers behind the choice)."""

from __future__ import annotations

import sys

import uvicorn

from control_plane.config import ConfigError, load_settings
from control_plane.connection_limits import GuardedHttpTools
from control_plane.database import (
    ConnectionConfigError,
    admin_connect_kwargs,
    api_connect_kwargs,
)
from control_plane.metrics import prepare_multiprocess
from control_plane.preflight import require_free_port, service_url


def main() -> None:
    settings = load_settings()  # a malformed variable exits here with one line naming it
    try:
        api_connect_kwargs(settings)  # the same check each worker makes, before any starts
    except ConnectionConfigError as exc:
        raise ConfigError(f"DATABASE_URL: {exc}") from None
    try:
        admin_connect_kwargs(settings)
    except ConnectionConfigError as exc:
        raise ConfigError(f"CONTROL_PLANE_ADMIN_DATABASE_URL: {exc}") from None
    prepare_multiprocess(settings.workers)  # workers share request counters (/metrics)
    require_free_port(settings.host, settings.port)
    print(
        f"control-plane: serving {service_url(settings.host, settings.port)} "
        f"({settings.workers} worker(s), LOG_LEVEL={settings.log_level}, "
        f"ACCESS_LOG={'on' if settings.access_log else 'off'}); Ctrl-C stops it",
        file=sys.stderr,
        flush=True,
    )
    uvicorn.run(
        "app:create_app",
        factory=True,
        host=settings.host,
        port=settings.port,
        workers=settings.workers,
        loop="uvloop",
        http=GuardedHttpTools,  # httptools + header/body deadlines, connection limit
        timeout_keep_alive=settings.http_keepalive_timeout_s,
        access_log=settings.access_log,
        log_level=settings.log_level,
        backlog=4096,
        timeout_graceful_shutdown=10,  # drain in-flight requests on SIGTERM
    )


if __name__ == "__main__":
    main()
