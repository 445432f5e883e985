"""Runtime-node API end to end over real HTTP (contract §4, §5, §6.1–6.7): status, code, body and
the effect in the database of every operation."""

from __future__ import annotations

import re
import secrets
import threading
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import httpx
import psycopg
import pytest

Problem = Callable[[httpx.Response, int, str], dict[str, Any]]
RFC3339 = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,6})?(Z|[+-]\d\d:\d\d)$")
# contract §10: attach, declaration and capability-update results advertise the timing.
TIMING_KEYS = {"heartbeatIntervalSeconds", "degradedAfterSeconds", "offlineAfterSeconds"}
ATTACH_KEYS = {
    "attachmentId",
    "sessionId",
    "nodeId",
    "participantId",
    "state",
    "readOnly",
    "clientVersion",
    "attachedAt",
    *TIMING_KEYS,
}
ROSTER_KEYS = {
    "attachmentId",
    "nodeId",
    "participantId",
    "state",
    "healthState",
    "lastHeartbeatAt",
    "readOnly",
    "capabilities",
    "clientVersion",
    "attachedAt",
}


def new_node_id() -> str:
    return f"rn-{secrets.token_hex(8)}"


@dataclass
class Daemon:
    """One participant's daemon talking to the real server about one node."""

    client: httpx.Client
    participant_id: str
    token: str
    session_id: str
    node_id: str = field(default_factory=new_node_id)

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    def attach(
        self,
        session_id: str | None = None,
        version: str = "1.0",
        capabilities: dict[str, Any] | None = None,
        node_id: str | None = None,
        participant_id: str | None = None,
    ) -> httpx.Response:
        return self.client.post(
            f"/v1/sessions/{session_id or self.session_id}/runtime-nodes",
            json={
                "participantId": participant_id or self.participant_id,
                "nodeId": node_id or self.node_id,
                "clientVersion": version,
                "capabilities": {} if capabilities is None else capabilities,
                "healthState": "online",
            },
            headers=self.auth,
        )

    def declare(self, capabilities: dict[str, Any], node_id: str | None = None) -> httpx.Response:
        return self.client.post(
            f"/v1/runtime-nodes/{node_id or self.node_id}/declaration",
            json={"capabilities": capabilities},
            headers=self.auth,
        )

    def update(
        self,
        capabilities: dict[str, Any],
        state: str | None = None,
        reason: str | None = None,
        node_id: str | None = None,
    ) -> httpx.Response:
        body: dict[str, Any] = {"capabilities": capabilities}
        if state is not None:
            body["healthChanges"] = {"state": state, **({"reason": reason} if reason else {})}
        return self.client.put(
            f"/v1/runtime-nodes/{node_id or self.node_id}/capabilities",
            json=body,
            headers=self.auth,
        )

    def beat(self, health: str = "online", node_id: str | None = None) -> httpx.Response:
        return self.client.post(
            f"/v1/runtime-nodes/{node_id or self.node_id}/heartbeat",
            json={"healthState": health},
            headers=self.auth,
        )

    def detach(self, node_id: str | None = None, reason: str | None = None) -> httpx.Response:
        kwargs: dict[str, Any] = {"json": {"reason": reason}} if reason else {}
        return self.client.post(
            f"/v1/runtime-nodes/{node_id or self.node_id}/detach", headers=self.auth, **kwargs
        )

    def roster(self, session_id: str | None = None) -> httpx.Response:
        return self.client.get(
            f"/v1/sessions/{session_id or self.session_id}/runtime-nodes", headers=self.auth
        )

    def revoke(self, node_id: str | None = None, session_id: str | None = None) -> httpx.Response:
        return self.client.post(
            f"/v1/sessions/{session_id or self.session_id}/runtime-nodes/"
            f"{node_id or self.node_id}/revoke",
            headers=self.auth,
        )


@pytest.fixture
def daemon(client: httpx.Client, make_member: Callable) -> Callable[..., Daemon]:
    """`daemon(session_id=None, role="owner", state="active", floor=None)` → a Daemon whose
    participant is a member of that (or a new) session."""

    def make(
        session_id: str | None = None,
        role: str = "owner",
        state: str = "active",
        floor: str | None = None,
    ) -> Daemon:
        m = make_member(session_id=session_id, role=role, state=state, floor=floor)
        return Daemon(client, m.participant_id, m.token, m.session_id)

    return make


