"""The OpenAPI document served at /schema/openapi.json (contract §6.9): complete, machine-usable,
and clean under three independent validators.

Every check walks every operation the served document has, so a route added later is held to
the same rules; none lists the operations it expects.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from openapi_schema_validator import OAS31Validator, oas31_format_checker
from openapi_spec_validator import validate as validate_spec
from referencing import Registry
from referencing.jsonschema import DRAFT202012

from control_plane import errors
from control_plane.errors import ErrorKind

REPO_ROOT = Path(__file__).resolve().parents[2]
METHODS = ("get", "put", "post", "delete", "patch")
OPS_PATHS = ("/healthz", "/readyz", "/metrics")
PROBLEM = "application/problem+json"
# Response fields holding an enumerated vocabulary (contract §3, §4, §7).
ENUM_FIELDS = {"state", "healthState", "role", "mode", "status"}
BODY_PROBLEMS = {"400", "413", "415"}
TOOL_TIMEOUT_SECONDS = 180
_DOC_URI = "urn:control-plane:openapi"


@pytest.fixture(scope="module")
def document(client: httpx.Client) -> dict[str, Any]:
    r = client.get("/schema/openapi.json")
    assert r.status_code == 200
    doc = r.json()
    assert doc["openapi"].startswith("3.1")
    return doc


@pytest.fixture(scope="module")
def document_file(document: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("openapi") / "openapi.json"
    path.write_text(json.dumps(document, indent=2))
    return path


@pytest.fixture(scope="session")
def linters() -> Path:
    """tools/node_modules/.bin, installed from tools/package-lock.json on first use."""
    proc = subprocess.run(
        ["bash", str(REPO_ROOT / "scripts" / "contract-tools.sh")],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert proc.returncode == 0, f"installing the linters failed:\n{proc.stderr}"
    return Path(proc.stdout.strip().splitlines()[-1])


def operations(doc: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in doc["paths"].items():
        for method in METHODS:
            if method in item:
                yield path, method, item[method]


def resolve(doc: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        schema = doc["components"]["schemas"][schema["$ref"].rsplit("/", 1)[-1]]
    return schema


def schema_validator(doc: dict[str, Any], schema: dict[str, Any]) -> OAS31Validator:
    """A JSON Schema validator (formats checked) for the component `schema` refers to."""
    registry: Registry[Any] = Registry().with_resource(_DOC_URI, DRAFT202012.create_resource(doc))
    return OAS31Validator(
        {"$ref": _DOC_URI + schema["$ref"]},
        registry=registry,
        format_checker=oas31_format_checker,
    )


def response_schemas(doc: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """(where, schema) for every object schema reachable from any response."""
    seen: set[int] = set()

    def walk(where: str, schema: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
        schema = resolve(doc, schema)
        if id(schema) in seen:
            return
        seen.add(id(schema))
        yield where, schema
        for name, child in (schema.get("properties") or {}).items():
            yield from walk(f"{where}.{name}", child)
        for key in ("oneOf", "anyOf", "allOf"):
            for child in schema.get(key) or ():
                yield from walk(where, child)
        if isinstance(schema.get("items"), dict):
            yield from walk(f"{where}[]", schema["items"])

    for path, method, op in operations(doc):
        for status, response in op["responses"].items():
            for media, content in (response.get("content") or {}).items():
                if "schema" in content:
                    where = f"{method.upper()} {path} {status} {media}"
                    yield from walk(where, content["schema"])


def variants(doc: dict[str, Any], schema: dict[str, Any]) -> list[dict[str, Any]]:
    """A property's schema, or its non-null alternatives when it is nullable (oneOf/anyOf)."""
    schema = resolve(doc, schema)
    alternatives = schema.get("oneOf") or schema.get("anyOf")
    if not alternatives:
        return [schema]
    return [resolve(doc, s) for s in alternatives if resolve(doc, s).get("type") != "null"]


# --- the three validators ---------------------------------------------------------------------


def test_openapi_spec_validator_accepts_the_document(document: dict[str, Any]) -> None:
    validate_spec(document)


