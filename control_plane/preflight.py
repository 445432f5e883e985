"""`python -m control_plane.preflight`: is HOST:PORT free? `make run` asks before it starts or
migrates any database, so a busy port costs nothing and says how to pick another."""

from __future__ import annotations

import errno
import socket

from control_plane.config import listen_address


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
    host, port = listen_address()
    require_free_port(host, port)


if __name__ == "__main__":
    main()
