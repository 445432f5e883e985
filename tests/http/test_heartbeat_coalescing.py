"""The coalesced heartbeat path (contract §6.4), end to end over real HTTP.

Many concurrent beats share round trips in the server; each must still get the verdict of its
own token and node: 204 for an owner's active node, 401 for an unknown token, 403 (the one
constant body) for someone else's node, and a refused beat writes no presence.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Callable
from typing import Any

import httpx
import psycopg

from tests.conftest import attach_node

Problem = Callable[[httpx.Response, int, str], dict[str, Any]]
BEAT = "/v1/runtime-nodes/{}/heartbeat"


async def _burst(base_url: str, calls: list[tuple[str, str, str]]) -> list[httpx.Response]:
    """All calls at once, one connection each, so they reach the server together."""
    limits = httpx.Limits(max_connections=len(calls), max_keepalive_connections=0)
    async with httpx.AsyncClient(base_url=base_url, timeout=30.0, limits=limits) as c:
        return list(
            await asyncio.gather(
                *(
                    c.post(
                        BEAT.format(node),
                        json={"healthState": health},
                        headers={"Authorization": f"Bearer {token}"},
                    )
                    for token, node, health in calls
                )
            )
        )


def test_concurrent_beats_get_their_own_verdicts(
    server: str,
    client: httpx.Client,
    db: psycopg.Connection,
    make_member: Callable[..., Any],
    problem: Problem,
) -> None:
    alice, bob = make_member(), make_member()
    alice_nodes = [f"coal-a-{i}-{secrets.token_hex(4)}" for i in range(12)]
    bob_nodes = [f"coal-b-{i}-{secrets.token_hex(4)}" for i in range(4)]
    for node in alice_nodes:
        attach_node(client, alice, node)
    for node in bob_nodes:
        attach_node(client, bob, node)
    never_attached = f"coal-x-{secrets.token_hex(4)}"

    calls: list[tuple[str, str, str]] = []
    expected: list[int] = []
    for i, node in enumerate(alice_nodes):
        calls.append((alice.token, node, "degraded" if i % 3 == 0 else "online"))
        expected.append(204)
    calls.append((alice.token, alice_nodes[0], "online"))  # the same node twice in one burst
    expected.append(204)
    for node in bob_nodes:
        calls.append((alice.token, node, "online"))  # someone else's node
        expected.append(403)
        calls.append((bob.token, node, "online"))
        expected.append(204)
    calls.append((alice.token, never_attached, "online"))
    expected.append(403)
    for node in alice_nodes[:4]:
        calls.append(("cpt_" + secrets.token_urlsafe(32), node, "online"))  # unknown token
        expected.append(401)

    responses = asyncio.run(_burst(server, calls))

    assert [r.status_code for r in responses] == expected
    forbidden_bodies = set()
    for r in responses:
        if r.status_code == 204:
            assert r.content == b""
        elif r.status_code == 401:
            problem(r, 401, "auth.unauthenticated")
            assert r.headers["www-authenticate"] == "Bearer"
        else:
            body = problem(r, 403, "runtimenode.permission_denied")
            assert body["detail"] == "permission denied"
            forbidden_bodies.add(r.content)
    # One constant 403 body, the same as another endpoint's refusal of someone else's node.
    other = client.post(
        f"/v1/runtime-nodes/{bob_nodes[0]}/declaration",
        json={"capabilities": {"gpu": 1}},
        headers=alice.auth,
    )
    assert forbidden_bodies == {other.content}

    rows = dict(
        db.execute(
            "SELECT node_id, health_state FROM control_plane.runtime_node_presence"
            " WHERE node_id = ANY(%s)",
            (alice_nodes + bob_nodes + [never_attached],),
        ).fetchall()
    )
    assert set(rows) == set(alice_nodes + bob_nodes)  # the refused never_attached: no row
    # Bob's nodes beat with Bob's token only; Alice's foreign beats changed nothing.
    assert all(rows[n] == "online" for n in bob_nodes)
    for i, node in enumerate(alice_nodes[1:], start=1):
        assert rows[node] == ("degraded" if i % 3 == 0 else "online")
    assert rows[alice_nodes[0]] in ("online", "degraded")  # twice in one burst: one of the two


def test_a_burst_of_one_node_keeps_presence_consistent(
    server: str, client: httpx.Client, db: psycopg.Connection, make_member: Callable[..., Any]
) -> None:
    member = make_member()
    node = f"coal-dup-{secrets.token_hex(4)}"
    attach_node(client, member, node)
    responses = asyncio.run(_burst(server, [(member.token, node, "degraded")] * 20))
    assert [r.status_code for r in responses] == [204] * 20
    row = db.execute(
        "SELECT health_state, last_heartbeat_at <= now() FROM control_plane.runtime_node_presence"
        " WHERE node_id = %s",
        (node,),
    ).fetchone()
    assert row == ("degraded", True)
