"""The admin read API and the session lifecycle over real HTTP (contract §11).

Paged lists of participants and sessions, one participant with its token metadata, one session
with its members, the forward-only state transition, and the admin token on the roster. The
shared database holds other tests' rows, so every walk starts from a row this test created (an
"anchor") and only rows created after it are asserted on.
"""

from __future__ import annotations

import re
import secrets
import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any

import httpx
import psycopg
import pytest

Problem = Callable[[httpx.Response, int, str], dict[str, Any]]
Member = Any  # tests/conftest.py's Member: participant_id, token, session_id, auth
ADMIN_TABLES = ("participants", "participant_tokens", "sessions", "session_memberships")
RFC3339 = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,6})?(Z|[+-]\d\d:\d\d)$")
ID_KEY = {"/v1/admin/participants": "participantId", "/v1/admin/sessions": "sessionId"}


def timestamp(value: str | None) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def random_node_id() -> str:
    return f"reads-{secrets.token_hex(8)}"


def walk(
    admin: httpx.Client,
    path: str,
    after: str,
    limit: int,
    between: Callable[[int], None] | None = None,
    **query: str,
) -> tuple[list[dict[str, Any]], list[int]]:
    """Every item after `after`, following `next` to the end, and each page's size;
    `between(pages_so_far)` runs after each page that has a next one."""
    id_key = ID_KEY[path]
    items: list[dict[str, Any]] = []
    sizes: list[int] = []
    cursor: str | None = after
    while cursor is not None:
        r = admin.get(path, params={**query, "limit": limit, "after": cursor})
        assert r.status_code == 200, r.text
        assert r.headers["content-type"].startswith("application/json")
        page = r.json()
        assert set(page) == {"items", "next"}
        items += page["items"]
        sizes.append(len(page["items"]))
        cursor = page["next"]
        if cursor is not None:
            assert cursor == page["items"][-1][id_key], "next is the last item's id"
            if between is not None:
                between(len(sizes))
        assert len(sizes) < 1000, "the walk does not end"
    return items, sizes


@contextmanager
def concurrently(create: Callable[[], str]) -> Iterator[list[str]]:
    """Keep calling `create()` in a background thread for the duration of the block; yields the
    live list of what it created."""
    created: list[str] = []
    stop = threading.Event()

    def run() -> None:
        while not stop.is_set():
            created.append(create())

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        yield created
    finally:
        stop.set()
        thread.join(timeout=30)


def create_participants(admin: httpx.Client, n: int, name: str = "reads") -> list[str]:
    ids = []
    for i in range(n):
        r = admin.post("/v1/admin/participants", json={"displayName": f"{name} {i}"})
        assert r.status_code == 201, r.text
        ids.append(r.json()["participantId"])
    return ids


# --- participants ---------------------------------------------------------------------------------


def test_participants_are_listed_in_creation_order_page_by_page(
    admin: httpx.Client, db: psycopg.Connection
) -> None:
    anchor, *mine = create_participants(admin, 8)
    items, sizes = walk(admin, "/v1/admin/participants", anchor, 3)
    assert [i["participantId"] for i in items] == mine
    assert sizes == [3, 3, 1]
    rows = db.execute(
        "SELECT id::text, display_name, created_at FROM control_plane.participants"
        " WHERE id = ANY(%s::uuid[]) ORDER BY created_at, id",
        (mine,),
    ).fetchall()
    assert [(i["participantId"], i["displayName"]) for i in items] == [(r[0], r[1]) for r in rows]
    assert all(set(i) == {"participantId", "displayName", "createdAt"} for i in items)
    assert [datetime.fromisoformat(i["createdAt"]) for i in items] == [r[2] for r in rows]
    # A last page that is exactly full says so: no empty page to fetch.
    assert walk(admin, "/v1/admin/participants", anchor, 7)[1] == [7]


def test_the_first_page_and_the_default_limit(admin: httpx.Client) -> None:
    first = admin.get("/v1/admin/participants")
    assert first.status_code == 200, first.text
    page = first.json()
    assert 1 <= len(page["items"]) <= 100
    if page["next"] is not None:
        assert len(page["items"]) == 100, "a page before the last is full"
    one = admin.get("/v1/admin/participants", params={"limit": 1}).json()
    assert one["items"] == page["items"][:1]


