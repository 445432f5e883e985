"""`cpctl`: the operator's command line for the control plane (install: the `cli` extra).

Reads the service URL from `CONTROL_PLANE_URL` (default http://127.0.0.1:8000) and the bearer
from `CONTROL_PLANE_TOKEN`, else `CONTROL_PLANE_ADMIN_TOKEN`. Every read takes `--json` (one JSON
document on stdout; `watch --json` prints one event per line). Exit codes scripts can rely on:

| code | meaning |
|---|---|
| 0 | success |
| 1 | unexpected failure (a bug, a 500) |
| 2 | usage error (bad arguments) |
| 3 | not found (404) |
| 4 | conflict (409, 410) |
| 5 | not authenticated or not allowed (401, 403) |
| 6 | unavailable after retries (503, 429, no connection) |
| 7 | invalid request (400, 413, 415) |

Shell completion: `cpctl --install-completion`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, TypeVar

import msgspec
import typer

from runtime_node_client.client import ControlPlaneClient
from runtime_node_client.errors import (
    Conflict,
    ControlPlaneError,
    CursorExpired,
    Forbidden,
    InvalidRequest,
    NotFound,
    PermissionDenied,
    RetryableError,
    TooLarge,
    Unauthenticated,
    UnsupportedMediaType,
)
from runtime_node_client.feed import Resync
from runtime_node_client.models import Event

T = TypeVar("T")
DEFAULT_URL = "http://127.0.0.1:8000"

EXIT_UNEXPECTED, EXIT_NOT_FOUND, EXIT_CONFLICT, EXIT_AUTH, EXIT_UNAVAILABLE, EXIT_INVALID = (
    1, 3, 4, 5, 6, 7
)  # fmt: skip
_EXIT_BY_ERROR: tuple[tuple[type[ControlPlaneError], int], ...] = (
    (NotFound, EXIT_NOT_FOUND),
    (Conflict, EXIT_CONFLICT),
    (CursorExpired, EXIT_CONFLICT),
    (Unauthenticated, EXIT_AUTH),
    (Forbidden, EXIT_AUTH),
    (PermissionDenied, EXIT_AUTH),
    (RetryableError, EXIT_UNAVAILABLE),
    (InvalidRequest, EXIT_INVALID),
    (TooLarge, EXIT_INVALID),
    (UnsupportedMediaType, EXIT_INVALID),
)


class SessionState(StrEnum):
    provisioning = "provisioning"
    active = "active"
    archived = "archived"
    closed = "closed"


class Role(StrEnum):
    owner = "owner"
    collaborator = "collaborator"
    runtime_contributor = "runtime_contributor"
    viewer = "viewer"


class MemberState(StrEnum):
    pending = "pending"
    active = "active"
    suspended = "suspended"
    revoked = "revoked"


app = typer.Typer(
    name="cpctl",
    help="Operate the runtime-node control plane (CONTROL_PLANE_URL, CONTROL_PLANE_TOKEN).",
    no_args_is_help=True,
)
participants = typer.Typer(help="Participants (admin).", no_args_is_help=True)
tokens = typer.Typer(help="Participant tokens (admin).", no_args_is_help=True)
sessions = typer.Typer(help="Sessions (admin).", no_args_is_help=True)
members = typer.Typer(help="Session memberships (admin).", no_args_is_help=True)
app.add_typer(participants, name="participants")
app.add_typer(tokens, name="tokens")
app.add_typer(sessions, name="sessions")
app.add_typer(members, name="members")

JsonFlag = Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")]


def _client() -> ControlPlaneClient:
    token = os.environ.get("CONTROL_PLANE_TOKEN") or os.environ.get("CONTROL_PLANE_ADMIN_TOKEN")
    if not token:
        typer.echo("cpctl: set CONTROL_PLANE_TOKEN (or CONTROL_PLANE_ADMIN_TOKEN)", err=True)
        raise typer.Exit(2)
    return ControlPlaneClient(os.environ.get("CONTROL_PLANE_URL") or DEFAULT_URL, token)


def _run(call: Callable[[ControlPlaneClient], Awaitable[T]]) -> T:
    async def go() -> T:
        async with _client() as client:
            return await call(client)

    try:
        return asyncio.run(go())
    except ControlPlaneError as exc:
        typer.echo(f"cpctl: {exc}", err=True)
        raise typer.Exit(_exit_code(exc)) from None


def _exit_code(exc: ControlPlaneError) -> int:
    for cls, code in _EXIT_BY_ERROR:
        if isinstance(exc, cls):
            return code
    return EXIT_UNEXPECTED


def _plain(value: Any) -> Any:
    return msgspec.to_builtins(value)


def _emit_json(value: Any) -> None:
    typer.echo(json.dumps(_plain(value), indent=2, sort_keys=False))


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, datetime):
        return value.isoformat(timespec="seconds")
    if isinstance(value, dict | list):
        return json.dumps(value, separators=(",", ":"))
    return str(value)


def _table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    """A plain aligned table (no colour: safe to pipe)."""
    cells = [[_cell(v) for v in row] for row in rows]
    widths = [max([len(h), *(len(r[i]) for r in cells)]) for i, h in enumerate(headers)]
    typer.echo("  ".join(h.upper().ljust(w) for h, w in zip(headers, widths, strict=True)))
    for row in cells:
        typer.echo("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())


def _record(value: Any, as_json: bool) -> None:
    if as_json:
        _emit_json(value)
        return
    for key, item in _plain(value).items():
        if not isinstance(item, list):
            typer.echo(f"{key}: {_cell(item)}")


# --- participants -------------------------------------------------------------------------------


@participants.command("create")
def participant_create(
    name: Annotated[str | None, typer.Option("--name", help="Display name.")] = None,
    as_json: JsonFlag = False,
) -> None:
    """Create a participant; prints its id."""
    created = _run(lambda c: c.create_participant(name))
    _emit_json(created) if as_json else typer.echo(created.participant_id)


@participants.command("list")
def participant_list(
    limit: Annotated[int, typer.Option(min=1, max=1000)] = 100,
    after: Annotated[str | None, typer.Option(help="Cursor: the previous page's next.")] = None,
    as_json: JsonFlag = False,
) -> None:
    """List participants (keyset pages: pass --after NEXT for the next one)."""
    page = _run(lambda c: c.list_participants(limit=limit, after=after))
    if as_json:
        _emit_json(page)
        return
    _table(
        ["participant", "name", "created"],
        [[p.participant_id, p.display_name, p.created_at] for p in page.items],
    )
    if page.next:
        typer.echo(f"next: {page.next}", err=True)


@participants.command("show")
def participant_show(participant_id: str, as_json: JsonFlag = False) -> None:
    """A participant with its tokens' metadata (never the secrets)."""
    participant = _run(lambda c: c.get_participant(participant_id))
    if as_json:
        _emit_json(participant)
        return
    _record(participant, False)
    _table(
        ["token", "label", "created", "expires", "revoked"],
        [
            [t.token_id, t.label, t.created_at, t.expires_at, t.revoked_at]
            for t in participant.tokens
        ],
    )


