"""Bad input never yields 500 and never writes (contract §6 input limits, §6.10, §8).

Every case is sent by a caller who is fully authorized for the target (an owner with the node
attached), so the only reason for a refusal is the input itself. Around each case the tables are
fingerprinted: every row of participants, tokens, sessions, memberships and attachments, plus the
presence row of the test's node (other presence rows belong to the live sweep).
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

Problem = Callable[[httpx.Response, int, str], dict[str, Any]]

QUIET_TABLES = (
    "participants",
    "participant_tokens",
    "sessions",
    "session_memberships",
    "runtime_node_attachments",
    "settings",
)
JSON = {"Content-Type": "application/json"}


@dataclass
class Target:
    session_id: str
    participant_id: str
    node_id: str
    auth: dict[str, str]

    def fill(self, template: str) -> str:
        return template.format(sid=self.session_id, pid=self.participant_id, node=self.node_id)


@pytest.fixture
def target(client: httpx.Client, make_member: Callable) -> Target:
    """An owner whose node is attached (registering), heartbeating, in an active session."""
    member = make_member()
    node = f"bad-{secrets.token_hex(6)}"
    t = Target(member.session_id, member.participant_id, node, member.auth)
    r = client.post(t.fill("/v1/sessions/{sid}/runtime-nodes"), json=attach_body(t), headers=t.auth)
    assert r.status_code == 200, r.text
    beat = client.post(
        t.fill("/v1/runtime-nodes/{node}/heartbeat"), json={"healthState": "online"}, headers=t.auth
    )
    assert beat.status_code == 204, beat.text
    return t


@pytest.fixture
def unchanged(
    snapshot: Callable[..., str], scoped_snapshot: Callable[..., str]
) -> Callable[[Target], Any]:
    @contextmanager
    def check(t: Target) -> Iterator[None]:
        before = (snapshot(QUIET_TABLES), scoped_snapshot(node_ids=[t.node_id]))
        yield
        after = (snapshot(QUIET_TABLES), scoped_snapshot(node_ids=[t.node_id]))
        assert after == before, "a refused request changed the database"

    return check


_MISSING = object()


def attach_body(t: Target, **overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "participantId": t.participant_id,
        "nodeId": t.node_id,
        "clientVersion": "1.0",
        "capabilities": {"python": "3.11"},
        "healthState": "online",
    }
    body.update(overrides)
    return {k: v for k, v in body.items() if v is not _MISSING}


def nest(levels: int) -> dict[str, Any]:
    """`levels` nested objects: nest(1) == {}, nest(2) == {"a": {}}."""
    value: dict[str, Any] = {}
    for _ in range(levels - 1):
        value = {"a": value}
    return value


def send(
    client: httpx.Client, t: Target, method: str, path: str, body: Any, headers: dict[str, str]
) -> httpx.Response:
    url = t.fill(path)
    if callable(body):
        body = body(t)
    if isinstance(body, bytes):
        return client.request(method, url, content=body, headers={**t.auth, **headers})
    return client.request(method, url, json=body, headers={**t.auth, **headers})


ATTACH = "/v1/sessions/{sid}/runtime-nodes"
DECLARE = "/v1/runtime-nodes/{node}/declaration"
CAPS = "/v1/runtime-nodes/{node}/capabilities"
BEAT = "/v1/runtime-nodes/{node}/heartbeat"
DETACH = "/v1/runtime-nodes/{node}/detach"
REVOKE = "/v1/sessions/{sid}/runtime-nodes/{node}/revoke"
VERSIONS = [
    "1",
    "1.0.0",
    "01.0",
    "1.01",
    "",
    " 1.0",
    "1.0 ",
    "1.0\n",
    "v1.0",
    "１.０",
    "9" * 65 + ".0",
]
BAD_NODE_IDS = ["", "x" * 257, "a\nb", "a\tb", "a\u0000b", "a\u007fb", "a\u0080b", "a\u009fb"]
BAD_HEALTH = ["offline", "registering", "revoked", "ONLINE", "", None, 1]
BAD_REASONS = ["", "   ", "\n\t", "x" * 513, "a\u0000b", 5]


def _attach_cases() -> list[Any]:
    cases: list[Any] = [
        pytest.param(b'{"participantId": ', id="truncated-json"),
        pytest.param(b"garbage", id="garbage"),
        pytest.param(b"[]", id="array-body"),
        pytest.param(b"null", id="null-body"),
        pytest.param(b'"x"', id="string-body"),
        pytest.param(b"", id="empty-body"),
        pytest.param(b'{"nodeId": "\xff\xfe"}', id="not-utf8"),
        pytest.param(b'{"nodeId": "\\ud800"}', id="lone-surrogate"),
        pytest.param(lambda t: attach_body(t, participantId=5), id="participantId-int"),
        pytest.param(lambda t: attach_body(t, participantId="nope"), id="participantId-not-uuid"),
        pytest.param(lambda t: attach_body(t, nodeId=5), id="nodeId-int"),
        pytest.param(lambda t: attach_body(t, clientVersion=1.0), id="version-float"),
        pytest.param(lambda t: attach_body(t, capabilities="x"), id="caps-string"),
        pytest.param(lambda t: attach_body(t, capabilities=[]), id="caps-array"),
        pytest.param(lambda t: attach_body(t, capabilities=None), id="caps-null"),
        pytest.param(lambda t: attach_body(t, extra=1), id="unknown-field"),
        pytest.param(lambda t: attach_body(t, node_id=t.node_id), id="snake-case-field"),
        pytest.param(lambda t: attach_body(t, capabilities=nest(9)), id="caps-depth-9"),
        pytest.param(
            lambda t: attach_body(t, capabilities={"a": [[[[[[[[1]]]]]]]]}), id="caps-list-depth"
        ),
        pytest.param(
            lambda t: attach_body(t, capabilities={"k": "x" * 16_377}), id="caps-over-16KiB"
        ),
        pytest.param(lambda t: attach_body(t, capabilities={"k": "a\u0000"}), id="caps-nul-value"),
        pytest.param(lambda t: attach_body(t, capabilities={"a\u0000": 1}), id="caps-nul-key"),
        pytest.param(
            lambda t: (
                json.dumps(attach_body(t)).replace('"python"', '"x": 1e999, "python"').encode()
            ),
            id="caps-infinite-number",
        ),
    ]
    for field in ("participantId", "nodeId", "clientVersion", "capabilities", "healthState"):
        cases.append(
            pytest.param(lambda t, f=field: attach_body(t, **{f: _MISSING}), id=f"missing-{field}")
        )
    for v in VERSIONS:
        cases.append(
            pytest.param(lambda t, v=v: attach_body(t, clientVersion=v), id=f"version-{v!r}")
        )
    for n in BAD_NODE_IDS:
        cases.append(pytest.param(lambda t, n=n: attach_body(t, nodeId=n), id=f"nodeId-{n[:12]!r}"))
    for h in BAD_HEALTH:
        cases.append(pytest.param(lambda t, h=h: attach_body(t, healthState=h), id=f"health-{h!r}"))
    return cases


@pytest.mark.parametrize("body", _attach_cases())
def test_attach_refuses_bad_bodies(
    client: httpx.Client, target: Target, unchanged: Callable, problem: Problem, body: Any
) -> None:
    with unchanged(target):
        r = send(client, target, "POST", ATTACH, body, JSON)
        problem(r, 400, "request.invalid")


NODE_BODIES: list[Any] = [
    # declaration
    pytest.param("POST", DECLARE, {"capabilities": {}}, id="declare-empty-caps"),
    pytest.param("POST", DECLARE, {"capabilities": "x"}, id="declare-caps-string"),
    pytest.param("POST", DECLARE, {}, id="declare-missing-caps"),
    pytest.param(
        "POST", DECLARE, {"capabilities": {"a": 1}, "state": "online"}, id="declare-unknown-field"
    ),
    pytest.param("POST", DECLARE, {"capabilities": nest(9)}, id="declare-depth-9"),
    pytest.param("POST", DECLARE, {"capabilities": {"a": "\u0000"}}, id="declare-nul"),
    pytest.param("POST", DECLARE, b"{", id="declare-garbage"),
    # capability update
    pytest.param("PUT", CAPS, {"capabilities": None}, id="caps-null"),
    pytest.param(
        "PUT", CAPS, {"capabilities": {}, "healthChanges": "degraded"}, id="caps-changes-string"
    ),
    pytest.param(
        "PUT", CAPS, {"capabilities": {}, "healthChanges": {}}, id="caps-changes-no-state"
    ),
    pytest.param(
        "PUT",
        CAPS,
        {"capabilities": {}, "healthChanges": {"state": "degraded", "x": 1}},
        id="caps-changes-unknown-field",
    ),
    pytest.param("PUT", CAPS, {"capabilities": {"k": "x" * 16_377}}, id="caps-over-16KiB"),
    # heartbeat
    pytest.param("POST", BEAT, {}, id="beat-missing-health"),
    pytest.param(
        "POST",
        BEAT,
        {"healthState": "online", "at": "2020-01-01T00:00:00Z"},
        id="beat-unknown-field",
    ),
    pytest.param("POST", BEAT, b"", id="beat-empty-body"),
    # detach / revoke bodies are optional, but a given body must be valid
    pytest.param("POST", DETACH, {"extra": 1}, id="detach-unknown-field"),
    pytest.param("POST", DETACH, b"[]", id="detach-array"),
    pytest.param("POST", REVOKE, {"extra": 1}, id="revoke-unknown-field"),
    pytest.param("POST", REVOKE, b"{", id="revoke-garbage"),
]
for _h in BAD_HEALTH:
    NODE_BODIES.append(pytest.param("POST", BEAT, {"healthState": _h}, id=f"beat-health-{_h!r}"))
    if _h is not None:
        NODE_BODIES.append(
            pytest.param(
                "PUT",
                CAPS,
                {"capabilities": {}, "healthChanges": {"state": _h}},
                id=f"caps-changes-state-{_h!r}",
            )
        )
for _r in BAD_REASONS:
    NODE_BODIES += [
        pytest.param("POST", DETACH, {"reason": _r}, id=f"detach-reason-{str(_r)[:8]!r}"),
        pytest.param("POST", REVOKE, {"reason": _r}, id=f"revoke-reason-{str(_r)[:8]!r}"),
        pytest.param(
            "PUT",
            CAPS,
            {"capabilities": {}, "healthChanges": {"state": "degraded", "reason": _r}},
            id=f"caps-reason-{str(_r)[:8]!r}",
        ),
    ]


@pytest.mark.parametrize(("method", "path", "body"), NODE_BODIES)
def test_node_endpoints_refuse_bad_bodies(
    client: httpx.Client,
    target: Target,
    unchanged: Callable,
    problem: Problem,
    method: str,
    path: str,
    body: Any,
) -> None:
    with unchanged(target):
        problem(send(client, target, method, path, body, JSON), 400, "request.invalid")


PATH_NODE_IDS = ["a%0Ab", "a%0D", "%09", "a%7F", "a%C2%80", "a%C2%9F", "a%00b", "x" * 257]


@pytest.mark.parametrize("bad", PATH_NODE_IDS)
@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("POST", DECLARE, {"capabilities": {"a": 1}}),
        ("PUT", CAPS, {"capabilities": {}}),
        ("POST", BEAT, {"healthState": "online"}),
        ("POST", DETACH, {}),
        ("POST", REVOKE, {}),
    ],
)
def test_bad_node_ids_in_the_path_are_400(
    client: httpx.Client,
    target: Target,
    unchanged: Callable,
    problem: Problem,
    method: str,
    path: str,
    body: Any,
    bad: str,
) -> None:
    url = path.replace("{node}", bad)
    with unchanged(target):
        problem(send(client, target, method, url, body, JSON), 400, "request.invalid")


@pytest.mark.parametrize("bad", ["not-a-uuid", "1234", "g" * 8 + "-0000-0000-0000-" + "0" * 12])
@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("POST", "/v1/sessions/{bad}/runtime-nodes", attach_body),
        ("GET", "/v1/sessions/{bad}/runtime-nodes", None),
        ("POST", "/v1/sessions/{bad}/runtime-nodes/{node}/revoke", {}),
    ],
)
def test_malformed_session_uuid_in_the_path_is_400(
    client: httpx.Client,
    target: Target,
    unchanged: Callable,
    problem: Problem,
    method: str,
    path: str,
    body: Any,
    bad: str,
) -> None:
    url = path.replace("{bad}", bad)
    with unchanged(target):
        problem(send(client, target, method, url, body, JSON), 400, "request.invalid")


@pytest.mark.parametrize(
    "content_type",
    [
        None,
        "text/plain",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
        "application/xml",
    ],
)
@pytest.mark.parametrize(
    ("method", "path"), [("POST", ATTACH), ("POST", DECLARE), ("PUT", CAPS), ("POST", BEAT)]
)
def test_wrong_content_type_is_415(
    client: httpx.Client,
    target: Target,
    unchanged: Callable,
    problem: Problem,
    method: str,
    path: str,
    content_type: str | None,
) -> None:
    bodies = {
        ATTACH: attach_body(target),
        DECLARE: {"capabilities": {"a": 1}},
        CAPS: {"capabilities": {}},
        BEAT: {"healthState": "online"},
    }
    headers = {**target.auth}
    if content_type:
        headers["Content-Type"] = content_type
    with unchanged(target):
        r = client.request(
            method, target.fill(path), content=json.dumps(bodies[path]).encode(), headers=headers
        )
        problem(r, 415, "request.unsupported_media_type")


@pytest.mark.parametrize("content_type", ["application/json", "text/plain"])
@pytest.mark.parametrize(("method", "path"), [("POST", ATTACH), ("PUT", CAPS), ("POST", DETACH)])
def test_bodies_over_64_kib_are_413(
    client: httpx.Client,
    target: Target,
    unchanged: Callable,
    problem: Problem,
    method: str,
    path: str,
    content_type: str,
) -> None:
    body = json.dumps({"capabilities": {"k": "x" * (64 * 1024)}}).encode()
    with unchanged(target):
        r = client.request(
            method,
            target.fill(path),
            content=body,
            headers={**target.auth, "Content-Type": content_type},
        )
        problem(r, 413, "request.too_large")


def test_limits_are_inclusive(client: httpx.Client, target: Target) -> None:
    """The contrast to the refusals above: exactly at each limit is accepted."""
    at_16_kib = {"k": "x" * (16 * 1024 - len('{"k":""}'))}
    assert len(json.dumps(at_16_kib, separators=(",", ":"))) == 16 * 1024
    for caps in (nest(8), at_16_kib, {"a": [[[[[[1]]]]]]}):
        r = client.put(target.fill(CAPS), json={"capabilities": caps}, headers=target.auth)
        assert r.status_code == 200, r.text
    long_node = "n" * 250 + secrets.token_hex(3)
    r = client.post(target.fill(DETACH), json={"reason": "x" * 512}, headers=target.auth)
    assert r.status_code == 204
    r = client.post(
        target.fill(ATTACH),
        json=attach_body(target, nodeId=long_node, clientVersion="9" * 31 + "." + "9" * 32),
        headers=target.auth,
    )
    assert r.status_code == 200, r.text
    assert r.json()["nodeId"] == long_node


ADMIN_CASES: list[Any] = [
    pytest.param("POST", "/v1/admin/participants", {"displayName": "a\u0000b"}, id="name-nul"),
    pytest.param("POST", "/v1/admin/participants", {"displayName": ""}, id="name-empty"),
    pytest.param("POST", "/v1/admin/participants", {"displayName": "x" * 201}, id="name-too-long"),
    pytest.param("POST", "/v1/admin/participants", {"displayName": 5}, id="name-int"),
    pytest.param("POST", "/v1/admin/participants", {"name": "x"}, id="unknown-field"),
    pytest.param("POST", "/v1/admin/participants", b"{,}", id="garbage"),
    pytest.param(
        "POST", "/v1/admin/participants/{pid}/tokens", {"label": "a\u0000"}, id="label-nul"
    ),
    pytest.param(
        "POST", "/v1/admin/participants/{pid}/tokens", {"expiresInSeconds": "5"}, id="expiry-string"
    ),
    pytest.param(
        "POST", "/v1/admin/participants/{pid}/tokens", {"expiresInSeconds": 0}, id="expiry-zero"
    ),
    pytest.param("POST", "/v1/admin/sessions", {"minClientVersion": "1.0\n"}, id="floor-newline"),
    pytest.param("POST", "/v1/admin/sessions", {"state": "ACTIVE"}, id="state-case"),
    pytest.param(
        "PUT",
        "/v1/admin/sessions/{sid}/members/{pid}",
        {"role": "owner", "state": None},
        id="member-null",
    ),
    pytest.param(
        "PUT",
        "/v1/admin/sessions/{sid}/min-client-version",
        {"minClientVersion": "01.0"},
        id="floor-leading-zero",
    ),
    pytest.param("PUT", "/v1/admin/sessions/{sid}/min-client-version", b"", id="floor-no-body"),
]


@pytest.mark.parametrize(("method", "path", "body"), ADMIN_CASES)
def test_admin_endpoints_refuse_bad_bodies(
    admin: httpx.Client,
    target: Target,
    unchanged: Callable,
    problem: Problem,
    method: str,
    path: str,
    body: Any,
) -> None:
    url = target.fill(path)
    with unchanged(target):
        if isinstance(body, bytes):
            r = admin.request(method, url, content=body, headers=JSON)
        else:
            r = admin.request(method, url, json=body)
        problem(r, 400, "request.invalid")


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/v1/nope"),
        ("GET", "/"),
        ("POST", "/v1/runtime-nodes"),
        ("GET", "/v1/runtime-nodes/x/heartbeats"),
        ("POST", "/v1/sessions/{sid}/runtime-nodes/{node}/evict"),
        ("GET", "/v1/admin/nothing-here"),
        ("GET", "/v2/sessions/{sid}/runtime-nodes"),
    ],
)
def test_unknown_routes_are_404_not_found(
    client: httpx.Client, target: Target, problem: Problem, method: str, path: str
) -> None:
    problem(client.request(method, target.fill(path), headers=target.auth), 404, "not_found")