def test_paging_is_stable_while_participants_are_created(
    admin: httpx.Client, server: str, admin_token: str, db: psycopg.Connection
) -> None:
    anchor, *existing = create_participants(admin, 40, "stable")
    # Rows created between pages (always after the cursor in (created_at, id) order) and rows
    # created concurrently by another client while pages are being read.
    between: list[str] = []

    def create_between(pages: int) -> None:
        if pages <= 5:
            between.extend(create_participants(admin, 2, "between"))

    with (
        httpx.Client(base_url=server, timeout=30, headers=bearer(admin_token)) as other,
        concurrently(lambda: create_participants(other, 1, "concurrent")[0]) as concurrent,
    ):
        items, sizes = walk(admin, "/v1/admin/participants", anchor, 3, create_between)
    seen = [i["participantId"] for i in items]
    assert len(seen) == len(set(seen)), "a row was listed twice"
    assert [p for p in seen if p in set(existing)] == existing, "a row that existed was missed"
    assert [p for p in seen if p in set(between)] == between, "a row created meanwhile was missed"
    assert len(between) == 10 and len(concurrent) > 0
    # Everything listed is in (created_at, id) order: no page went back.
    order = db.execute(
        "SELECT id::text FROM control_plane.participants WHERE id = ANY(%s::uuid[])"
        " ORDER BY created_at, id",
        (seen,),
    ).fetchall()
    assert seen == [r[0] for r in order]
    assert all(size <= 3 for size in sizes)


# --- one participant ------------------------------------------------------------------------------


def test_participant_detail_shows_token_metadata_never_the_secret(
    admin: httpx.Client, db: psycopg.Connection
) -> None:
    (pid,) = create_participants(admin, 1, "detail")
    issued = [
        admin.post(f"/v1/admin/participants/{pid}/tokens", json=body).json()
        for body in ({"label": "laptop"}, {"expiresInSeconds": 3600}, {})
    ]
    assert admin.delete(f"/v1/admin/tokens/{issued[2]['tokenId']}").status_code == 204
    r = admin.get(f"/v1/admin/participants/{pid}")
    assert r.status_code == 200, r.text
    body = r.json()
    assert set(body) == {"participantId", "displayName", "createdAt", "tokens"}
    assert (body["participantId"], body["displayName"]) == (pid, "detail 0")
    rows = db.execute(
        "SELECT id::text, label, created_at, expires_at, revoked_at, token_sha256"
        " FROM control_plane.participant_tokens WHERE participant_id = %s ORDER BY created_at, id",
        (pid,),
    ).fetchall()
    assert [
        {
            "tokenId": t["tokenId"],
            "label": t["label"],
            "createdAt": timestamp(t["createdAt"]),
            "expiresAt": timestamp(t["expiresAt"]),
            "revokedAt": timestamp(t["revokedAt"]),
        }
        for t in body["tokens"]
    ] == [
        {
            "tokenId": row[0],
            "label": row[1],
            "createdAt": row[2],
            "expiresAt": row[3],
            "revokedAt": row[4],
        }
        for row in rows
    ]
    assert all(RFC3339.match(t["createdAt"]) for t in body["tokens"])
    assert {t["tokenId"] for t in body["tokens"]} == {t["tokenId"] for t in issued}
    revoked = next(t for t in body["tokens"] if t["tokenId"] == issued[2]["tokenId"])
    assert revoked["revokedAt"] is not None
    for token, row in zip(issued, rows, strict=False):
        assert token["token"] not in r.text and token["token"][4:] not in r.text
        assert bytes(row[5]).hex() not in r.text


def test_participant_without_tokens(admin: httpx.Client) -> None:
    (pid,) = create_participants(admin, 1)
    assert admin.get(f"/v1/admin/participants/{pid}").json()["tokens"] == []


# --- sessions -------------------------------------------------------------------------------------


def test_sessions_are_listed_page_by_page_and_by_state(
    admin: httpx.Client, make_session: Callable[..., str]
) -> None:
    anchor = make_session(state="closed")
    states = ["active", "archived", "provisioning", "archived", "active", "archived", "closed"]
    mine = [make_session(state=s, floor="1.2" if i == 0 else None) for i, s in enumerate(states)]
    items, sizes = walk(admin, "/v1/admin/sessions", anchor, 2)
    assert [i["sessionId"] for i in items] == mine
    assert sizes == [2, 2, 2, 1]
    assert [i["state"] for i in items] == states
    assert items[0]["minClientVersion"] == "1.2" and items[1]["minClientVersion"] is None
    assert all(
        set(i) == {"sessionId", "state", "minClientVersion", "createdAt", "updatedAt"}
        for i in items
    )
    # Filtered by state, from a cursor in another state.
    archived, sizes = walk(admin, "/v1/admin/sessions", anchor, 1, state="archived")
    assert [i["sessionId"] for i in archived] == [
        s for s, st in zip(mine, states, strict=True) if st == "archived"
    ]
    assert sizes == [1, 1, 1]
    assert all(i["state"] == "archived" for i in archived)


