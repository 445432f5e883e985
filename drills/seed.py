"""Bulk seeding through the admin and runtime-node SQL functions, called as superuser.

Thousands of participants, tokens, sessions, memberships and attachments in a handful of
statements: the same functions the API calls (so every rule applies), without 10,000 HTTP round
trips before a drill can start.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Any

import psycopg

from drills.harness import connect

CAPABILITIES = '{"drill": true, "slots": 1}'


@dataclass(frozen=True, slots=True)
class Node:
    node_id: str
    token: str
    participant_id: str
    session_id: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


def run_id() -> str:
    return secrets.token_hex(4)


def participants(conn: psycopg.Connection[Any], count: int, label: str) -> list[tuple[str, str]]:
    """`count` participants with one token each → [(participant_id, token)]."""
    rows = conn.execute(
        """
        WITH p AS MATERIALIZED (
            SELECT g, (control_plane.admin_create_participant(%(label)s)->>'participantId')::uuid
                   AS pid
              FROM generate_series(1, %(count)s) g
        )
        SELECT pid::text AS pid, control_plane.admin_issue_token(pid, %(label)s)->>'token' AS token
          FROM p ORDER BY g
        """,
        {"label": label, "count": count},
    ).fetchall()
    return [(r["pid"], r["token"]) for r in rows]


def sessions(conn: psycopg.Connection[Any], count: int, floor: str | None = None) -> list[str]:
    rows = conn.execute(
        "SELECT control_plane.admin_create_session(%s, 'active')->>'sessionId' AS sid"
        " FROM generate_series(1, %s)",
        (floor, count),
    ).fetchall()
    return [r["sid"] for r in rows]


def memberships(
    conn: psycopg.Connection[Any], pairs: list[tuple[str, str]], role: str = "runtime_contributor"
) -> None:
    """Active memberships for (session_id, participant_id) pairs."""
    conn.execute(
        "SELECT count(control_plane.admin_put_membership(s, p, %s, 'active'))"
        " FROM unnest(%s::uuid[], %s::uuid[]) AS t(s, p)",
        (role, [s for s, _ in pairs], [p for _, p in pairs]),
    )


def attach(
    conn: psycopg.Connection[Any], nodes: list[Node], version: str = "1.0", declare: bool = True
) -> None:
    """Attach (and declare, so the slot is online) through the runtime-node functions, each
    authenticated with the node owner's own token digest."""
    args = (
        [n.token for n in nodes],
        [n.session_id for n in nodes],
        [n.participant_id for n in nodes],
        [n.node_id for n in nodes],
    )
    conn.execute(
        """
        SELECT count(control_plane.runtime_node_attach(
                   sha256(convert_to(tok, 'UTF8')), s, p, n, %s, '{}'::jsonb))
          FROM unnest(%s::text[], %s::uuid[], %s::uuid[], %s::text[]) AS t(tok, s, p, n)
        """,
        (version, *args),
    )
    if declare:
        conn.execute(
            """
            SELECT count(control_plane.runtime_node_declare(
                       sha256(convert_to(tok, 'UTF8')), n, %s::jsonb))
              FROM unnest(%s::text[], %s::text[]) AS t(tok, n)
            """,
            (CAPABILITIES, args[0], args[3]),
        )


def fleet(
    url: str,
    count: int,
    *,
    prefix: str,
    nodes_per_session: int = 100,
    attached: bool = True,
    version: str = "1.0",
) -> list[Node]:
    """`count` nodes, one participant (own token) per node, `nodes_per_session` per session,
    attached and declared unless `attached` is false (then only members, ready to attach)."""
    with connect(url) as conn:
        people = participants(conn, count, f"drill {prefix}")
        sids = sessions(conn, max(1, -(-count // nodes_per_session)))
        nodes = [
            Node(f"{prefix}-{i:05d}", token, pid, sids[i // nodes_per_session])
            for i, (pid, token) in enumerate(people)
        ]
        memberships(conn, [(n.session_id, n.participant_id) for n in nodes])
        if attached:
            attach(conn, nodes, version)
    return nodes


def detach_all(url: str, nodes: list[Node]) -> None:
    """Leave no drill node live: detach sets slot and presence offline, so a node that stopped
    beating when its drill ended is never swept later (and never counted by the stall guard)."""
    if not nodes:
        return
    with connect(url) as conn:
        conn.execute(
            "SELECT count(control_plane.runtime_node_detach(sha256(convert_to(tok, 'UTF8')), n))"
            " FROM unnest(%s::text[], %s::text[]) AS t(tok, n)",
            ([n.token for n in nodes], [n.node_id for n in nodes]),
        )


def states(url: str, node_ids: list[str]) -> dict[str, tuple[str, str | None]]:
    """node_id → (active-or-latest slot state, presence health) for the given nodes."""
    with connect(url) as conn:
        rows = conn.execute(
            """
            SELECT n AS node_id,
                   (SELECT a.state FROM control_plane.runtime_node_attachments a
                     WHERE a.node_id = n ORDER BY a.updated_at DESC LIMIT 1) AS state,
                   (SELECT p.health_state FROM control_plane.runtime_node_presence p
                     WHERE p.node_id = n) AS health
              FROM unnest(%s::text[]) AS n
            """,
            (node_ids,),
        ).fetchall()
    return {r["node_id"]: (r["state"], r["health"]) for r in rows}
