"""Admin API over real HTTP (contract §6.8): bodies, ids, tokens, sessions, memberships, floor."""

from __future__ import annotations

import hashlib
import re
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import httpx
import psycopg
import pytest

UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
TOKEN_RE = re.compile(r"^cpt_[A-Za-z0-9_-]{43}$")
RFC3339 = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,6})?(Z|[+-]\d\d:\d\d)$")

Problem = Callable[[httpx.Response, int, str], dict[str, Any]]


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def roster(client: httpx.Client, session_id: str, token: str) -> httpx.Response:
    return client.get(f"/v1/sessions/{session_id}/runtime-nodes", headers=bearer(token))


# --- participants and tokens ---------------------------------------------------------------------


def test_create_participant(admin: httpx.Client, db: psycopg.Connection) -> None:
    r = admin.post("/v1/admin/participants", json={})
    assert r.status_code == 201
    assert r.headers["content-type"].startswith("application/json")
    body = r.json()
    assert set(body) == {"participantId"}
    assert UUID_RE.match(body["participantId"])
    row = db.execute(
        "SELECT display_name FROM control_plane.participants WHERE id = %s",
        (body["participantId"],),
    ).fetchone()
    assert row == (None,)

    named = admin.post("/v1/admin/participants", json={"displayName": "Ann Örnberg"})
    assert named.status_code == 201
    assert db.execute(
        "SELECT display_name FROM control_plane.participants WHERE id = %s",
        (named.json()["participantId"],),
    ).fetchone() == ("Ann Örnberg",)


def test_create_participant_without_a_body(admin: httpx.Client) -> None:
    r = admin.post("/v1/admin/participants")
    assert r.status_code == 201, r.text
    assert UUID_RE.match(r.json()["participantId"])


def test_issue_token_is_shown_once_and_only_its_digest_is_stored(
    admin: httpx.Client, db: psycopg.Connection, client: httpx.Client, make_member: Callable
) -> None:
    member = make_member()
    r = admin.post(f"/v1/admin/participants/{member.participant_id}/tokens", json={})
    assert r.status_code == 201
    body = r.json()
    assert set(body) == {"tokenId", "token", "expiresAt"}
    assert UUID_RE.match(body["tokenId"])
    assert TOKEN_RE.match(body["token"]), body["token"]
    assert body["expiresAt"] is None
    stored = db.execute(
        "SELECT participant_id::text, token_sha256, t::text FROM control_plane.participant_tokens t"
        " WHERE id = %s",
        (body["tokenId"],),
    ).fetchone()
    assert stored[0] == member.participant_id
    assert bytes(stored[1]) == hashlib.sha256(body["token"].encode()).digest()
    assert body["token"][4:] not in stored[2], "the secret must not be stored"
    # It works as a bearer at once; a second token of the same participant works too.
    assert roster(client, member.session_id, body["token"]).status_code == 200
    assert roster(client, member.session_id, member.token).status_code == 200


def test_issue_token_with_label_and_expiry(
    admin: httpx.Client, db: psycopg.Connection, make_participant: Callable
) -> None:
    pid, _ = make_participant()
    r = admin.post(
        f"/v1/admin/participants/{pid}/tokens", json={"label": "laptop", "expiresInSeconds": 3600}
    )
    assert r.status_code == 201, r.text
    body = r.json()
    assert RFC3339.match(body["expiresAt"]), body["expiresAt"]
    label, created_at, expires_at = db.execute(
        "SELECT label, created_at, expires_at FROM control_plane.participant_tokens WHERE id = %s",
        (body["tokenId"],),
    ).fetchone()
    assert label == "laptop"
    assert expires_at - created_at == timedelta(seconds=3600)
    assert datetime.fromisoformat(body["expiresAt"]) == expires_at


@pytest.mark.parametrize("expires", [0, -1, 1.5, "60", True, 2**31])
def test_issue_token_refuses_bad_expiry(
    admin: httpx.Client, make_participant: Callable, problem: Problem, expires: Any
) -> None:
    pid, _ = make_participant()
    problem(
        admin.post(f"/v1/admin/participants/{pid}/tokens", json={"expiresInSeconds": expires}),
        400,
        "request.invalid",
    )


