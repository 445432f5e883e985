"""An idempotent no-op acknowledgement waits for replication like a write (docs/deploy.md §5).

With synchronous replication, a commit whose wait for the standby is cancelled (the client got a
503 at the pool's deadline) is already visible on the primary. A retry that finds the work done
and writes no WAL commits without waiting for the standby (PostgreSQL waits only when the
transaction wrote WAL), so its 2xx would acknowledge a change that a failover can still lose.
The no-op detach therefore locks the caller's own slot of that node: a row lock is WAL-logged
(it sets the row's xmax to the locker's transaction id), and the commit then waits.
"""

from __future__ import annotations

import hashlib
import secrets

import psycopg


def test_a_no_op_detach_logs_a_row_lock(db: psycopg.Connection) -> None:
    participant = db.execute(
        "SELECT (control_plane.admin_create_participant('noop')->>'participantId')::uuid"
    ).fetchone()[0]
    token = db.execute(
        "SELECT control_plane.admin_issue_token(%s, 'noop')->>'token'", [participant]
    ).fetchone()[0]
    digest = hashlib.sha256(token.encode()).digest()
    session = db.execute(
        "SELECT (control_plane.admin_create_session(NULL, 'active')->>'sessionId')::uuid"
    ).fetchone()[0]
    db.execute(
        "SELECT control_plane.admin_put_membership(%s, %s, 'runtime_contributor', 'active')",
        [session, participant],
    )
    node = f"noop-{secrets.token_hex(6)}"
    db.execute(
        "SELECT control_plane.runtime_node_attach(%s, %s, %s, %s, '1.0', '{}'::jsonb)",
        [digest, session, participant, node],
    )
    db.execute("SELECT control_plane.runtime_node_detach(%s, %s)", [digest, node])  # real one
    with db.transaction():
        db.execute("SELECT control_plane.runtime_node_detach(%s, %s)", [digest, node])  # no-op
        row = db.execute(
            "SELECT a.state, a.xmax::text = (pg_current_xact_id_if_assigned()::text::bigint"
            " %% 4294967296)::text AS locked_by_me"
            " FROM control_plane.runtime_node_attachments a WHERE a.node_id = %s",
            [node],
        ).fetchone()
        assert row == ("offline", True), "the no-op detach must lock (WAL-log) the caller's slot"
