"""Authentication over real HTTP (contract §5, §6.8): participant bearer tokens, the admin token."""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Callable
from typing import Any

import httpx
import psycopg
import pytest

Problem = Callable[[httpx.Response, int, str], dict[str, Any]]


def node_id() -> str:
    return f"auth-{secrets.token_hex(6)}"


def runtime_node_calls(session_id: str, participant_id: str) -> list[tuple[str, str, Any]]:
    """(method, path, json body) of every runtime-node endpoint, with valid bodies."""
    node = node_id()
    return [
        (
            "POST",
            f"/v1/sessions/{session_id}/runtime-nodes",
            {
                "participantId": participant_id,
                "nodeId": node,
                "clientVersion": "1.0",
                "capabilities": {},
                "healthState": "online",
            },
        ),
        ("GET", f"/v1/sessions/{session_id}/runtime-nodes", None),
        ("POST", f"/v1/runtime-nodes/{node}/declaration", {"capabilities": {"a": 1}}),
        ("PUT", f"/v1/runtime-nodes/{node}/capabilities", {"capabilities": {}}),
        ("POST", f"/v1/runtime-nodes/{node}/heartbeat", {"healthState": "online"}),
        ("POST", f"/v1/runtime-nodes/{node}/detach", {}),
        ("POST", f"/v1/sessions/{session_id}/runtime-nodes/{node}/revoke", {}),
    ]


def assert_unauthenticated(problem: Problem, response: httpx.Response) -> None:
    problem(response, 401, "auth.unauthenticated")
    assert response.headers.get("www-authenticate") == "Bearer"


def call(
    client: httpx.Client, method: str, path: str, body: Any, headers: dict[str, str]
) -> httpx.Response:
    return client.request(method, path, json=body, headers=headers)


@pytest.mark.parametrize(
    "authorization",
    [
        None,
        "",
        "Bearer",
        "Bearer   x y",
        "Basic dXNlcjpwYXNz",
        "cpt_notevenascheme",
        "Bearer cpt_" + "A" * 43,  # well-formed, unknown
        "Bearer " + "x" * 10_000,  # absurdly long
        "Token abc",
    ],
)
def test_missing_malformed_or_unknown_tokens_are_401_everywhere(
    client: httpx.Client,
    make_member: Callable,
    problem: Problem,
    scoped_snapshot: Callable,
    authorization: str | None,
) -> None:
    member = make_member()
    headers = {} if authorization is None else {"Authorization": authorization}
    before = scoped_snapshot([member.session_id], [member.participant_id])
    for method, path, body in runtime_node_calls(member.session_id, member.participant_id):
        assert_unauthenticated(problem, call(client, method, path, body, headers))
    assert scoped_snapshot([member.session_id], [member.participant_id]) == before


def test_expired_token_is_401(
    client: httpx.Client,
    admin: httpx.Client,
    make_member: Callable,
    db: psycopg.Connection,
    problem: Problem,
) -> None:
    member = make_member()
    issued = admin.post(
        f"/v1/admin/participants/{member.participant_id}/tokens", json={"expiresInSeconds": 3600}
    ).json()
    headers = {"Authorization": f"Bearer {issued['token']}"}
    assert client.get(f"/v1/sessions/{member.session_id}/runtime-nodes", headers=headers).is_success
    # Expire it in the database (no waiting): move its whole lifetime into the past.
    db.execute(
        "UPDATE control_plane.participant_tokens"
        " SET created_at = now() - interval '2 hours', expires_at = now() - interval '1 second'"
        " WHERE id = %s",
        (issued["tokenId"],),
    )
    for method, path, body in runtime_node_calls(member.session_id, member.participant_id):
        assert_unauthenticated(problem, call(client, method, path, body, headers))
    # The participant's token without expiry is unaffected.
    assert client.get(
        f"/v1/sessions/{member.session_id}/runtime-nodes", headers=member.auth
    ).is_success


def test_revoked_token_is_401_everywhere(
    client: httpx.Client, admin: httpx.Client, make_member: Callable, problem: Problem
) -> None:
    member = make_member()
    issued = admin.post(f"/v1/admin/participants/{member.participant_id}/tokens", json={}).json()
    assert admin.delete(f"/v1/admin/tokens/{issued['tokenId']}").status_code == 204
    headers = {"Authorization": f"Bearer {issued['token']}"}
    for method, path, body in runtime_node_calls(member.session_id, member.participant_id):
        assert_unauthenticated(problem, call(client, method, path, body, headers))


