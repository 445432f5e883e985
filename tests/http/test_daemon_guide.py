"""What docs/api.md tells a daemon author to rely on, checked against the real server:

- an expired and a revoked token get byte-identical 401s (the daemon tells them apart by the
  `expiresAt` it was given, not by the answer);
- a detached and a revoked node get byte-identical 403s on heartbeat and declaration; attaching
  again tells them apart (200 `registering` vs 409 `runtimenode.attach_revoked`), and an inactive
  membership answers that attach with the uniform 403.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import psycopg

from tests.conftest import bearer, random_node_id

Problem = Callable[[httpx.Response, int, str], dict[str, Any]]


def attach_body(participant_id: str, node: str) -> dict[str, Any]:
    return {
        "participantId": participant_id,
        "nodeId": node,
        "clientVersion": "1.0",
        "capabilities": {"python": "3.11"},
        "healthState": "online",
    }


def beat(client: httpx.Client, node: str, auth: dict[str, str]) -> httpx.Response:
    return client.post(
        f"/v1/runtime-nodes/{node}/heartbeat", json={"healthState": "online"}, headers=auth
    )


def test_expired_and_revoked_tokens_get_the_same_401(
    client: httpx.Client,
    admin: httpx.Client,
    make_member: Callable[..., Any],
    db: psycopg.Connection,
    problem: Problem,
) -> None:
    member = make_member()
    issue = f"/v1/admin/participants/{member.participant_id}/tokens"
    expiring = admin.post(issue, json={"expiresInSeconds": 3600}).json()
    revoked = admin.post(issue, json={}).json()
    assert expiring["expiresAt"] is not None and revoked["expiresAt"] is None
    db.execute(
        "UPDATE control_plane.participant_tokens"
        " SET created_at = now() - interval '2 hours', expires_at = now() - interval '1 second'"
        " WHERE id = %s",
        (expiring["tokenId"],),
    )
    assert admin.delete(f"/v1/admin/tokens/{revoked['tokenId']}").status_code == 204

    node = random_node_id("guide")
    answers = [beat(client, node, bearer(t["token"])) for t in (expiring, revoked)]
    for answer in answers:
        problem(answer, 401, "auth.unauthenticated")
        assert answer.headers["www-authenticate"] == "Bearer"
    assert answers[0].content == answers[1].content


def test_detached_and_revoked_look_alike_until_the_daemon_attaches_again(
    client: httpx.Client,
    admin: httpx.Client,
    make_member: Callable[..., Any],
    add_member: Callable[..., Any],
    problem: Problem,
) -> None:
    member = make_member()
    session, auth = member.session_id, member.auth
    detached, revoked = random_node_id("guide-detached"), random_node_id("guide-revoked")
    for node in (detached, revoked):
        attach = client.post(
            f"/v1/sessions/{session}/runtime-nodes",
            json=attach_body(member.participant_id, node),
            headers=auth,
        )
        assert attach.status_code == 200, attach.text
        assert beat(client, node, auth).status_code == 204
    assert client.post(f"/v1/runtime-nodes/{detached}/detach", headers=auth).status_code == 204
    assert admin.post(f"/v1/sessions/{session}/runtime-nodes/{revoked}/revoke").status_code == 204

    refusals = [beat(client, node, auth) for node in (detached, revoked)]
    refusals += [
        client.post(
            f"/v1/runtime-nodes/{node}/declaration", json={"capabilities": {"a": 1}}, headers=auth
        )
        for node in (detached, revoked)
    ]
    for refusal in refusals:
        problem(refusal, 403, "runtimenode.permission_denied")
    assert len({r.content for r in refusals}) == 1

    again = client.post(
        f"/v1/sessions/{session}/runtime-nodes",
        json=attach_body(member.participant_id, revoked),
        headers=auth,
    )
    problem(again, 409, "runtimenode.attach_revoked")
    again = client.post(
        f"/v1/sessions/{session}/runtime-nodes",
        json=attach_body(member.participant_id, detached),
        headers=auth,
    )
    assert again.status_code == 200 and again.json()["state"] == "registering", again.text

    # A suspended membership: heartbeats and a new attach are the uniform 403, detach still works.
    add_member(session, member.participant_id, role="owner", state="suspended")
    problem(beat(client, detached, auth), 403, "runtimenode.permission_denied")
    problem(
        client.post(
            f"/v1/sessions/{session}/runtime-nodes",
            json=attach_body(member.participant_id, detached),
            headers=auth,
        ),
        403,
        "runtimenode.permission_denied",
    )
    assert client.post(f"/v1/runtime-nodes/{detached}/detach", headers=auth).status_code == 204
