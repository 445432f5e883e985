"""`python -m control_plane.serve`: serve the app with HOST, PORT and WEB_CONCURRENCY."""

from __future__ import annotations

import uvicorn

from control_plane.config import load_settings


def main() -> None:
    settings = load_settings()
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
