"""Request plumbing shared by every handler: strict body decoding, path checks, JSON replies."""

from __future__ import annotations

import re
from typing import Any, TypeVar
from uuid import UUID

import msgspec
from litestar import Request, Response

from control_plane import errors
from control_plane.errors import DomainError
from control_plane.schemas import is_valid_node_id

T = TypeVar("T")

JSON_MEDIA_TYPE = "application/json"


_decoders: dict[type[Any], msgspec.json.Decoder[Any]] = {}


def _decoder(type_: type[T]) -> msgspec.json.Decoder[T]:
    decoder = _decoders.get(type_)
    if decoder is None:
        # Strict: no string-to-number coercion; unknown fields are rejected by the structs.
        decoder = _decoders[type_] = msgspec.json.Decoder(type_, strict=True)
    return decoder


def _is_json(content_type: str | None) -> bool:
    if not content_type:
        return False
    media = content_type.split(";", 1)[0].strip().lower()
    return media == JSON_MEDIA_TYPE or (
        media.startswith("application/") and media.endswith("+json")
    )


async def read_body(
    request: Request[Any, Any, Any], type_: type[T], *, optional: bool = False
) -> T:
    """Decode the JSON body strictly into `type_`, or refuse with 415/400 (413 by Litestar)."""
    raw = await request.body()
    if not raw:
        if optional:
            return _decoder(type_).decode(b"{}")
        raise DomainError(errors.INVALID, "a JSON request body is required")
    if not _is_json(request.headers.get("content-type")):
        raise DomainError(
            errors.UNSUPPORTED_MEDIA_TYPE, "the request body must be application/json"
        )
    try:
        return _decoder(type_).decode(raw)
    except msgspec.ValidationError as exc:
        raise DomainError(errors.INVALID, str(exc)) from None
    except (msgspec.DecodeError, UnicodeDecodeError):
        # msgspec raises UnicodeDecodeError (not DecodeError) for bytes that are not UTF-8.
        raise DomainError(errors.INVALID, "the request body is not valid JSON") from None


_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")


def path_uuid(value: str, name: str) -> UUID:
    """A canonical UUID in any case (responses are lower case), else 400."""
    if _UUID.fullmatch(value) is None:
        raise DomainError(errors.INVALID, f"{name} is not a UUID")
    return UUID(value)


def check_query(request: Request[Any, Any, Any], allowed: frozenset[str]) -> None:
    """Refuse (400) a query string with an unknown or repeated parameter: a mistyped `limt=5`
    must not silently mean the default, nor `limit=5&limit=9` mean either."""
    seen: set[str] = set()
    for name, _ in request.query_params.multi_items():
        if name not in allowed:
            raise DomainError(errors.INVALID, f"unknown query parameter {name!r}")
        if name in seen:
            raise DomainError(errors.INVALID, f"query parameter {name!r} is given more than once")
        seen.add(name)


_INTEGER = re.compile(r"[+-]?[0-9]{1,20}")
_INT4 = (-(2**31), 2**31 - 1)


def query_int(value: str | None, name: str) -> int | None:
    """A decimal integer query value, saturated to PostgreSQL's integer range: the SQL function
    judges the range, and a saturated value is out of range exactly when the original is."""
    if value is None:
        return None
    if _INTEGER.fullmatch(value) is None:
        raise DomainError(errors.INVALID, f"{name} must be an integer")
    return max(_INT4[0], min(int(value), _INT4[1]))


def query_uuid(value: str | None, name: str) -> UUID | None:
    return None if value is None else path_uuid(value, name)


def path_node_id(value: str) -> str:
    if not is_valid_node_id(value):
        raise DomainError(
            errors.INVALID, "nodeId must be 1-256 characters without control characters"
        )
    return value


def json_response(payload: str | bytes, status: int = 200) -> Response[Any]:
    """Pass a JSON document built by a SQL function (json, jsonb or text) straight through."""
    return Response(payload, status_code=status, media_type=JSON_MEDIA_TYPE)


def no_content() -> Response[None]:
    return Response(None, status_code=204)


def encode_json(value: Any) -> str:
    return msgspec.json.encode(value).decode()