def slot(db: psycopg.Connection, node_id: str, session_id: str) -> dict[str, Any] | None:
    cur = db.execute(
        "SELECT id::text, participant_id::text, state, capabilities, client_version, attached_at,"
        " updated_at FROM control_plane.runtime_node_attachments"
        " WHERE node_id = %s AND session_id = %s",
        (node_id, session_id),
    )
    row = cur.fetchone()
    if row is None:
        return None
    return dict(zip([c.name for c in cur.description], row, strict=True))


def presence(db: psycopg.Connection, node_id: str) -> tuple[str, datetime] | None:
    return db.execute(
        "SELECT health_state, last_heartbeat_at FROM control_plane.runtime_node_presence"
        " WHERE node_id = %s",
        (node_id,),
    ).fetchone()


def db_now(db: psycopg.Connection) -> datetime:
    return db.execute("SELECT now()").fetchone()[0]


# --- a daemon's whole life ---------------------------------------------------------------------


def test_daemon_lifecycle(daemon: Callable[..., Daemon], db: psycopg.Connection) -> None:
    d = daemon(role="runtime_contributor")
    owner = daemon(session_id=d.session_id, role="owner")

    # Attach: a fresh slot is registering whatever health the daemon reports.
    r = d.attach(version="1.4", capabilities={"python": "3.11", "gpu": False})
    assert r.status_code == 200, r.text
    att = r.json()
    assert set(att) == ATTACH_KEYS
    assert att["sessionId"] == d.session_id and att["nodeId"] == d.node_id
    assert att["participantId"] == d.participant_id
    assert att["state"] == "registering" and att["readOnly"] is False
    assert att["clientVersion"] == "1.4"
    assert RFC3339.match(att["attachedAt"])
    row = slot(db, d.node_id, d.session_id)
    assert row is not None
    assert row["id"] == att["attachmentId"] and row["participant_id"] == d.participant_id
    assert row["state"] == "registering"
    assert row["capabilities"] == {"python": "3.11", "gpu": False}
    assert row["client_version"] == "1.4"
    assert datetime.fromisoformat(att["attachedAt"]) == row["attached_at"]  # microseconds kept
    assert presence(db, d.node_id) is None, "attach never writes presence"

    # Declaration: the only way online.
    r = d.declare({"python": "3.12", "gpu": True})
    assert r.status_code == 200, r.text
    assert set(r.json()) == {"nodeId", "state", "updatedAt", *TIMING_KEYS}
    assert r.json()["nodeId"] == d.node_id and r.json()["state"] == "online"
    row = slot(db, d.node_id, d.session_id)
    assert row["state"] == "online" and row["capabilities"] == {"python": "3.12", "gpu": True}
    assert datetime.fromisoformat(r.json()["updatedAt"]) == row["updated_at"]

    # Heartbeat: presence on the database clock.
    before_beat = db_now(db)
    r = d.beat("online")
    assert r.status_code == 204 and r.content == b""
    health, beat_at = presence(db, d.node_id)
    assert health == "online" and before_beat <= beat_at <= db_now(db)
    assert d.beat("degraded").status_code == 204
    assert presence(db, d.node_id)[0] == "degraded"
    assert slot(db, d.node_id, d.session_id)["state"] == "online", "a beat never moves the slot"

    # Capability update: full replacement, optional health change.
    r = d.update({"python": "3.12"}, state="degraded", reason="disk almost full")
    assert r.status_code == 200, r.text
    assert r.json()["state"] == "degraded"
    row = slot(db, d.node_id, d.session_id)
    assert row["state"] == "degraded" and row["capabilities"] == {"python": "3.12"}
    r = d.update({"python": "3.12", "disk": "ok"})  # no healthChanges: state unchanged
    assert r.status_code == 200 and r.json()["state"] == "degraded"
    r = d.client.put(
        f"/v1/runtime-nodes/{d.node_id}/capabilities",
        json={"capabilities": {"python": "3.12"}, "healthChanges": None},
        headers=d.auth,
    )
    assert r.status_code == 200 and r.json()["state"] == "degraded", "null means absent"
    r = d.update({"python": "3.12"}, state="online")
    assert r.status_code == 200 and r.json()["state"] == "online"

    # Roster, read by another member.
    r = owner.roster()
    assert r.status_code == 200
    (node,) = [n for n in r.json()["nodes"] if n["nodeId"] == d.node_id]
    assert set(node) == ROSTER_KEYS
    assert node["attachmentId"] == att["attachmentId"] and node["state"] == "online"
    assert node["healthState"] == "degraded" and node["capabilities"] == {"python": "3.12"}
    assert datetime.fromisoformat(node["lastHeartbeatAt"]) == presence(db, d.node_id)[1]
    assert node["readOnly"] is False and node["clientVersion"] == "1.4"
    assert node["attachedAt"] == att["attachedAt"]

    # Detach: slot and presence offline, heartbeat time untouched.
    beat_at = presence(db, d.node_id)[1]
    r = d.detach(reason="shutting down")
    assert r.status_code == 204
    assert slot(db, d.node_id, d.session_id)["state"] == "offline"
    assert presence(db, d.node_id) == ("offline", beat_at)
    assert d.detach().status_code == 204  # idempotent

    # Re-attach: same slot (id, attachedAt), registering, capabilities and version replaced.
    r = d.attach(version="1.5", capabilities={"python": "3.13"})
    assert r.status_code == 200, r.text
    again = r.json()
    assert again["attachmentId"] == att["attachmentId"]
    assert again["attachedAt"] == att["attachedAt"]
    assert again["state"] == "registering" and again["clientVersion"] == "1.5"
    row = slot(db, d.node_id, d.session_id)
    assert row["capabilities"] == {"python": "3.13"} and row["client_version"] == "1.5"

    # Revoke by the session owner: terminal.
    r = owner.revoke(node_id=d.node_id)
    assert r.status_code == 204, r.text
    assert slot(db, d.node_id, d.session_id)["state"] == "revoked"
    assert presence(db, d.node_id)[0] == "offline"
    assert owner.revoke(node_id=d.node_id).status_code == 204  # already revoked: no-op
    r = d.attach()
    assert r.status_code == 409 and r.json()["code"] == "runtimenode.attach_revoked"
    assert d.declare({"a": 1}).status_code == 403
    assert d.beat().status_code == 403
    assert d.detach().status_code == 204
    assert slot(db, d.node_id, d.session_id)["state"] == "revoked", "detach never flips revoked"
    (node,) = [n for n in owner.roster().json()["nodes"] if n["nodeId"] == d.node_id]
    assert node["state"] == "revoked"


