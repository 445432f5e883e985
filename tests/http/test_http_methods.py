"""HTTP method semantics on every path (RFC 9110): HEAD wherever GET is served, complete `Allow`
lists on OPTIONS and 405, and a `/metrics` media type Prometheus accepts.

The paths are those of the served OpenAPI document (plus the document itself), so routes added
later are covered without listing them here.
"""

from __future__ import annotations

import socket
import uuid
from email.message import Message
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

METHODS = ("get", "put", "post", "delete", "patch")
# Headers that legitimately differ between two answers to the same request.
VOLATILE = {"date", "content-length"}


@pytest.fixture(scope="module")
def document(client: httpx.Client) -> dict[str, Any]:
    r = client.get("/schema/openapi.json")
    assert r.status_code == 200
    return r.json()


def concrete(path: str) -> str:
    """A template path with a UUID for every parameter (a valid node id too)."""
    out = path
    while "{" in out:
        start, end = out.index("{"), out.index("}")
        out = out[:start] + str(uuid.uuid4()) + out[end + 1 :]
    return out


def paths(document: dict[str, Any]) -> dict[str, set[str]]:
    """Concrete URL → methods documented for it (upper case); the document's own path too."""
    found = {
        concrete(path): {m.upper() for m in METHODS if m in item}
        for path, item in document["paths"].items()
    }
    found["/schema/openapi.json"] = {"GET"}
    return found


def expected_allow(methods: set[str]) -> set[str]:
    return methods | {"OPTIONS"} | ({"HEAD"} if "GET" in methods else set())


def allow_of(response: httpx.Response) -> set[str]:
    assert len(response.headers.get_list("allow")) == 1, response.headers
    return {m.strip() for m in response.headers["allow"].split(",")}


def test_options_lists_every_method_of_every_path(
    client: httpx.Client, document: dict[str, Any]
) -> None:
    for url, methods in paths(document).items():
        r = client.options(url)
        assert r.status_code == 204, (url, r.status_code, r.text)
        assert allow_of(r) == expected_allow(methods), (url, r.headers["allow"])
        assert r.content == b""


def test_a_method_not_served_gets_405_with_the_same_allow_list(
    client: httpx.Client, document: dict[str, Any], problem: Any
) -> None:
    for url, methods in paths(document).items():
        unserved = next(m for m in ("PATCH", "DELETE", "PUT", "POST") if m not in methods)
        r = client.request(unserved, url)
        problem(r, 405, "request.method_not_allowed")
        assert allow_of(r) == expected_allow(methods), (url, unserved, r.headers["allow"])


def test_head_answers_like_get_without_a_body(
    client: httpx.Client, document: dict[str, Any]
) -> None:
    """Same status and headers as GET (the roster without a token: the same 401 and its
    WWW-Authenticate), and no body."""
    for url, methods in paths(document).items():
        if "GET" not in methods:
            continue
        got = client.get(url)
        head = client.head(url)
        assert head.status_code == got.status_code, (url, head.status_code, got.status_code)
        assert head.content == b""
        same = {k: v for k, v in got.headers.items() if k not in VOLATILE}
        assert {k: v for k, v in head.headers.items() if k not in VOLATILE} == same, url


def test_head_is_405_where_get_is_not_served(
    client: httpx.Client, document: dict[str, Any]
) -> None:
    for url, methods in paths(document).items():
        if "GET" in methods:
            continue
        r = client.head(url)
        assert r.status_code == 405, (url, r.status_code)
        assert allow_of(r) == expected_allow(methods), url


def test_head_sends_no_body_bytes_on_the_wire(server: str) -> None:
    """Read the raw answer: headers, then nothing (no client library hides a stray body)."""
    parts = urlsplit(server)
    with socket.create_connection((parts.hostname, parts.port), timeout=10) as conn:
        conn.sendall(b"HEAD /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        raw = b""
        while chunk := conn.recv(65536):
            raw += chunk
    head, _, rest = raw.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), raw
    assert b"content-length: 15" in head.lower(), head  # the GET body's length: {"status":"ok"}
    assert rest == b"", rest


def test_metrics_names_exactly_one_charset(client: httpx.Client) -> None:
    """Prometheus 2 logs `mime: duplicate parameter name` and Prometheus 3 refuses the scrape
    when a parameter repeats."""
    for response in (client.get("/metrics"), client.head("/metrics")):
        assert response.status_code == 200
        values = response.headers.get_list("content-type")
        assert values == ["text/plain; version=0.0.4; charset=utf-8"], values
        header = Message()
        header["content-type"] = values[0]
        names = [name.lower() for name, _ in header.get_params() or []]
        assert len(names) == len(set(names)), values
        assert header.get_content_type() == "text/plain"
        assert header.get_param("version") == "0.0.4" and header.get_content_charset() == "utf-8"