def test_spectral_oas_ruleset_finds_nothing(linters: Path, document_file: Path) -> None:
    proc = subprocess.run(
        [
            str(linters / "spectral"),
            "lint",
            "--ruleset",
            str(REPO_ROOT / "tools" / "spectral.yaml"),
            "--format",
            "json",
            "--output",
            str(document_file.with_suffix(".spectral.json")),
            "--fail-severity",
            "hint",
            str(document_file),
        ],
        capture_output=True,
        text=True,
        timeout=TOOL_TIMEOUT_SECONDS,
        check=False,
    )
    assert proc.returncode in (0, 1), proc.stderr  # 1: findings (reported below)
    findings = json.loads(document_file.with_suffix(".spectral.json").read_text())
    summary = [f"{f['code']} at {'.'.join(map(str, f['path']))}: {f['message']}" for f in findings]
    assert not summary, "\n".join(summary)
    assert proc.returncode == 0, proc.stderr


def test_redocly_recommended_ruleset_finds_nothing(linters: Path, document_file: Path) -> None:
    env = {**os.environ, "REDOCLY_TELEMETRY": "off", "REDOCLY_SUPPRESS_UPDATE_NOTICE": "true"}
    proc = subprocess.run(
        [
            str(linters / "redocly"),
            "lint",
            "--extends",
            "recommended",
            "--format",
            "json",
            document_file.name,
        ],
        cwd=document_file.parent,  # no redocly.yaml there: the recommended ruleset alone
        env=env,
        capture_output=True,
        text=True,
        timeout=TOOL_TIMEOUT_SECONDS,
        check=False,
    )
    report = json.loads(proc.stdout)
    summary = [
        f"{p['ruleId']} ({p['severity']}) at {p['location'][0]['pointer']}: {p['message']}"
        for p in report["problems"]
    ]
    assert not summary, "\n".join(summary)
    assert report["totals"] == {"errors": 0, "warnings": 0, "ignored": 0}
    assert proc.returncode == 0, proc.stderr


# --- document metadata ------------------------------------------------------------------------


def test_info_and_tags_are_declared(document: dict[str, Any]) -> None:
    info = document["info"]
    assert info["title"] and info["version"] and info["description"]
    declared = {tag["name"]: tag.get("description") for tag in document["tags"]}
    assert all(declared.values()), f"tags without a description: {declared}"
    for path, method, op in operations(document):
        assert op.get("tags"), f"{method} {path} has no tag"
        undeclared = set(op["tags"]) - set(declared)
        assert not undeclared, f"{method} {path} uses undeclared tags {undeclared}"


def test_every_operation_has_a_summary_a_description_and_a_unique_id(
    document: dict[str, Any],
) -> None:
    ids: dict[str, str] = {}
    for path, method, op in operations(document):
        where = f"{method.upper()} {path}"
        summary = op.get("summary") or ""
        # A sentence, not Litestar's default (the handler name in CamelCase).
        assert " " in summary.strip(), f"{where}: summary {summary!r}"
        assert len((op.get("description") or "").strip()) >= 20, f"{where}: no description"
        assert op["operationId"] not in ids, f"{where} and {ids[op['operationId']]} share an id"
        ids[op["operationId"]] = where


# --- security ---------------------------------------------------------------------------------


def test_security_schemes_are_bearer(document: dict[str, Any]) -> None:
    schemes = document["components"]["securitySchemes"]
    assert schemes, "no security schemes"
    for name, scheme in schemes.items():
        assert scheme["type"] == "http" and scheme["scheme"] == "bearer", name
        assert scheme.get("description"), name


def test_every_operation_declares_its_credentials(document: dict[str, Any]) -> None:
    schemes = set(document["components"]["securitySchemes"])
    for path, method, op in operations(document):
        where = f"{method.upper()} {path}"
        assert "security" in op, (
            f"{where}: no `security`: declare `opt=auth_opt(Auth.…)` on the route or its router "
            "(control_plane/auth.py)"
        )
        for requirement in op["security"]:
            assert set(requirement) <= schemes, f"{where}: unknown scheme in {requirement}"
        if path in OPS_PATHS:
            assert op["security"] == [], f"{where} is an unauthenticated operations endpoint"
        else:
            assert op["security"], f"{where}: every /v1 call takes a bearer token"
            assert "401" in op["responses"], f"{where}: 401 undocumented"