def test_paging_sessions_of_a_state_is_stable_while_sessions_are_created(
    admin: httpx.Client, server: str, admin_token: str, make_session: Callable[..., str]
) -> None:
    anchor = make_session(state="archived")
    existing = [make_session(state="archived" if i % 2 else "active") for i in range(30)]
    between: list[str] = []

    def create_between(pages: int) -> None:
        if pages <= 3:
            between.append(make_session(state="archived"))
            make_session(state="closed")  # not listed: another state

    with httpx.Client(base_url=server, timeout=30, headers=bearer(admin_token)) as other:

        def create() -> str:
            r = other.post("/v1/admin/sessions", json={"state": "archived"})
            assert r.status_code == 201, r.text
            return str(r.json()["sessionId"])

        with concurrently(create) as concurrent:
            items, _ = walk(
                admin, "/v1/admin/sessions", anchor, 4, create_between, state="archived"
            )
    seen = [i["sessionId"] for i in items]
    assert len(seen) == len(set(seen)), "a session was listed twice"
    assert [s for s in seen if s in set(existing)] == existing[1::2], "an archived one was missed"
    assert [s for s in seen if s in set(between)] == between
    assert all(i["state"] == "archived" for i in items)
    assert len(concurrent) > 0


def test_session_detail_with_floor_and_members(
    admin: httpx.Client,
    make_session: Callable[..., str],
    make_participant: Callable[..., tuple[str, str]],
    add_member: Callable[..., dict[str, Any]],
    db: psycopg.Connection,
) -> None:
    sid = make_session(floor="2.5")
    (p_owner, _), (p_pending, _), (p_viewer, _) = (make_participant(f"m{i}") for i in range(3))
    add_member(sid, p_owner, role="owner")
    add_member(sid, p_pending, role="collaborator", state="pending")
    add_member(sid, p_viewer, role="viewer", state="suspended")  # never active: no joinedAt
    r = admin.get(f"/v1/admin/sessions/{sid}")
    assert r.status_code == 200, r.text
    body = r.json()
    assert set(body) == {
        "sessionId",
        "state",
        "minClientVersion",
        "createdAt",
        "updatedAt",
        "members",
    }
    assert (body["sessionId"], body["state"], body["minClientVersion"]) == (sid, "active", "2.5")
    members = {m["participantId"]: m for m in body["members"]}
    assert body["members"][0]["participantId"] == p_owner, "active members first (joining order)"
    assert members[p_owner]["role"] == "owner" and members[p_owner]["state"] == "active"
    assert members[p_owner]["displayName"] == "m0"
    joined = db.execute(
        "SELECT joined_at FROM control_plane.session_memberships"
        " WHERE session_id = %s AND participant_id = %s",
        (sid, p_owner),
    ).fetchone()[0]
    assert timestamp(members[p_owner]["joinedAt"]) == joined
    assert members[p_pending]["joinedAt"] is None and members[p_pending]["state"] == "pending"
    assert members[p_viewer]["role"] == "viewer" and members[p_viewer]["state"] == "suspended"
    assert all(
        set(m) == {"participantId", "displayName", "role", "state", "joinedAt", "updatedAt"}
        for m in body["members"]
    )
    assert admin.get(f"/v1/admin/sessions/{make_session()}").json()["members"] == []


# --- the lifecycle --------------------------------------------------------------------------------


def put_state(admin: httpx.Client, sid: str, state: Any) -> httpx.Response:
    return admin.put(f"/v1/admin/sessions/{sid}/state", json={"state": state})


def test_session_state_moves_forward_only(
    admin: httpx.Client,
    make_session: Callable[..., str],
    problem: Problem,
    scoped_snapshot: Callable[..., str],
) -> None:
    sid = make_session(state="provisioning", floor="1.0")
    r = put_state(admin, sid, "active")
    assert r.status_code == 200, r.text
    assert r.json() == {"sessionId": sid, "state": "active", "minClientVersion": "1.0"}
    before = admin.get(f"/v1/admin/sessions/{sid}").json()
    same = put_state(admin, sid, "active")
    assert same.status_code == 200 and same.json()["state"] == "active"
    assert admin.get(f"/v1/admin/sessions/{sid}").json() == before, "the same state is a no-op"
    assert put_state(admin, sid, "closed").json()["state"] == "closed", "skipping archived"
    snap = scoped_snapshot(session_ids=[sid])
    for backwards in ("archived", "active", "provisioning"):
        body = problem(put_state(admin, sid, backwards), 409, "session.state_transition_forbidden")
        assert f"closed → {backwards}" in body["detail"]
    assert scoped_snapshot(session_ids=[sid]) == snap, "a refused transition wrote something"
    assert put_state(admin, sid, "closed").status_code == 200