def test_revoked_token_stops_working_on_the_very_next_request(
    admin: httpx.Client, client: httpx.Client, make_member: Callable, problem: Problem
) -> None:
    member = make_member()
    issued = admin.post(f"/v1/admin/participants/{member.participant_id}/tokens", json={}).json()
    assert roster(client, member.session_id, issued["token"]).status_code == 200
    r = admin.delete(f"/v1/admin/tokens/{issued['tokenId']}")
    assert r.status_code == 204
    assert r.content == b""
    refused = roster(client, member.session_id, issued["token"])
    problem(refused, 401, "auth.unauthenticated")
    assert refused.headers["www-authenticate"] == "Bearer"
    # Only that token: the participant's other token still works.
    assert roster(client, member.session_id, member.token).status_code == 200
    # Revoking again is harmless.
    assert admin.delete(f"/v1/admin/tokens/{issued['tokenId']}").status_code == 204


# --- sessions and memberships ------------------------------------------------------------------


def test_create_session_defaults(admin: httpx.Client, db: psycopg.Connection) -> None:
    r = admin.post("/v1/admin/sessions", json={})
    assert r.status_code == 201
    body = r.json()
    assert set(body) == {"sessionId", "state", "minClientVersion"}
    assert UUID_RE.match(body["sessionId"])
    assert body["state"] == "active" and body["minClientVersion"] is None
    assert db.execute(
        "SELECT state, min_client_version FROM control_plane.sessions WHERE id = %s",
        (body["sessionId"],),
    ).fetchone() == ("active", None)
    assert admin.post("/v1/admin/sessions").status_code == 201  # no body at all


@pytest.mark.parametrize("state", ["provisioning", "active", "archived", "closed"])
def test_create_session_with_floor_and_state(admin: httpx.Client, state: str) -> None:
    r = admin.post("/v1/admin/sessions", json={"minClientVersion": "1.10", "state": state})
    assert r.status_code == 201
    assert r.json()["state"] == state
    assert r.json()["minClientVersion"] == "1.10"


@pytest.mark.parametrize(
    "body",
    [{"state": "open"}, {"state": None}, {"minClientVersion": "1.0.0"}, {"minClientVersion": 1}],
)
def test_create_session_refuses_bad_input(
    admin: httpx.Client, problem: Problem, body: dict[str, Any]
) -> None:
    problem(admin.post("/v1/admin/sessions", json=body), 400, "request.invalid")


def test_membership_upsert_keeps_the_first_joined_at(
    admin: httpx.Client,
    db: psycopg.Connection,
    make_session: Callable,
    make_participant: Callable,
) -> None:
    sid, (pid, _) = make_session(), make_participant()
    url = f"/v1/admin/sessions/{sid}/members/{pid}"
    pending = admin.put(url, json={"role": "viewer", "state": "pending"})
    assert pending.status_code == 200
    assert pending.json() == {
        "sessionId": sid,
        "participantId": pid,
        "role": "viewer",
        "state": "pending",
        "joinedAt": None,
    }
    active = admin.put(url, json={"role": "collaborator", "state": "active"}).json()
    assert active["role"] == "collaborator" and active["state"] == "active"
    assert RFC3339.match(active["joinedAt"])
    suspended = admin.put(url, json={"role": "owner", "state": "suspended"}).json()
    again = admin.put(url, json={"role": "runtime_contributor", "state": "active"}).json()
    assert suspended["joinedAt"] == active["joinedAt"] == again["joinedAt"]
    rows = db.execute(
        "SELECT role, state FROM control_plane.session_memberships"
        " WHERE session_id = %s AND participant_id = %s",
        (sid, pid),
    ).fetchall()
    assert rows == [("runtime_contributor", "active")]


def test_membership_in_any_session_state(
    admin: httpx.Client, make_session: Callable, make_participant: Callable
) -> None:
    for state in ("provisioning", "archived", "closed"):
        sid, (pid, _) = make_session(state=state), make_participant()
        r = admin.put(
            f"/v1/admin/sessions/{sid}/members/{pid}", json={"role": "owner", "state": "active"}
        )
        assert r.status_code == 200, r.text


@pytest.mark.parametrize(
    "body",
    [
        {"role": "admin", "state": "active"},
        {"role": "owner", "state": "invited"},
        {"role": "owner"},
        {"state": "active"},
        {"role": "owner", "state": "active", "extra": 1},
    ],
)
def test_membership_refuses_bad_input(
    admin: httpx.Client,
    make_session: Callable,
    make_participant: Callable,
    problem: Problem,
    body: dict[str, Any],
) -> None:
    sid, (pid, _) = make_session(), make_participant()
    problem(admin.put(f"/v1/admin/sessions/{sid}/members/{pid}", json=body), 400, "request.invalid")


# --- the raise-only floor ----------------------------------------------------------------------