def test_the_scheme_is_case_insensitive(client: httpx.Client, make_member: Callable) -> None:
    member = make_member()
    r = client.get(
        f"/v1/sessions/{member.session_id}/runtime-nodes",
        headers={"Authorization": f"bearer {member.token}"},
    )
    assert r.status_code == 200, r.text


def test_the_admin_token_is_not_a_participant_token(
    client: httpx.Client, admin_token: str, make_member: Callable, problem: Problem
) -> None:
    """Accepted on /v1/admin, on revoke and on the roster (contract §11), nowhere else."""
    member = make_member()
    headers = {"Authorization": f"Bearer {admin_token}"}
    for method, path, body in runtime_node_calls(member.session_id, member.participant_id):
        r = call(client, method, path, body, headers)
        if path.endswith("/revoke"):
            # Admin authority reaches the "no such attachment" check.
            problem(r, 404, "runtimenode.not_found")
        elif method == "GET" and path.endswith("/runtime-nodes"):
            assert r.status_code == 200, r.text
            assert r.json()["nodes"] == []
        else:
            assert_unauthenticated(problem, r)


ADMIN_CALLS: list[tuple[str, str, Any]] = [
    ("POST", "/v1/admin/participants", {}),
    ("POST", "/v1/admin/participants/{pid}/tokens", {}),
    ("DELETE", "/v1/admin/tokens/{tid}", None),
    ("POST", "/v1/admin/sessions", {}),
    ("PUT", "/v1/admin/sessions/{sid}/members/{pid}", {"role": "owner", "state": "active"}),
    ("PUT", "/v1/admin/sessions/{sid}/min-client-version", {"minClientVersion": "1.0"}),
    ("PUT", "/v1/admin/sessions/{sid}/state", {"state": "closed"}),
    ("GET", "/v1/admin/participants", None),
    ("GET", "/v1/admin/participants/{pid}", None),
    ("GET", "/v1/admin/sessions?state=active&limit=5", None),
    ("GET", "/v1/admin/sessions/{sid}", None),
]


def admin_calls(member: Any) -> list[tuple[str, str, Any]]:
    ids = {"pid": member.participant_id, "sid": member.session_id, "tid": str(uuid.uuid4())}
    return [(m, p.format(**ids), b) for m, p, b in ADMIN_CALLS]


def test_admin_api_refuses_participant_tokens_and_anonymous_callers(
    client: httpx.Client,
    admin_token: str,
    make_member: Callable,
    problem: Problem,
    snapshot: Callable,
) -> None:
    member = make_member()
    before = snapshot(("participants", "participant_tokens", "sessions", "session_memberships"))
    for method, path, body in admin_calls(member):
        problem(call(client, method, path, body, member.auth), 403, "auth.forbidden")
        problem(
            call(client, method, path, body, {"Authorization": f"Bearer {admin_token}x"}),
            403,
            "auth.forbidden",
        )
        anonymous = call(client, method, path, body, {})
        assert_unauthenticated(problem, anonymous)
    after = snapshot(("participants", "participant_tokens", "sessions", "session_memberships"))
    assert after == before, "a refused admin call wrote something"


def test_without_an_admin_token_the_admin_api_is_disabled(
    spawn_server: Callable[[str | None], str],
    admin_token: str,
    make_member: Callable,
    problem: Problem,
) -> None:
    base = spawn_server(None)
    member = make_member()
    with httpx.Client(base_url=base, timeout=30) as c:
        for method, path, body in admin_calls(member):
            for headers in (
                {},
                {"Authorization": f"Bearer {admin_token}"},
                {"Authorization": "Bearer cpt_unknown"},
                member.auth,
            ):
                problem(call(c, method, path, body, headers), 403, "auth.forbidden")
        # Revoke then takes participant tokens only: the old admin token is just unknown.
        revoke = f"/v1/sessions/{member.session_id}/runtime-nodes/{node_id()}/revoke"
        assert_unauthenticated(
            problem, c.post(revoke, headers={"Authorization": f"Bearer {admin_token}"})
        )
        # The participant API is unaffected.
        assert c.get(
            f"/v1/sessions/{member.session_id}/runtime-nodes", headers=member.auth
        ).is_success