def test_reasons_are_stored_and_timing_is_advertised(
    daemon: Callable[..., Daemon], db: psycopg.Connection
) -> None:
    """contract §9: detach, revoke and healthChanges reasons reach the events; §10: timings."""
    d = daemon()
    owner = daemon(session_id=d.session_id, role="owner")
    r = d.attach()
    timing = db.execute(
        "SELECT extract(epoch FROM heartbeat_interval)::float, extract(epoch FROM degraded_after)"
        "::float, extract(epoch FROM offline_after)::float FROM control_plane.settings"
    ).fetchone()
    advertised = (
        r.json()["heartbeatIntervalSeconds"],
        r.json()["degradedAfterSeconds"],
        r.json()["offlineAfterSeconds"],
    )
    assert advertised == timing
    assert d.declare({"a": 1}).json()["heartbeatIntervalSeconds"] == timing[0]
    assert d.update({"a": 1}, state="degraded", reason="disk full").status_code == 200
    assert d.detach(reason="shutting down").status_code == 204
    assert d.attach().status_code == 200
    r = owner.client.post(
        f"/v1/sessions/{d.session_id}/runtime-nodes/{d.node_id}/revoke",
        json={"reason": "compromised"},
        headers=owner.auth,
    )
    assert r.status_code == 204, r.text
    rows = db.execute(
        "SELECT kind, reason, actor FROM control_plane.runtime_node_events"
        " WHERE node_id = %s AND reason IS NOT NULL ORDER BY id",
        (d.node_id,),
    ).fetchall()
    assert rows == [
        ("state_changed", "disk full", "daemon"),
        ("detached", "shutting down", "daemon"),
        ("revoked", "compromised", "owner"),
    ]


def test_attach_again_while_active_re_handshakes(
    daemon: Callable[..., Daemon], db: psycopg.Connection
) -> None:
    d = daemon()
    first = d.attach(capabilities={"a": 1}).json()
    assert d.declare({"a": 1}).json()["state"] == "online"
    r = d.attach(capabilities={"b": 2}, version="2.0")
    assert r.status_code == 200
    assert r.json()["attachmentId"] == first["attachmentId"]
    assert r.json()["attachedAt"] == first["attachedAt"]
    assert r.json()["state"] == "registering"
    row = slot(db, d.node_id, d.session_id)
    assert row["state"] == "registering" and row["capabilities"] == {"b": 2}


