"""Wire shapes of the control plane's HTTP API (camelCase JSON), as msgspec structs.

Responses ignore fields they do not know, so an SDK keeps working against a newer server that
adds fields (the API's compatibility policy: fields are only ever added within /v1). Requests are
built by the SDK itself and carry only what the server accepts.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal
from uuid import UUID

import msgspec

SlotState = Literal["registering", "online", "degraded", "offline", "revoked"]
Health = Literal["online", "degraded", "offline"]
SelfReportedHealth = Literal["online", "degraded"]
SessionState = Literal["provisioning", "active", "archived", "closed"]
Role = Literal["owner", "collaborator", "runtime_contributor", "viewer"]
MembershipState = Literal["pending", "active", "suspended", "revoked"]
EventKind = Literal[
    "attached",
    "declared",
    "capabilities_updated",
    "state_changed",
    "health_changed",
    "detached",
    "revoked",
]
Actor = Literal["daemon", "owner", "admin", "sweep"]
Capabilities = dict[str, Any]


class Wire(msgspec.Struct, rename="camel"):
    """Base of every response shape."""


# Attach, declaration and capability-update answers carry the timings the server advertises
# (read from its settings at that moment: a DBA's tuning reaches every daemon at its next write).
# The defaults are the contract's, for a server that predates them.


class Attachment(Wire):
    attachment_id: UUID
    session_id: UUID
    node_id: str
    participant_id: UUID
    state: SlotState
    read_only: bool
    client_version: str
    attached_at: datetime
    heartbeat_interval_seconds: float = 15.0
    degraded_after_seconds: float = 30.0
    offline_after_seconds: float = 60.0


class NodeState(Wire):
    node_id: str
    state: SlotState
    updated_at: datetime
    heartbeat_interval_seconds: float = 15.0
    degraded_after_seconds: float = 30.0
    offline_after_seconds: float = 60.0


class RosterNode(Wire):
    attachment_id: UUID
    node_id: str
    participant_id: UUID
    state: SlotState
    health_state: Health | None
    last_heartbeat_at: datetime | None
    read_only: bool
    capabilities: Capabilities
    client_version: str
    attached_at: datetime


class Roster(Wire):
    nodes: list[RosterNode]
    # Follow the change feed from here: the listed state includes every event up to it.
    revision: int | None = None


class Event(Wire):
    id: int
    at: datetime
    session_id: UUID
    node_id: str
    attachment_id: UUID | None
    kind: EventKind
    actor: Actor
    state: SlotState | None = None
    previous_state: SlotState | None = None
    health_state: Health | None = None
    previous_health_state: Health | None = None
    actor_participant_id: UUID | None = None
    reason: str | None = None
    capabilities: Capabilities | None = None


class EventPage(Wire):
    events: list[Event]
    next: int  # pass as `after` next time


# --- admin ------------------------------------------------------------------------------------


class CreatedParticipant(Wire):
    participant_id: UUID


class IssuedToken(Wire):
    token_id: UUID
    token: str  # shown once: the server keeps only its digest
    expires_at: datetime | None


class TokenInfo(Wire):
    token_id: UUID
    label: str | None
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None


class ParticipantSummary(Wire):
    participant_id: UUID
    display_name: str | None
    created_at: datetime


class Participant(ParticipantSummary):
    """One participant with its tokens' metadata (never a secret or its digest)."""

    tokens: list[TokenInfo]


class CreatedSession(Wire):
    session_id: UUID
    state: SessionState
    min_client_version: str | None


class Session(CreatedSession):
    created_at: datetime
    updated_at: datetime


class Membership(Wire):
    """The answer to a membership change."""

    session_id: UUID
    participant_id: UUID
    role: Role
    state: MembershipState
    joined_at: datetime | None


class SessionMember(Wire):
    participant_id: UUID
    display_name: str | None
    role: Role
    state: MembershipState
    joined_at: datetime | None
    updated_at: datetime


class SessionDetail(Session):
    members: list[SessionMember]


class Floor(Wire):
    session_id: UUID
    min_client_version: str


class ParticipantPage(Wire):
    items: list[ParticipantSummary]
    next: UUID | None  # pass as `after` for the next page; None on the last page


class SessionPage(Wire):
    items: list[Session]
    next: UUID | None


class Problem(Wire):
    """RFC 9457 problem details with the stable machine `code`."""

    type: str = "about:blank"
    title: str = ""
    status: int = 0
    detail: str = ""
    code: str = ""
