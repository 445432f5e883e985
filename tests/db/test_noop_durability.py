"""An idempotent no-op acknowledgement waits for replication like a write (docs/deploy.md §5).

With synchronous replication, a commit whose wait for the standby is cancelled (the client got a
503 at the pool's deadline) is already visible on the primary. A retry that finds the work done
and writes nothing would commit without a commit record, hence without waiting for the standby,
and its 2xx would acknowledge a change that a failover can still lose. So the no-op paths take a
transaction id: their commit then writes a record and waits for the standby like any write.
"""

from __future__ import annotations

import hashlib
import secrets

import psycopg


def test_a_no_op_detach_commits_like_a_write(db: psycopg.Connection) -> None:
    participant = db.execute(
        "SELECT (control_plane.admin_create_participant('noop')->>'participantId')::uuid"
    ).fetchone()[0]
    token = db.execute(
        "SELECT control_plane.admin_issue_token(%s, 'noop')->>'token'", [participant]
    ).fetchone()[0]
    digest = hashlib.sha256(token.encode()).digest()
    with db.transaction():
        assert db.execute("SELECT pg_current_xact_id_if_assigned()").fetchone()[0] is None
        db.execute(
            "SELECT control_plane.runtime_node_detach(%s, %s)",
            [digest, f"never-attached-{secrets.token_hex(6)}"],
        )
        xid = db.execute("SELECT pg_current_xact_id_if_assigned()").fetchone()[0]
        assert xid is not None, "a no-op detach must take a transaction id (see module doc)"