# --- tokens -------------------------------------------------------------------------------------


@tokens.command("issue")
def token_issue(
    participant_id: str,
    label: Annotated[str | None, typer.Option()] = None,
    expires_in: Annotated[int | None, typer.Option(min=1, help="Lifetime in seconds.")] = None,
    as_json: JsonFlag = False,
) -> None:
    """Issue a token; prints the secret once (the server keeps only its digest)."""
    issued = _run(
        lambda c: c.issue_token(participant_id, label=label, expires_in_seconds=expires_in)
    )
    _emit_json(issued) if as_json else typer.echo(issued.token)


@tokens.command("list")
def token_list(participant_id: str, as_json: JsonFlag = False) -> None:
    """A participant's tokens (metadata only)."""
    participant = _run(lambda c: c.get_participant(participant_id))
    if as_json:
        _emit_json(participant.tokens)
        return
    _table(
        ["token", "label", "created", "expires", "revoked"],
        [
            [t.token_id, t.label, t.created_at, t.expires_at, t.revoked_at]
            for t in participant.tokens
        ],
    )


@tokens.command("revoke")
def token_revoke(token_id: str) -> None:
    """Revoke a token: its next request is refused (401)."""
    _run(lambda c: c.revoke_token(token_id))


# --- sessions -----------------------------------------------------------------------------------


@sessions.command("create")
def session_create(
    floor: Annotated[str | None, typer.Option(help="Minimum client version, MAJOR.MINOR.")] = None,
    state: Annotated[SessionState | None, typer.Option()] = None,
    as_json: JsonFlag = False,
) -> None:
    """Create a session; prints its id."""
    created = _run(
        lambda c: c.create_session(min_client_version=floor, state=state.value if state else None)
    )
    _emit_json(created) if as_json else typer.echo(created.session_id)


@sessions.command("list")
def session_list(
    state: Annotated[SessionState | None, typer.Option()] = None,
    limit: Annotated[int, typer.Option(min=1, max=1000)] = 100,
    after: Annotated[str | None, typer.Option(help="Cursor: the previous page's next.")] = None,
    as_json: JsonFlag = False,
) -> None:
    """List sessions, optionally of one state."""
    page = _run(
        lambda c: c.list_sessions(state=state.value if state else None, limit=limit, after=after)
    )
    if as_json:
        _emit_json(page)
        return
    _table(
        ["session", "state", "floor", "created"],
        [[s.session_id, s.state, s.min_client_version, s.created_at] for s in page.items],
    )
    if page.next:
        typer.echo(f"next: {page.next}", err=True)