def test_which_operations_take_the_admin_token(document: dict[str, Any]) -> None:
    """Contract §6.8: the admin token alone on /v1/admin/*; elsewhere a participant token, and
    the admin token as an alternative only on revoke and (§11) on reads of a session."""
    for path, method, op in operations(document):
        accepted = {name for requirement in op["security"] for name in requirement}
        if path.startswith("/v1/admin/"):
            assert accepted == {"adminToken"}, (method, path)
        elif path.startswith("/v1/"):
            assert "participantToken" in accepted, (method, path)
            if "adminToken" in accepted:
                session_read = method == "get" and path.startswith("/v1/sessions/")
                assert path.endswith("/revoke") or session_read, (method, path)
    revoke = document["paths"]["/v1/sessions/{session_id}/runtime-nodes/{node_id}/revoke"]
    assert revoke["post"]["security"] == [{"adminToken": []}, {"participantToken": []}]


def probe_path(doc: dict[str, Any], path: str, op: dict[str, Any]) -> str:
    """`path` with a well-formed value for each path parameter, per its documented schema."""
    values = {}
    for parameter in op.get("parameters") or ():
        if parameter["in"] == "path":
            schema = parameter["schema"]
            if schema.get("format") == "uuid":
                values[parameter["name"]] = str(uuid.uuid4())
            else:
                value = f"probe-{secrets.token_hex(6)}"
                assert re.search(schema["pattern"], value), (path, parameter)
                values[parameter["name"]] = value
    return path.format(**values)


def instance(doc: dict[str, Any], schema: dict[str, Any]) -> Any:
    """A small value valid for `schema` (required members only), so that a probe gets past
    body validation to the credential check wherever that comes later."""
    schema = resolve(doc, schema)
    for key in ("anyOf", "oneOf"):
        if key in schema:
            return instance(doc, next(s for s in schema[key] if s.get("type") != "null"))
    if "enum" in schema:
        return schema["enum"][0]
    if "examples" in schema:
        return schema["examples"][0]
    kind = schema.get("type")
    if kind == "object":
        props = schema.get("properties") or {}
        if not props:
            return {"probe": True}
        return {name: instance(doc, props[name]) for name in schema.get("required", ())}
    if kind == "string":
        if schema.get("format") == "uuid":
            return str(uuid.uuid4())
        return f"probe-{secrets.token_hex(6)}"
    if kind == "integer":
        return max(schema.get("minimum", 1), 1)
    if kind == "boolean":
        return True
    raise AssertionError(f"no probe value for {schema}")


def valid_body(doc: dict[str, Any], op: dict[str, Any]) -> Any:
    return instance(doc, op["requestBody"]["content"]["application/json"]["schema"])


def test_documented_credentials_are_the_ones_each_operation_accepts(
    document: dict[str, Any],
    server: str,
    admin_token: str,
    make_participant: Any,
) -> None:
    """Each operation is called with no token, the admin token and a participant token: a token
    the document lists is never refused as a credential (401, or 403 `auth.forbidden`); a token
    it does not list is; with no token, only operations documented without security answer."""
    _, participant_token = make_participant()
    tokens = {"adminToken": admin_token, "participantToken": participant_token}
    with httpx.Client(base_url=server, timeout=30.0) as http:
        for path, method, op in operations(document):
            accepted = {name for requirement in op["security"] for name in requirement}
            body = {"json": valid_body(document, op)} if "requestBody" in op else {}
            url = probe_path(document, path, op)
            for scheme, token in [(None, None), *tokens.items()]:
                headers = {"Authorization": f"Bearer {token}"} if token else {}
                r = http.request(method.upper(), url, headers=headers, **body)
                code = r.json().get("code") if r.headers.get("content-type") == PROBLEM else None
                refused = r.status_code == 401 or code == "auth.forbidden"
                where = f"{method.upper()} {path} with {scheme or 'no token'}: {r.status_code}"
                if scheme is None:
                    assert refused is bool(op["security"]), where
                    if refused:
                        assert r.headers.get("www-authenticate") == "Bearer", where
                else:
                    assert refused is bool(op["security"] and scheme not in accepted), where


# --- parameters, formats, enums ---------------------------------------------------------------