def test_floor_may_only_be_raised(
    admin: httpx.Client, db: psycopg.Connection, make_session: Callable, problem: Problem
) -> None:
    sid = make_session()
    url = f"/v1/admin/sessions/{sid}/min-client-version"

    def floor_row() -> tuple[Any, ...]:
        return db.execute(
            "SELECT min_client_version, updated_at FROM control_plane.sessions WHERE id = %s",
            (sid,),
        ).fetchone()

    first = admin.put(url, json={"minClientVersion": "1.9"})
    assert first.status_code == 200
    assert first.json() == {"sessionId": sid, "minClientVersion": "1.9"}
    raised = admin.put(url, json={"minClientVersion": "1.10"})  # numerically higher
    assert raised.status_code == 200 and raised.json()["minClientVersion"] == "1.10"
    before = floor_row()
    same = admin.put(url, json={"minClientVersion": "1.10"})
    assert same.status_code == 200 and same.json() == {"sessionId": sid, "minClientVersion": "1.10"}
    assert floor_row() == before, "the same value is a no-op (row not rewritten)"
    lowered = admin.put(url, json={"minClientVersion": "1.9"})
    problem(lowered, 409, "session.floor_lowering_forbidden")
    cleared = admin.put(url, json={"minClientVersion": None})
    problem(cleared, 409, "session.floor_lowering_forbidden")
    assert floor_row() == before
    assert admin.put(url, json={"minClientVersion": "10.0"}).json()["minClientVersion"] == "10.0"
    problem(
        admin.put(url, json={"minClientVersion": "9.99"}), 409, "session.floor_lowering_forbidden"
    )


@pytest.mark.parametrize("body", [{}, {"minClientVersion": "1"}, {"minClientVersion": "v2.0"}])
def test_floor_refuses_bad_input(
    admin: httpx.Client, make_session: Callable, problem: Problem, body: dict[str, Any]
) -> None:
    sid = make_session()
    r = admin.put(f"/v1/admin/sessions/{sid}/min-client-version", json=body)
    problem(r, 400, "request.invalid")


# --- ids: unknown → 404, malformed → 400, any case accepted -------------------------------------


def test_unknown_ids_are_404_not_found(
    admin: httpx.Client, make_session: Callable, make_participant: Callable, problem: Problem
) -> None:
    sid, (pid, _) = make_session(), make_participant()
    unknown = str(uuid.uuid4())
    member = {"role": "owner", "state": "active"}
    for r in (
        admin.post(f"/v1/admin/participants/{unknown}/tokens", json={}),
        admin.delete(f"/v1/admin/tokens/{unknown}"),
        admin.put(f"/v1/admin/sessions/{unknown}/members/{pid}", json=member),
        admin.put(f"/v1/admin/sessions/{sid}/members/{unknown}", json=member),
        admin.put(
            f"/v1/admin/sessions/{unknown}/min-client-version", json={"minClientVersion": "1.0"}
        ),
    ):
        problem(r, 404, "not_found")


@pytest.mark.parametrize(
    "bad", ["not-a-uuid", "12345", "0000000-0000-0000-0000-000000000000", "{" + "0" * 32 + "}"]
)
def test_malformed_path_uuids_are_400(admin: httpx.Client, problem: Problem, bad: str) -> None:
    member = {"role": "owner", "state": "active"}
    ok_id = str(uuid.uuid4())
    for r in (
        admin.post(f"/v1/admin/participants/{bad}/tokens", json={}),
        admin.delete(f"/v1/admin/tokens/{bad}"),
        admin.put(f"/v1/admin/sessions/{bad}/members/{ok_id}", json=member),
        admin.put(f"/v1/admin/sessions/{ok_id}/members/{bad}", json=member),
        admin.put(f"/v1/admin/sessions/{bad}/min-client-version", json={"minClientVersion": "1.0"}),
    ):
        problem(r, 400, "request.invalid")


def test_uuids_in_any_case_are_accepted_and_answered_in_lower_case(
    admin: httpx.Client, make_session: Callable, make_participant: Callable
) -> None:
    sid, (pid, _) = make_session(), make_participant()
    r = admin.put(
        f"/v1/admin/sessions/{sid.upper()}/members/{pid.upper()}",
        json={"role": "owner", "state": "active"},
    )
    assert r.status_code == 200, r.text
    assert r.json()["sessionId"] == sid and r.json()["participantId"] == pid
    t = admin.post(f"/v1/admin/participants/{pid.upper()}/tokens", json={})
    assert t.status_code == 201
    assert admin.delete(f"/v1/admin/tokens/{t.json()['tokenId'].upper()}").status_code == 204
    f = admin.put(
        f"/v1/admin/sessions/{sid.upper()}/min-client-version", json={"minClientVersion": "2.0"}
    )
    assert f.status_code == 200 and f.json()["sessionId"] == sid