@sessions.command("show")
def session_show(session_id: str, as_json: JsonFlag = False) -> None:
    """A session with its members."""
    session = _run(lambda c: c.get_session(session_id))
    if as_json:
        _emit_json(session)
        return
    _record(session, False)
    _table(
        ["participant", "role", "state", "joined"],
        [[m.participant_id, m.role, m.state, m.joined_at] for m in session.members],
    )


@sessions.command("state")
def session_state(session_id: str, state: SessionState, as_json: JsonFlag = False) -> None:
    """Move a session forward: provisioning → active → archived → closed."""
    result = _run(lambda c: c.set_session_state(session_id, state.value))
    _record(result, as_json)


@sessions.command("floor")
def session_floor(session_id: str, min_client_version: str, as_json: JsonFlag = False) -> None:
    """Raise the session's version floor (lowering is refused)."""
    result = _run(lambda c: c.raise_floor(session_id, min_client_version))
    _record(result, as_json)


# --- members ------------------------------------------------------------------------------------


@members.command("set")
def member_set(
    session_id: str,
    participant_id: str,
    role: Annotated[Role, typer.Option()],
    state: Annotated[MemberState, typer.Option()] = MemberState.active,
    as_json: JsonFlag = False,
) -> None:
    """Add a member or change a member's role or state."""
    result = _run(
        lambda c: c.put_membership(session_id, participant_id, role=role.value, state=state.value)
    )
    _record(result, as_json)


# --- fleet ---------------------------------------------------------------------------------------


@app.command("roster")
def roster(session_id: str, as_json: JsonFlag = False) -> None:
    """A session's nodes: slot state, liveness, version, capabilities."""
    result = _run(lambda c: c.roster(session_id))
    if as_json:
        _emit_json(result)
        return
    _table(
        ["node", "state", "health", "last beat", "read-only", "version", "capabilities"],
        [
            [
                n.node_id,
                n.state,
                n.health_state,
                n.last_heartbeat_at,
                "yes" if n.read_only else "no",
                n.client_version,
                n.capabilities,
            ]
            for n in result.nodes
        ],
    )
    if result.revision is not None:
        typer.echo(f"revision: {result.revision}", err=True)


@app.command("watch")
def watch(
    session_id: str,
    after: Annotated[int | None, typer.Option(help="Follow from this event id.")] = None,
    count: Annotated[int | None, typer.Option(min=1, help="Stop after this many events.")] = None,
    as_json: JsonFlag = False,
) -> None:
    """Follow a session's events live (Ctrl-C to stop). Without --after: list, then follow."""

    async def follow(client: ControlPlaneClient) -> None:
        seen = 0
        async with contextlib.aclosing(client.watch(session_id, after=after)) as items:
            async for item in items:
                if isinstance(item, Resync):
                    _print_resync(item, as_json)
                    continue
                _print_event(item, as_json)
                seen += 1
                if count is not None and seen >= count:
                    return

    try:
        _run(follow)
    except KeyboardInterrupt:
        raise typer.Exit(0) from None


def _print_resync(item: Resync, as_json: bool) -> None:
    if as_json:
        line = {"resync": {"revision": item.roster.revision, "nodes": len(item.roster.nodes)}}
        typer.echo(json.dumps(line))
    else:
        typer.echo(f"# roster: {len(item.roster.nodes)} node(s), revision {item.roster.revision}")
    sys.stdout.flush()


def _print_event(event: Event, as_json: bool) -> None:
    if as_json:
        typer.echo(msgspec.json.encode(event).decode())
    else:
        slot = f"{event.previous_state or '-'}→{event.state or '-'}"
        health = f"{event.previous_health_state or '-'}→{event.health_state or '-'}"
        reason = f"  ({event.reason})" if event.reason else ""
        typer.echo(
            f"{event.id:>8}  {_cell(event.at)}  {event.node_id}  {event.kind}  slot {slot}"
            f"  health {health}  by {event.actor}{reason}"
        )
    sys.stdout.flush()


@app.command("revoke")
def revoke(
    session_id: str,
    node_id: str,
    reason: Annotated[str | None, typer.Option()] = None,
) -> None:
    """Revoke a node's slot in a session (terminal)."""
    _run(lambda c: c.revoke(session_id, node_id, reason=reason))


def main() -> None:
    app()


if __name__ == "__main__":
    main()
