"""`python -m control_plane.preflight`: are the settings valid and is HOST:PORT free? `make run`
asks before it starts or migrates any database, so a typo or a busy port costs nothing and says
how to fix it."""

from __future__ import annotations

import errno
import os
import socket

from control_plane.config import load_settings


def service_url(host: str, port: int) -> str:
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}"


def require_free_port(host: str, port: int) -> None:
    """Bind HOST:PORT the way the server will (SO_REUSEADDR), then let it go; exit if busy."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise SystemExit(f"HOST={host!r} cannot be listened on: {exc.strerror}") from None
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(address)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise SystemExit(
                    f"port {port} on {host} is already in use (another `make run`, or another "
                    f"server). Pick another port: PORT={port + 1} make run"
                ) from None
            if exc.errno == errno.EACCES:
                raise SystemExit(
                    f"no permission to listen on port {port} (ports below 1024 need root). "
                    f"Pick another port: PORT=8000 make run"
                ) from None
            raise SystemExit(f"cannot listen on {host}:{port}: {exc.strerror}") from None


def main() -> None:
    # The database is not needed yet (`make run` may be about to start it): a placeholder URL
    # lets every other setting be checked now.
    settings = load_settings({**os.environ, "DATABASE_URL": os.environ.get("DATABASE_URL") or "-"})
    require_free_port(settings.host, settings.port)


if __name__ == "__main__":
    main()