def test_path_parameters_have_formats_and_limits(
    document: dict[str, Any], admin: httpx.Client
) -> None:
    """`*_id` path parameters are UUIDs and `node_id` carries the body's limits; the server
    refuses a value outside them with 400 before looking at anything else."""
    for path, method, op in operations(document):
        for parameter in op.get("parameters") or ():
            if parameter["in"] != "path":
                continue
            where = f"{method.upper()} {path} {parameter['name']}"
            schema = parameter["schema"]
            assert parameter.get("description"), where
            if parameter["name"] == "node_id":
                assert (schema["minLength"], schema["maxLength"]) == (1, 256), where
                pattern = re.compile(schema["pattern"])
                assert pattern.search("build-box-7") and pattern.search("ノード")
                assert not any(pattern.search(v) for v in ("a\x01b", "a\x7fb", "a\n", "a\x9f"))
                bad = "x" * 257
            else:
                assert parameter["name"].endswith("_id"), f"{where}: unknown parameter kind"
                assert schema == {"type": "string", "format": "uuid"}, where
                bad = "not-a-uuid"
            url = probe_path(document, path.replace("{" + parameter["name"] + "}", bad), op)
            body = {"json": {}} if "requestBody" in op else {}
            r = admin.request(method.upper(), url, **body)
            assert r.status_code == 400, f"{where}={bad!r}: {r.status_code} {r.text}"


def test_timestamps_are_date_time(document: dict[str, Any]) -> None:
    found = 0
    for where, schema in response_schemas(document):
        for name, prop in (schema.get("properties") or {}).items():
            if name.endswith("At") or name.endswith("Since"):
                found += 1
                for variant in variants(document, prop):
                    assert variant.get("format") == "date-time", f"{where}.{name}: {variant}"
    assert found, "no timestamps found in any response"


def test_response_vocabularies_are_enums(document: dict[str, Any]) -> None:
    found = 0
    for where, schema in response_schemas(document):
        for name, prop in (schema.get("properties") or {}).items():
            if name in ENUM_FIELDS:
                found += 1
                for variant in variants(document, prop):
                    if variant.get("type") == "integer":
                        continue  # Problem.status: the HTTP status
                    values = variant.get("enum") or (
                        [variant["const"]] if "const" in variant else []
                    )
                    assert variant.get("type") == "string" and values, (
                        f"{where}.{name} is not an enum: {variant}"
                    )
                    assert None not in values, f"{where}.{name}: null inside the enum"
    assert found, "no enumerated fields found in any response"


def test_ids_in_responses_are_uuids(document: dict[str, Any]) -> None:
    for where, schema in response_schemas(document):
        for name, prop in (schema.get("properties") or {}).items():
            if name.endswith("Id") and name != "nodeId":
                for variant in variants(document, prop):
                    assert variant.get("format") == "uuid", f"{where}.{name}: {variant}"


# --- responses --------------------------------------------------------------------------------


def known_kinds() -> dict[str, ErrorKind]:
    kinds = [k for k in vars(errors).values() if isinstance(k, ErrorKind)]
    kinds += list(errors.SQLSTATE_ERRORS.values())
    return {kind.code: kind for kind in kinds}


def test_problem_schema_is_described(document: dict[str, Any]) -> None:
    problem = document["components"]["schemas"]["Problem"]
    assert problem.get("description")
    assert set(problem["required"]) == {"type", "title", "status", "detail", "code"}
    for name, prop in problem["properties"].items():
        assert prop.get("description"), f"Problem.{name} has no description"
        assert prop.get("examples"), f"Problem.{name} has no example"


def test_problem_responses_carry_real_examples(document: dict[str, Any]) -> None:
    """Every 4xx/5xx is a problem whose examples are codes this service really answers with
    that status, worded as it words them (never generated random strings)."""
    kinds = known_kinds()
    problem_schema = {"$ref": "#/components/schemas/Problem"}
    validator = schema_validator(document, problem_schema)
    for path, method, op in operations(document):
        for status, response in op["responses"].items():
            if not status.startswith(("4", "5")) or (path == "/readyz" and status == "503"):
                continue
            where = f"{method.upper()} {path} {status}"
            content = response["content"]
            assert set(content) == {PROBLEM}, where
            assert content[PROBLEM]["schema"] == problem_schema, where
            examples = content[PROBLEM].get("examples") or {}
            assert examples, f"{where}: no examples"
            for key, example in examples.items():
                value = example["value"]
                validator.validate(value)
                kind = kinds.get(value["code"])
                assert kind is not None, f"{where}: unknown code {value['code']}"
                assert key == kind.code and str(kind.status) == status, (where, value)
                assert value["title"] == kind.title, (where, value)
                assert value["type"] == f"urn:control-plane:problem:{kind.code}", (where, value)
                assert value["code"] in response["description"], (where, response["description"])