def test_attach_accepts_uuids_in_any_case(daemon: Callable[..., Daemon]) -> None:
    d = daemon()
    r = d.attach(session_id=d.session_id.upper(), participant_id=d.participant_id.upper())
    assert r.status_code == 200, r.text
    assert r.json()["sessionId"] == d.session_id
    assert r.json()["participantId"] == d.participant_id


def test_attach_never_writes_sessions_or_memberships(
    daemon: Callable[..., Daemon], scoped_snapshot: Callable[..., str]
) -> None:
    d = daemon()
    before = scoped_snapshot(session_ids=[d.session_id], participant_ids=[d.participant_id])
    assert d.attach().status_code == 200
    after = scoped_snapshot(session_ids=[d.session_id], participant_ids=[d.participant_id])
    # Only the attachments part may differ.
    keep = ("participants", "participant_tokens", "sessions", "session_memberships")

    def pick(fingerprint: str) -> list[str]:
        return [p for p in fingerprint.split(";") if p.split(":")[0] in keep]

    assert pick(after) == pick(before)


# --- slot transitions ----------------------------------------------------------------------------


def test_only_a_declaration_brings_a_registering_node_online(
    daemon: Callable[..., Daemon], db: psycopg.Connection, problem: Problem
) -> None:
    d = daemon()
    assert d.attach(capabilities={"a": 1}).status_code == 200
    before = slot(db, d.node_id, d.session_id)
    problem(d.update({"a": 2}, state="online"), 409, "runtimenode.capabilityupdate_conflict")
    assert slot(db, d.node_id, d.session_id) == before, "a refused update changes nothing"
    # registering → degraded is allowed, and a declaration then brings it online.
    assert d.update({"a": 2}, state="degraded").json()["state"] == "degraded"
    assert d.declare({"a": 3}).json()["state"] == "online"
    # From online a declaration only refreshes capabilities.
    r = d.declare({"a": 4})
    assert r.json()["state"] == "online"
    assert slot(db, d.node_id, d.session_id)["capabilities"] == {"a": 4}


def test_a_registering_node_may_update_without_health_change(
    daemon: Callable[..., Daemon], db: psycopg.Connection
) -> None:
    d = daemon()
    d.attach(capabilities={"a": 1})
    r = d.update({"b": 1})
    assert r.status_code == 200 and r.json()["state"] == "registering"
    assert slot(db, d.node_id, d.session_id)["capabilities"] == {"b": 1}


# --- uniform 403 ---------------------------------------------------------------------------------


def _bodies(responses: dict[str, httpx.Response]) -> dict[str, bytes]:
    for cause, r in responses.items():
        assert r.status_code == 403, (cause, r.status_code, r.text)
    return {cause: r.content for cause, r in responses.items()}


def assert_uniform_403(responses: dict[str, httpx.Response], problem: Problem) -> bytes:
    bodies = _bodies(responses)
    first = next(iter(responses.values()))
    body = problem(first, 403, "runtimenode.permission_denied")
    assert len(set(bodies.values())) == 1, f"403 bodies differ by cause: {bodies}"
    assert body["detail"] == "permission denied"
    return next(iter(bodies.values()))


def test_attach_403_is_byte_identical_across_causes(
    daemon: Callable[..., Daemon], add_member: Callable, problem: Problem
) -> None:
    d = daemon(role="collaborator")
    other = daemon()
    node = new_node_id()
    pending = daemon(session_id=d.session_id, role="collaborator", state="pending")
    suspended = daemon(session_id=d.session_id, role="owner", state="suspended")
    revoked = daemon(session_id=d.session_id, role="runtime_contributor", state="revoked")
    viewer = daemon(session_id=d.session_id, role="viewer")
    responses = {
        "unknown session": d.attach(session_id=str(uuid.uuid4()), node_id=node),
        "not a member": d.attach(session_id=other.session_id, node_id=node),
        "pending membership": pending.attach(node_id=node),
        "suspended membership": suspended.attach(node_id=node),
        "revoked membership": revoked.attach(node_id=node),
        "viewer role": viewer.attach(node_id=node),
        "someone else's participantId": d.attach(node_id=node, participant_id=other.participant_id),
    }
    body = assert_uniform_403(responses, problem)
    for secret in (d.session_id, other.session_id, node, other.participant_id):
        assert secret.encode() not in body
    # And nothing was attached by any of them.
    assert node not in [n["nodeId"] for n in d.roster().json()["nodes"]]


