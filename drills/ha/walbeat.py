"""`python -m drills.ha.walbeat [DATABASE_URL]`: WAL bytes one heartbeat costs the primary
(capacity planning, docs/deploy.md): pg_current_wal_lsn() deltas around rounds of steady-state
beats through `runtime_node_heartbeat_batch`, the function the app's coalescer calls, in
batches of 64 (a typical coalesced batch under load).

Two figures: the round right after a CHECKPOINT (every presence page written for the first time
since the checkpoint carries a full-page image: the worst case) and the following rounds (the
steady state between checkpoints). Every WAL byte also crosses the network to each standby.
Prints one line `measure wal-per-beat: ...`; the nodes it seeds are detached at the end.
"""

from __future__ import annotations

import hashlib
import os
import sys
import time

from drills import seed
from drills.harness import connect

NODES = 2000
BATCH = 64
ROUNDS = 4
_SQL = "SELECT control_plane.runtime_node_heartbeat_batch(%s::bytea[], %s::text[], %s::text[])"


def _round(url: str, nodes: list[seed.Node]) -> tuple[int, float]:
    """(WAL bytes, seconds) of one beat for every node."""
    digests = [hashlib.sha256(n.token.encode()).digest() for n in nodes]
    with connect(url) as conn:
        start = conn.execute("SELECT pg_current_wal_lsn() AS l").fetchone()["l"]  # type: ignore[index]
        t0 = time.monotonic()
        for i in range(0, len(nodes), BATCH):
            part = nodes[i : i + BATCH]
            conn.execute(
                _SQL, (digests[i : i + BATCH], [n.node_id for n in part], ["online"] * len(part))
            )
        elapsed = time.monotonic() - t0
        row = conn.execute(
            "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), %s::pg_lsn)::bigint AS d", (start,)
        ).fetchone()
    assert row is not None
    return int(row["d"]), elapsed


def measure(url: str) -> str:
    nodes = seed.fleet(url, NODES, prefix=f"wal{seed.run_id()}-")
    try:
        _round(url, nodes)  # first beats create the presence rows (and their events)
        with connect(url) as conn:
            conn.execute("CHECKPOINT")
        after_checkpoint, _ = _round(url, nodes)
        steady = [_round(url, nodes) for _ in range(ROUNDS)]
        steady_bytes = sum(b for b, _ in steady) / (ROUNDS * NODES)
        beats_per_s = ROUNDS * NODES / sum(t for _, t in steady)
        return (
            f"measure wal-per-beat: nodes={NODES} batch={BATCH} "
            f"after_checkpoint_bytes={after_checkpoint / NODES:.0f} "
            f"steady_bytes={steady_bytes:.0f} sql_beats_per_s={beats_per_s:.0f}"
        )
    finally:
        seed.detach_all(url, nodes)


def main() -> int:
    url = sys.argv[1] if len(sys.argv) > 1 else os.environ.get("DATABASE_URL", "")
    if not url:
        from drills.ha.topology import Topology

        url = Topology.load().database_url
    print(measure(url), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
