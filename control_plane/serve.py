"""`python -m control_plane.serve`: serve the app with HOST, PORT and WEB_CONCURRENCY.

`ASGI_SERVER` picks the server: `uvicorn` (default: uvloop + httptools) or `granian` (Rust HTTP
front end, asyncio on uvloop). Both were measured side by side by `make bench`; see
docs/performance.md for the numbers behind the default.
"""

from __future__ import annotations

import sys

from control_plane.config import Settings, load_settings
from control_plane.metrics import prepare_multiprocess
from control_plane.preflight import require_free_port, service_url

SERVERS = ("uvicorn", "granian")


def serve_uvicorn(settings: Settings) -> None:
    import uvicorn

    uvicorn.run(
        "app:create_app",
        factory=True,
        host=settings.host,
        port=settings.port,
        workers=settings.workers,
        loop="uvloop",
        http="httptools",
        access_log=settings.access_log,
        log_level=settings.log_level,
        backlog=4096,
        timeout_graceful_shutdown=10,  # drain in-flight requests on SIGTERM
    )


def serve_granian(settings: Settings) -> None:
    try:
        from granian import Granian
    except ImportError:  # not a dependency: uvicorn is the measured default
        raise SystemExit("ASGI_SERVER=granian needs granian: pip install granian") from None
    from granian.constants import HTTPModes, Interfaces, Loops, RuntimeModes
    from granian.log import LogLevels

    Granian(
        "app:create_app",
        factory=True,
        address=settings.host,
        port=settings.port,
        interface=Interfaces.ASGI,
        workers=settings.workers,
        runtime_mode=RuntimeModes.st,  # one Rust I/O thread per worker: the cores are few
        loop=Loops.uvloop,
        http=HTTPModes.http1,
        websockets=False,
        backlog=4096,
        log_level=LogLevels(settings.log_level),
        log_access=settings.access_log,
        workers_kill_timeout=10,  # drain in-flight requests on SIGTERM
    ).serve()


def main() -> None:
    settings = load_settings()
    prepare_multiprocess(settings.workers)  # workers share request counters (/metrics)
    if settings.asgi_server not in SERVERS:
        raise SystemExit(
            f"ASGI_SERVER must be one of {', '.join(SERVERS)}, not {settings.asgi_server!r}"
        )
    require_free_port(settings.host, settings.port)
    print(
        f"control-plane: serving {service_url(settings.host, settings.port)} "
        f"({settings.workers} worker(s), {settings.asgi_server}, LOG_LEVEL={settings.log_level}, "
        f"ACCESS_LOG={'on' if settings.access_log else 'off'}); Ctrl-C stops it",
        file=sys.stderr,
        flush=True,
    )
    if settings.asgi_server == "granian":
        serve_granian(settings)
    else:
        serve_uvicorn(settings)


if __name__ == "__main__":
    main()