def test_node_operations_403_is_byte_identical_across_causes(
    daemon: Callable[..., Daemon], admin: httpx.Client, problem: Problem, db: psycopg.Connection
) -> None:
    owner = daemon()
    assert owner.attach().status_code == 200
    assert owner.beat().status_code == 204
    member = daemon(session_id=owner.session_id, role="collaborator")  # sees it, doesn't own it
    outsider = daemon()
    lapsed = daemon(role="collaborator")
    assert lapsed.attach().status_code == 200
    admin.put(
        f"/v1/admin/sessions/{lapsed.session_id}/members/{lapsed.participant_id}",
        json={"role": "collaborator", "state": "suspended"},
    )
    detached = daemon()
    assert detached.attach().status_code == 200 and detached.detach().status_code == 204
    unknown = new_node_id()
    before = (slot(db, owner.node_id, owner.session_id), presence(db, owner.node_id))

    operations: dict[str, Callable[[Daemon, str], httpx.Response]] = {
        "declaration": lambda who, node: who.declare({"a": 1}, node_id=node),
        "capability update": lambda who, node: who.update({"a": 1}, node_id=node),
        "capability update with health": lambda who, node: who.update(
            {"a": 1}, state="degraded", node_id=node
        ),
        "heartbeat": lambda who, node: who.beat(node_id=node),
    }
    seen: set[bytes] = set()
    for name, op in operations.items():
        responses = {
            "unknown node": op(outsider, unknown),
            "someone else's node (outsider)": op(outsider, owner.node_id),
            "someone else's node (member)": op(member, owner.node_id),
            "owner no longer an active member": op(lapsed, lapsed.node_id),
            "owner of a detached node": op(detached, detached.node_id),
        }
        seen.add(assert_uniform_403(responses, problem))
        assert (slot(db, owner.node_id, owner.session_id), presence(db, owner.node_id)) == before, (
            name
        )
    assert len(seen) == 1, "the 403 body is one constant across operations too"
    assert presence(db, unknown) is None and presence(db, lapsed.node_id) is None


def test_roster_and_revoke_403_is_byte_identical_across_causes(
    daemon: Callable[..., Daemon], problem: Problem
) -> None:
    owner = daemon()
    assert owner.attach().status_code == 200
    collaborator = daemon(session_id=owner.session_id, role="collaborator")
    suspended_owner = daemon(session_id=owner.session_id, role="owner", state="suspended")
    pending = daemon(session_id=owner.session_id, role="viewer", state="pending")
    outsider = daemon()
    unknown_session = str(uuid.uuid4())
    roster = {
        "unknown session": outsider.roster(session_id=unknown_session),
        "not a member": outsider.roster(session_id=owner.session_id),
        "suspended": suspended_owner.roster(),
        "pending": pending.roster(),
    }
    revoke = {
        "unknown session": outsider.revoke(node_id=owner.node_id, session_id=unknown_session),
        "not a member": outsider.revoke(node_id=owner.node_id, session_id=owner.session_id),
        "not an owner": collaborator.revoke(node_id=owner.node_id),
        "inactive owner": suspended_owner.revoke(node_id=owner.node_id),
        "not an owner, unknown node": collaborator.revoke(node_id=new_node_id()),
    }
    assert assert_uniform_403(roster, problem) == assert_uniform_403(revoke, problem)
    viewer = daemon(session_id=owner.session_id, role="viewer")
    assert viewer.roster().status_code == 200, "any active member may read the roster"


# --- the version floor ---------------------------------------------------------------------------


def test_below_floor_is_admitted_read_only_and_its_writes_are_refused(
    daemon: Callable[..., Daemon], db: psycopg.Connection, problem: Problem
) -> None:
    d = daemon(floor="1.10")
    r = d.attach(version="1.9", capabilities={"a": 1})
    assert r.status_code == 200, r.text
    assert r.json()["readOnly"] is True and r.json()["state"] == "registering"
    before = slot(db, d.node_id, d.session_id)
    problem(d.declare({"a": 2}), 409, "version.floor_exceeded")
    problem(d.update({"a": 2}), 409, "version.floor_exceeded")
    # The floor gate comes before the registering→online conflict.
    problem(d.update({"a": 2}, state="online"), 409, "version.floor_exceeded")
    problem(d.update({"a": 2}, state="degraded"), 409, "version.floor_exceeded")
    assert slot(db, d.node_id, d.session_id) == before, "refused writes change nothing"
    # Heartbeat, roster and detach are exempt.
    assert d.beat().status_code == 204
    (node,) = [n for n in d.roster().json()["nodes"] if n["nodeId"] == d.node_id]
    assert node["readOnly"] is True
    assert d.detach().status_code == 204
    assert slot(db, d.node_id, d.session_id)["state"] == "offline"


