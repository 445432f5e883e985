"""The OpenAPI document at /schema/openapi.json describes the whole /v1 API (contract §6.9)."""

from __future__ import annotations

import re
from typing import Any

import httpx
import pytest

# (method, path with {} for parameters) → (success status, body required? None = no body,
# problem statuses that must be documented)
OPERATIONS: dict[tuple[str, str], tuple[str, bool | None, set[str]]] = {
    ("post", "/v1/admin/participants"): ("201", False, {"400", "401", "403"}),
    ("post", "/v1/admin/participants/{}/tokens"): ("201", False, {"400", "401", "403", "404"}),
    ("delete", "/v1/admin/tokens/{}"): ("204", None, {"400", "401", "403", "404"}),
    ("post", "/v1/admin/sessions"): ("201", False, {"400", "401", "403"}),
    ("put", "/v1/admin/sessions/{}/members/{}"): ("200", True, {"400", "401", "403", "404"}),
    ("put", "/v1/admin/sessions/{}/min-client-version"): (
        "200",
        True,
        {"400", "401", "403", "404", "409"},
    ),
    ("post", "/v1/sessions/{}/runtime-nodes"): ("200", True, {"400", "401", "403", "409"}),
    ("get", "/v1/sessions/{}/runtime-nodes"): ("200", None, {"400", "401", "403"}),
    ("get", "/v1/sessions/{}/runtime-nodes/events"): (
        "200",
        None,
        {"400", "401", "403", "404", "410", "503"},
    ),
    ("post", "/v1/runtime-nodes/{}/declaration"): ("200", True, {"400", "401", "403", "409"}),
    ("put", "/v1/runtime-nodes/{}/capabilities"): ("200", True, {"400", "401", "403", "409"}),
    ("post", "/v1/runtime-nodes/{}/heartbeat"): ("204", True, {"400", "401", "403"}),
    ("post", "/v1/runtime-nodes/{}/detach"): ("204", False, {"400", "401", "403"}),
    ("post", "/v1/sessions/{}/runtime-nodes/{}/revoke"): (
        "204",
        False,
        {"400", "401", "403", "404"},
    ),
}
BODY_PROBLEMS = {"413", "415"}
METHODS = {"get", "put", "post", "delete", "patch"}


@pytest.fixture(scope="module")
def document(client: httpx.Client) -> dict[str, Any]:
    r = client.get("/schema/openapi.json")
    assert r.status_code == 200
    doc = r.json()
    assert doc["openapi"].startswith("3.")
    return doc


def operations(doc: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    found = {}
    for path, item in doc["paths"].items():
        for method, op in item.items():
            if method in METHODS:
                found[(method, re.sub(r"\{[^}]+\}", "{}", path))] = op
    return found


def resolve(doc: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[-1]
        schema = doc["components"]["schemas"][name]
    return schema


def test_every_v1_operation_is_listed(document: dict[str, Any]) -> None:
    listed = {key for key in operations(document) if key[1].startswith("/v1/")}
    assert listed == set(OPERATIONS)


@pytest.mark.parametrize("key", sorted(OPERATIONS), ids=lambda k: f"{k[0]} {k[1]}")
def test_operation_documents_body_success_and_problems(
    document: dict[str, Any], key: tuple[str, str]
) -> None:
    success, body_required, statuses = OPERATIONS[key]
    op = operations(document)[key]
    assert success in op["responses"]
    if body_required is None:
        assert "requestBody" not in op
    else:
        body = op["requestBody"]
        assert bool(body.get("required")) is body_required
        schema = resolve(document, body["content"]["application/json"]["schema"])
        assert schema["type"] == "object"
        assert schema.get("additionalProperties") is False, "unknown fields are rejected"
        statuses = statuses | BODY_PROBLEMS
    missing = statuses - set(op["responses"])
    assert not missing, f"undocumented problem responses {missing}"
    for status in statuses:
        content = op["responses"][status]["content"]
        assert set(content) == {"application/problem+json"}, (status, content)
        problem = resolve(document, content["application/problem+json"]["schema"])
        assert {"type", "title", "status", "detail", "code"} <= set(problem["properties"])


def test_attach_body_schema_matches_the_spec(document: dict[str, Any]) -> None:
    op = operations(document)[("post", "/v1/sessions/{}/runtime-nodes")]
    schema = resolve(document, op["requestBody"]["content"]["application/json"]["schema"])
    fields = {"participantId", "nodeId", "clientVersion", "capabilities", "healthState"}
    assert set(schema["properties"]) == fields
    assert set(schema["required"]) == fields
    props = schema["properties"]
    assert set(props["healthState"]["enum"]) == {"online", "degraded"}
    assert props["nodeId"]["minLength"] == 1 and props["nodeId"]["maxLength"] == 256
    assert props["clientVersion"]["maxLength"] == 64
    version = re.compile(props["clientVersion"]["pattern"])
    assert version.search("1.10") and version.search("0.0")
    assert not any(version.search(v) for v in ("1", "1.0.0", "01.0", "1.01", "1.0\n"))
    assert props["capabilities"]["type"] == "object"


def test_daemons_cannot_even_describe_forbidden_health(document: dict[str, Any]) -> None:
    """offline/registering/revoked are unrepresentable in every request schema (contract §4)."""
    for key in [
        ("post", "/v1/runtime-nodes/{}/heartbeat"),
        ("put", "/v1/runtime-nodes/{}/capabilities"),
    ]:
        op = operations(document)[key]
        schema = resolve(document, op["requestBody"]["content"]["application/json"]["schema"])
        text = repr({k: resolve(document, v) for k, v in schema["properties"].items()})
        text += repr(document["components"]["schemas"].get("HealthChanges", {}))
        for forbidden in ("offline", "registering", "revoked"):
            assert forbidden not in text, (key, forbidden)
