"""`python -m control_plane.serve`: serve the app with HOST, PORT and WEB_CONCURRENCY."""

from __future__ import annotations

import uvicorn

from control_plane.config import load_settings
from control_plane.metrics import prepare_multiprocess


def main() -> None:
    settings = load_settings()
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
        timeout_graceful_shutdown=10,  # drain in-flight requests on SIGTERM
    )


if __name__ == "__main__":
    main()