def test_versions_compare_numerically_against_the_floor(daemon: Callable[..., Daemon]) -> None:
    d = daemon(floor="1.9")
    r = d.attach(version="1.10")
    assert r.json()["readOnly"] is False, "1.10 > 1.9"
    assert d.declare({"a": 1}).status_code == 200
    e = daemon(floor="10.0")
    assert e.attach(version="9.99").json()["readOnly"] is True


def test_raising_the_floor_applies_at_once(
    daemon: Callable[..., Daemon], admin: httpx.Client, db: psycopg.Connection, problem: Problem
) -> None:
    d = daemon(floor="2.0")
    assert d.attach(version="2.0").json()["readOnly"] is False
    assert d.declare({"a": 1}).status_code == 200
    r = admin.put(
        f"/v1/admin/sessions/{d.session_id}/min-client-version", json={"minClientVersion": "2.1"}
    )
    assert r.status_code == 200
    before = slot(db, d.node_id, d.session_id)
    problem(d.declare({"a": 2}), 409, "version.floor_exceeded")
    problem(d.update({"a": 2}, state="degraded"), 409, "version.floor_exceeded")
    assert slot(db, d.node_id, d.session_id) == before
    (node,) = [n for n in d.roster().json()["nodes"] if n["nodeId"] == d.node_id]
    assert node["readOnly"] is True
    assert d.beat().status_code == 204


# --- attach refusals leave every table byte-identical --------------------------------------------


@pytest.fixture
def quiet_snapshot(
    snapshot: Callable[..., str], scoped_snapshot: Callable[..., str]
) -> Callable[[list[str]], tuple[str, str]]:
    """Every row of every table except presence (the live sweep writes it), plus the presence
    rows of the given nodes."""
    tables = (
        "participants",
        "participant_tokens",
        "sessions",
        "session_memberships",
        "runtime_node_attachments",
        "settings",
    )
    return lambda nodes: (snapshot(tables), scoped_snapshot(node_ids=nodes))


def test_attach_conflicts_change_nothing(
    daemon: Callable[..., Daemon],
    admin: httpx.Client,
    quiet_snapshot: Callable[[list[str]], tuple[str, str]],
    problem: Problem,
) -> None:
    a = daemon()
    assert a.attach().status_code == 200 and a.beat().status_code == 204
    # Active in session 1 → attaching to session 2 (same owner) is a conflict naming the node.
    s2 = daemon()
    admin.put(
        f"/v1/admin/sessions/{s2.session_id}/members/{a.participant_id}",
        json={"role": "collaborator", "state": "active"},
    )
    b = daemon(session_id=a.session_id, role="collaborator")
    before = quiet_snapshot([a.node_id])
    body = problem(a.attach(session_id=s2.session_id), 409, "runtimenode.attach_conflict")
    assert a.node_id in body["detail"] and a.session_id not in body["detail"]
    assert quiet_snapshot([a.node_id]) == before
    # Another participant attaching the same node in the same session.
    problem(b.attach(node_id=a.node_id), 409, "runtimenode.attach_conflict")
    assert quiet_snapshot([a.node_id]) == before
    # ... also once the owner's slot is offline.
    assert a.detach().status_code == 204
    before = quiet_snapshot([a.node_id])
    problem(b.attach(node_id=a.node_id), 409, "runtimenode.attach_conflict")
    assert quiet_snapshot([a.node_id]) == before
    # Once offline in session 1, the node may go active in session 2 (a new slot).
    r = a.attach(session_id=s2.session_id)
    assert r.status_code == 200 and r.json()["sessionId"] == s2.session_id
    # ... and then re-attaching in session 1 (reactivating UPDATE) is the conflict.
    before = quiet_snapshot([a.node_id])
    problem(a.attach(), 409, "runtimenode.attach_conflict")
    assert quiet_snapshot([a.node_id]) == before


@pytest.mark.parametrize("state", ["provisioning", "archived", "closed"])
def test_attach_to_an_inactive_session_is_409(
    daemon: Callable[..., Daemon],
    make_session: Callable,
    add_member: Callable,
    quiet_snapshot: Callable[[list[str]], tuple[str, str]],
    problem: Problem,
    state: str,
) -> None:
    d = daemon()
    sid = make_session(state=state)
    add_member(sid, d.participant_id, role="owner")
    before = quiet_snapshot([d.node_id])
    problem(d.attach(session_id=sid), 409, "session.not_active")
    assert quiet_snapshot([d.node_id]) == before