@pytest.mark.parametrize(
    "body",
    [
        {"state": "open"},
        {"state": "ACTIVE"},
        {"state": None},
        {"state": 1},
        {},
        {"state": "closed", "extra": 1},
        [],
    ],
)
def test_bad_state_bodies_are_400_and_write_nothing(
    admin: httpx.Client,
    make_session: Callable[..., str],
    problem: Problem,
    scoped_snapshot: Callable[..., str],
    body: Any,
) -> None:
    sid = make_session(state="provisioning")
    snap = scoped_snapshot(session_ids=[sid])
    problem(admin.put(f"/v1/admin/sessions/{sid}/state", json=body), 400, "request.invalid")
    assert scoped_snapshot(session_ids=[sid]) == snap


def test_only_attach_looks_at_the_session_state(
    admin: httpx.Client,
    client: httpx.Client,
    make_member: Callable[..., Member],
    problem: Problem,
) -> None:
    member = make_member(role="runtime_contributor")
    node = random_node_id()
    attach = {
        "participantId": member.participant_id,
        "nodeId": node,
        "clientVersion": "1.0",
        "capabilities": {},
        "healthState": "online",
    }
    url = f"/v1/sessions/{member.session_id}/runtime-nodes"
    assert client.post(url, json=attach, headers=member.auth).status_code == 200
    assert put_state(admin, member.session_id, "archived").status_code == 200
    # The attached node carries on; a new attach is refused.
    declared = client.post(
        f"/v1/runtime-nodes/{node}/declaration",
        json={"capabilities": {"a": 1}},
        headers=member.auth,
    )
    assert declared.status_code == 200 and declared.json()["state"] == "online"
    problem(
        client.post(url, json={**attach, "nodeId": random_node_id()}, headers=member.auth),
        409,
        "session.not_active",
    )


# --- the admin token on the roster ----------------------------------------------------------------


def test_the_admin_reads_any_sessions_roster(
    admin: httpx.Client,
    client: httpx.Client,
    make_member: Callable[..., Member],
    problem: Problem,
) -> None:
    member = make_member(role="runtime_contributor", floor="2.0")
    outsider = make_member()  # a member of another session
    node = random_node_id()
    url = f"/v1/sessions/{member.session_id}/runtime-nodes"
    attached = client.post(
        url,
        json={
            "participantId": member.participant_id,
            "nodeId": node,
            "clientVersion": "1.5",
            "capabilities": {"gpu": True},
            "healthState": "online",
        },
        headers=member.auth,
    )
    assert attached.status_code == 200, attached.text
    as_admin = admin.get(url)
    assert as_admin.status_code == 200, as_admin.text
    assert as_admin.json() == client.get(url, headers=member.auth).json()
    assert [(n["nodeId"], n["readOnly"]) for n in as_admin.json()["nodes"]] == [(node, True)]
    # A participant of another session still gets the uniform 403.
    problem(client.get(url, headers=outsider.auth), 403, "runtimenode.permission_denied")
    # The admin may know that a session does not exist.
    problem(admin.get(f"/v1/sessions/{uuid.uuid4()}/runtime-nodes"), 404, "not_found")


# --- refusals -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    [
        "/v1/admin/participants/{uuid}",
        "/v1/admin/sessions/{uuid}",
    ],
)
def test_unknown_ids_are_404(admin: httpx.Client, problem: Problem, path: str) -> None:
    problem(admin.get(path.format(uuid=uuid.uuid4())), 404, "not_found")
    problem(admin.get(path.format(uuid=str(uuid.uuid4()).upper())), 404, "not_found")


def test_unknown_session_state_change_is_404(admin: httpx.Client, problem: Problem) -> None:
    problem(put_state(admin, str(uuid.uuid4()), "closed"), 404, "not_found")


