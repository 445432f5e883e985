"""Python SDK of the runtime-node control plane.

- `RuntimeNode`: attach, declare, heartbeat in the background, detach on exit.
- `ControlPlaneClient`: one typed async method per API call (participant and admin).
- `ControlPlaneClient.watch()`: follow a session's change feed, list-then-follow, resumable.
- `runtime_node_client.errors`: one exception class per problem `code`.
"""

from runtime_node_client.client import ControlPlaneClient
from runtime_node_client.errors import ControlPlaneError
from runtime_node_client.feed import Resync
from runtime_node_client.node import NodeStatus, RuntimeNode, SlotLost
from runtime_node_client.retry import RetryPolicy

__all__ = [
    "ControlPlaneClient",
    "ControlPlaneError",
    "NodeStatus",
    "Resync",
    "RetryPolicy",
    "RuntimeNode",
    "SlotLost",
]
__version__ = "0.2.0"