def test_attach_to_a_revoked_slot_is_409_for_anyone(
    daemon: Callable[..., Daemon],
    quiet_snapshot: Callable[[list[str]], tuple[str, str]],
    problem: Problem,
) -> None:
    d = daemon()
    assert d.attach().status_code == 200
    assert d.revoke().status_code == 204  # d is the session owner
    other = daemon(session_id=d.session_id, role="collaborator")
    before = quiet_snapshot([d.node_id])
    problem(d.attach(), 409, "runtimenode.attach_revoked")
    problem(other.attach(node_id=d.node_id), 409, "runtimenode.attach_revoked")
    assert quiet_snapshot([d.node_id]) == before


def test_concurrent_attaches_of_one_node_admit_exactly_one(
    daemon: Callable[..., Daemon], add_member: Callable, server: str, db: psycopg.Connection
) -> None:
    """20 sessions, one node, 20 simultaneous attaches: the partial unique index admits one."""
    first = daemon()
    sessions = [first.session_id] + [daemon().session_id for _ in range(19)]
    for sid in sessions[1:]:
        add_member(sid, first.participant_id, role="runtime_contributor")
    barrier = threading.Barrier(len(sessions))

    def attach(session_id: str) -> httpx.Response:
        with httpx.Client(base_url=server, timeout=30) as c:
            racer = Daemon(c, first.participant_id, first.token, session_id, first.node_id)
            barrier.wait()
            return racer.attach()

    with ThreadPoolExecutor(max_workers=len(sessions)) as pool:
        responses = list(pool.map(attach, sessions))
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [200] + [409] * 19, [r.text for r in responses]
    codes = {r.json()["code"] for r in responses if r.status_code == 409}
    assert codes == {"runtimenode.attach_conflict"}
    (winner,) = [r.json() for r in responses if r.status_code == 200]
    rows = db.execute(
        "SELECT session_id::text, state FROM control_plane.runtime_node_attachments"
        " WHERE node_id = %s",
        (first.node_id,),
    ).fetchall()
    assert rows == [(winner["sessionId"], "registering")], "losers left no row behind"


# --- detach ----------------------------------------------------------------------------------


def test_detach_cases(
    daemon: Callable[..., Daemon],
    admin: httpx.Client,
    db: psycopg.Connection,
    quiet_snapshot: Callable[[list[str]], tuple[str, str]],
    problem: Problem,
) -> None:
    owner = daemon(role="collaborator")
    assert owner.attach().status_code == 200 and owner.beat().status_code == 204
    member = daemon(session_id=owner.session_id, role="owner")
    outsider = daemon()

    before = quiet_snapshot([owner.node_id])
    problem(member.detach(node_id=owner.node_id), 403, "runtimenode.permission_denied")
    assert quiet_snapshot([owner.node_id]) == before, "a refused detach writes nothing"
    assert outsider.detach(node_id=owner.node_id).status_code == 204
    assert quiet_snapshot([owner.node_id]) == before, "an outsider's detach is a no-op"
    assert outsider.detach(node_id=new_node_id()).status_code == 204  # unknown node

    # The owner may always detach, even with an inactive membership.
    admin.put(
        f"/v1/admin/sessions/{owner.session_id}/members/{owner.participant_id}",
        json={"role": "collaborator", "state": "suspended"},
    )
    beat_at = presence(db, owner.node_id)[1]
    assert owner.detach().status_code == 204
    assert slot(db, owner.node_id, owner.session_id)["state"] == "offline"
    assert presence(db, owner.node_id) == ("offline", beat_at)
    before = quiet_snapshot([owner.node_id])
    assert owner.detach().status_code == 204
    assert quiet_snapshot([owner.node_id]) == before, "detaching twice writes nothing"


def test_detach_of_a_node_that_never_beat_creates_no_presence(
    daemon: Callable[..., Daemon], db: psycopg.Connection
) -> None:
    d = daemon()
    assert d.attach().status_code == 200
    assert d.detach().status_code == 204
    assert presence(db, d.node_id) is None


# --- roster ---------------------------------------------------------------------------------


