"""An example runtime-node daemon: the thing to copy when you write your own.

It attaches to a session, declares what it can do, heartbeats in the background, reacts to
being admitted read-only and to losing its slot, and detaches cleanly on SIGTERM or Ctrl-C.

    pip install ./clients/python
    CONTROL_PLANE_URL=http://127.0.0.1:8000 CONTROL_PLANE_TOKEN=cpt_... \
    SESSION_ID=... PARTICIPANT_ID=... NODE_ID=laptop-1 python examples/daemon.py
"""

from __future__ import annotations

import asyncio
import logging
import os
import platform
import signal
import sys

from runtime_node_client import RuntimeNode
from runtime_node_client.errors import ControlPlaneError

log = logging.getLogger("daemon")
CLIENT_VERSION = "1.4"  # MAJOR.MINOR: below the session's floor the node is admitted read-only


def capabilities() -> dict[str, object]:
    """What this machine can run: declare only what you have validated."""
    return {"python": platform.python_version(), "os": sys.platform, "cpus": os.cpu_count()}


async def run() -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    node = RuntimeNode(
        os.environ.get("CONTROL_PLANE_URL", "http://127.0.0.1:8000"),
        os.environ["CONTROL_PLANE_TOKEN"],
        session_id=os.environ["SESSION_ID"],
        participant_id=os.environ["PARTICIPANT_ID"],
        node_id=os.environ.get("NODE_ID", platform.node()),
        client_version=CLIENT_VERSION,
        capabilities=capabilities(),
    )
    try:
        async with node:
            status = node.status
            if status.read_only:
                log.warning("admitted read-only: client %s is below the session's floor; "
                            "upgrade to take work", CLIENT_VERSION)  # fmt: skip
            log.info("attached %s as %s (beating every %.0f s)",
                     node.node_id, status.state, status.heartbeat_interval)  # fmt: skip
            lost = asyncio.create_task(node.lost.wait())
            stopping = asyncio.create_task(stop.wait())
            await asyncio.wait({lost, stopping}, return_when=asyncio.FIRST_COMPLETED)
            if node.lost.is_set():
                why = await node.diagnose()
                log.error("lost the slot (%s): not re-attaching on my own",
                          why.cause if why else "?")  # fmt: skip
                return 3
            log.info("stopping: detaching %s", node.node_id)
    except ControlPlaneError as exc:  # attach or declaration refused: say why and exit
        log.error("control plane refused: %s", exc)
        return 2
    return 0


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    sys.exit(asyncio.run(run()))