def test_operations_with_a_body_document_its_refusals(document: dict[str, Any]) -> None:
    for path, method, op in operations(document):
        if "requestBody" not in op:
            continue
        where = f"{method.upper()} {path}"
        schema = resolve(document, op["requestBody"]["content"]["application/json"]["schema"])
        assert schema["type"] == "object", where
        assert schema.get("additionalProperties") is False, f"{where}: unknown fields accepted"
        missing = BODY_PROBLEMS - set(op["responses"])
        assert not missing, f"{where}: undocumented {missing}"


def test_no_content_responses_have_no_body(document: dict[str, Any]) -> None:
    for path, method, op in operations(document):
        if "204" in op["responses"]:
            assert "content" not in op["responses"]["204"], (method, path)


def test_readyz_documents_both_answers_and_the_body_matches(
    document: dict[str, Any], client: httpx.Client
) -> None:
    responses = document["paths"]["/readyz"]["get"]["responses"]
    assert {"200", "503"} <= set(responses)
    schemas = {s: responses[s]["content"]["application/json"]["schema"] for s in ("200", "503")}
    status = resolve(document, schemas["503"])["properties"]["status"]
    assert set(status["enum"]) == {"ready", "not ready"}
    r = client.get("/readyz")  # 200 or 503, whichever it is now: both are documented
    schema_validator(document, schemas[str(r.status_code)]).validate(r.json())


def test_operations_endpoints_refuse_a_malformed_request_as_documented(
    document: dict[str, Any], client: httpx.Client, problem: Any
) -> None:
    """The probes take no input; their documented 4xx is the malformed request (a bad Host)."""
    for path in OPS_PATHS:
        assert "400" in document["paths"][path]["get"]["responses"], path
        problem(client.get(path, headers={"Host": "not a host"}), 400, "request.invalid")


def test_healthz_body_matches_the_document(document: dict[str, Any], client: httpx.Client) -> None:
    schema = document["paths"]["/healthz"]["get"]["responses"]["200"]["content"]
    r = client.get("/healthz")
    schema_validator(document, schema["application/json"]["schema"]).validate(r.json())


# --- request bodies (what daemons may send) ---------------------------------------------------


def test_attach_body_schema_matches_the_contract(document: dict[str, Any]) -> None:
    op = document["paths"]["/v1/sessions/{session_id}/runtime-nodes"]["post"]
    schema = resolve(document, op["requestBody"]["content"]["application/json"]["schema"])
    fields = {"participantId", "nodeId", "clientVersion", "capabilities", "healthState"}
    assert set(schema["properties"]) == fields
    assert set(schema["required"]) == fields
    props = schema["properties"]
    assert set(props["healthState"]["enum"]) == {"online", "degraded"}
    assert props["participantId"]["format"] == "uuid"
    assert props["nodeId"]["minLength"] == 1 and props["nodeId"]["maxLength"] == 256
    assert props["clientVersion"]["maxLength"] == 64
    version = re.compile(props["clientVersion"]["pattern"])
    assert version.search("1.10") and version.search("0.0")
    assert not any(version.search(v) for v in ("1", "1.0.0", "01.0", "1.01", "1.0\n"))
    assert props["capabilities"]["type"] == "object"


def test_daemons_cannot_even_describe_forbidden_health(document: dict[str, Any]) -> None:
    """offline/registering/revoked are unrepresentable in every request schema (contract §4)."""
    for path, method, op in operations(document):
        if "requestBody" not in op or not path.startswith("/v1/runtime-nodes/"):
            continue
        schema = resolve(document, op["requestBody"]["content"]["application/json"]["schema"])
        text = repr({k: resolve(document, v) for k, v in schema["properties"].items()})
        text += repr(document["components"]["schemas"].get("HealthChanges", {}))
        for forbidden in ("offline", "registering", "revoked"):
            assert forbidden not in text, (method, path, forbidden)