def test_roster_lists_every_state_in_order(daemon: Callable[..., Daemon]) -> None:
    owner = daemon(floor="1.5")
    nodes = {
        name: daemon(session_id=owner.session_id, role="collaborator")
        for name in ("registering", "online", "degraded", "offline", "revoked", "below floor")
    }
    for name, d in nodes.items():
        assert d.attach(version="1.4" if name == "below floor" else "1.5").status_code == 200
    assert nodes["online"].declare({"x": 1}).status_code == 200
    assert nodes["online"].beat("degraded").status_code == 204
    assert nodes["degraded"].update({}, state="degraded").status_code == 200
    assert nodes["offline"].beat().status_code == 204
    assert nodes["offline"].detach().status_code == 204
    assert owner.revoke(node_id=nodes["revoked"].node_id).status_code == 204

    r = owner.roster()
    assert r.status_code == 200
    listed = r.json()["nodes"]
    assert {n["nodeId"] for n in listed} == {d.node_id for d in nodes.values()}
    order = [(datetime.fromisoformat(n["attachedAt"]), n["nodeId"]) for n in listed]
    assert order == sorted(order), "ordered by attachedAt, nodeId"
    by_name = {
        name: next(n for n in listed if n["nodeId"] == d.node_id) for name, d in nodes.items()
    }
    for name in ("registering", "online", "degraded", "offline", "revoked"):
        assert by_name[name]["state"] == name
    assert by_name["below floor"]["state"] == "registering"
    assert by_name["online"]["healthState"] == "degraded"
    assert by_name["offline"]["healthState"] == "offline"
    assert by_name["registering"]["healthState"] is None
    assert by_name["registering"]["lastHeartbeatAt"] is None
    assert by_name["online"]["capabilities"] == {"x": 1}
    assert by_name["below floor"]["readOnly"] is True  # 1.4 < 1.5, derived per row
    assert by_name["registering"]["readOnly"] is False
    for n in listed:
        assert set(n) == ROSTER_KEYS
        assert RFC3339.match(n["attachedAt"])


def test_roster_writes_nothing(
    daemon: Callable[..., Daemon], quiet_snapshot: Callable[[list[str]], tuple[str, str]]
) -> None:
    d = daemon()
    assert d.attach().status_code == 200 and d.beat().status_code == 204
    before = quiet_snapshot([d.node_id])
    assert d.roster().status_code == 200
    assert quiet_snapshot([d.node_id]) == before


# --- revoke ----------------------------------------------------------------------------------


def test_revoke_by_admin_and_not_found(
    daemon: Callable[..., Daemon],
    client: httpx.Client,
    admin_token: str,
    db: psycopg.Connection,
    problem: Problem,
) -> None:
    d = daemon(role="collaborator")
    owner = daemon(session_id=d.session_id, role="owner")
    assert d.attach().status_code == 200 and d.beat().status_code == 204
    as_admin = {"Authorization": f"Bearer {admin_token}"}
    url = f"/v1/sessions/{d.session_id}/runtime-nodes/{d.node_id}/revoke"
    r = client.post(url, json={"reason": "compromised"}, headers=as_admin)
    assert r.status_code == 204, r.text
    assert slot(db, d.node_id, d.session_id)["state"] == "revoked"
    assert presence(db, d.node_id)[0] == "offline"
    assert client.post(url, headers=as_admin).status_code == 204
    problem(owner.revoke(node_id=new_node_id()), 404, "runtimenode.not_found")
    problem(
        client.post(
            f"/v1/sessions/{d.session_id}/runtime-nodes/{new_node_id()}/revoke", headers=as_admin
        ),
        404,
        "runtimenode.not_found",
    )


def test_revoking_an_offline_slot_leaves_presence_alone(
    daemon: Callable[..., Daemon], db: psycopg.Connection
) -> None:
    d = daemon()
    assert d.attach().status_code == 200 and d.beat().status_code == 204
    assert d.detach().status_code == 204
    other = daemon()
    # The node goes active elsewhere and beats: revoking the old, offline slot must not touch it.
    assert other.attach(node_id=d.node_id).status_code == 200
    assert other.beat(node_id=d.node_id).status_code == 204
    live = presence(db, d.node_id)
    assert d.revoke().status_code == 204
    assert slot(db, d.node_id, d.session_id)["state"] == "revoked"
    assert presence(db, d.node_id) == live
    assert slot(db, d.node_id, other.session_id)["state"] == "registering"


# --- heartbeat ---------------------------------------------------------------------------------


def test_refused_heartbeat_writes_no_presence(
    daemon: Callable[..., Daemon], db: psycopg.Connection, problem: Problem
) -> None:
    d = daemon()
    assert d.attach().status_code == 200
    intruder = daemon(session_id=d.session_id, role="collaborator")
    problem(intruder.beat(node_id=d.node_id), 403, "runtimenode.permission_denied")
    assert presence(db, d.node_id) is None
    assert d.beat().status_code == 204
    assert presence(db, d.node_id)[0] == "online"
