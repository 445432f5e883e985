"""`python -m control_plane.serve`: serve the app with uvicorn (uvloop + httptools) on HOST and
PORT with WEB_CONCURRENCY workers (docs/performance.md has the numbers behind the choice)."""

from __future__ import annotations

import uvicorn

from control_plane.config import ConfigError, load_settings
from control_plane.database import ConnectionConfigError, api_connect_kwargs
from control_plane.metrics import prepare_multiprocess


def main() -> None:
    settings = load_settings()  # a malformed variable exits here with one line naming it
    try:
        api_connect_kwargs(settings)  # the same check each worker makes, before any starts
    except ConnectionConfigError as exc:
        raise ConfigError(f"DATABASE_URL: {exc}") from None
    prepare_multiprocess(settings.workers)  # workers share request counters (/metrics)
    uvicorn.run(
        "app:create_app",
        factory=True,
        host=settings.host,
        port=settings.port,
        workers=settings.workers,
        loop="uvloop",
        http="httptools",
        access_log=False,
        log_level="warning",
        backlog=4096,
        timeout_graceful_shutdown=10,  # drain in-flight requests on SIGTERM
    )


if __name__ == "__main__":
    main()