@pytest.mark.parametrize(
    "path",
    [
        "/v1/admin/participants/not-a-uuid",
        "/v1/admin/sessions/123",
        "/v1/admin/participants/{" + str(uuid.uuid4()) + "}",
        "/v1/admin/sessions/" + uuid.uuid4().hex,
    ],
)
def test_malformed_ids_are_400(admin: httpx.Client, problem: Problem, path: str) -> None:
    problem(admin.get(path), 400, "request.invalid")


@pytest.mark.parametrize(
    ("path", "query"),
    [
        ("/v1/admin/participants", "limit=0"),
        ("/v1/admin/participants", "limit=1001"),
        ("/v1/admin/participants", "limit=-1"),
        ("/v1/admin/participants", "limit=abc"),
        ("/v1/admin/participants", "limit=1.5"),
        ("/v1/admin/participants", "limit="),
        ("/v1/admin/participants", "limit=99999999999999999999"),
        ("/v1/admin/participants", "limit=" + "9" * 5000),
        ("/v1/admin/participants", "after=not-a-uuid"),
        ("/v1/admin/participants", "after="),
        ("/v1/admin/participants", f"after={uuid.uuid4()}"),  # no such participant
        ("/v1/admin/participants", "limt=5"),
        ("/v1/admin/participants", "state=active"),  # participants have no state
        ("/v1/admin/participants", "limit=5&limit=6"),
        ("/v1/admin/sessions", "state=open"),
        ("/v1/admin/sessions", "state="),
        ("/v1/admin/sessions", "state=%00"),
        ("/v1/admin/sessions", "state=active&state=closed"),
        ("/v1/admin/sessions", "limit=0&state=active"),
        ("/v1/admin/sessions", f"after={uuid.uuid4()}"),
        ("/v1/admin/sessions", "after=%00"),
        ("/v1/admin/sessions", "sort=created_at"),
    ],
)
def test_bad_list_parameters_are_400_and_write_nothing(
    admin: httpx.Client,
    problem: Problem,
    snapshot: Callable[..., str],
    path: str,
    query: str,
) -> None:
    before = snapshot(ADMIN_TABLES)
    problem(admin.get(f"{path}?{query}"), 400, "request.invalid")
    assert snapshot(ADMIN_TABLES) == before


def test_a_participant_session_id_is_no_cursor(
    admin: httpx.Client, make_session: Callable[..., str], problem: Problem
) -> None:
    (pid,) = create_participants(admin, 1)
    problem(admin.get("/v1/admin/sessions", params={"after": pid}), 400, "request.invalid")
    problem(
        admin.get("/v1/admin/participants", params={"after": make_session()}),
        400,
        "request.invalid",
    )


def test_participant_tokens_are_refused_on_admin_reads(
    client: httpx.Client, make_member: Callable[..., Member], problem: Problem
) -> None:
    member = make_member()
    for path in (
        "/v1/admin/participants",
        f"/v1/admin/participants/{member.participant_id}",
        "/v1/admin/sessions?state=active",
        f"/v1/admin/sessions/{member.session_id}",
        # Even a malformed query is refused as forbidden, before it is looked at.
        "/v1/admin/sessions?limit=0&bogus=1",
        "/v1/admin/participants?limit=1&limit=2&after=x",
    ):
        problem(client.get(path, headers=member.auth), 403, "auth.forbidden")
    problem(
        client.put(
            f"/v1/admin/sessions/{member.session_id}/state",
            json={"state": "closed"},
            headers=member.auth,
        ),
        403,
        "auth.forbidden",
    )


def test_the_admin_surface_runs_as_the_admin_role(
    admin: httpx.Client, db: psycopg.Connection
) -> None:
    assert admin.get("/v1/admin/participants", params={"limit": 1}).status_code == 200
    # The pools keep their connections open (idle) for a while after the call.
    logins = db.execute(
        "SELECT DISTINCT application_name, usename::text FROM pg_stat_activity"
        " WHERE application_name IN ('control-plane-admin', 'control-plane-api')"
        " AND datname = current_database()"
    ).fetchall()
    assert ("control-plane-admin", "control_plane_admin") in logins
    assert ("control-plane-admin", "control_plane_api") not in logins
    assert ("control-plane-api", "control_plane_admin") not in logins


def test_the_list_parameters_are_documented(client: httpx.Client) -> None:
    paths = client.get("/schema/openapi.json").json()["paths"]
    for path, names in (
        ("/v1/admin/participants", {"limit", "after"}),
        ("/v1/admin/sessions", {"state", "limit", "after"}),
    ):
        params = paths[path]["get"]["parameters"]
        assert {p["name"] for p in params if p["in"] == "query"} == names
        assert all(p.get("description") for p in params)
