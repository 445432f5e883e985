"""Request and response shapes (msgspec): camelCase, unknown fields rejected, strict types.

Business rules live in SQL; these structs only guard the schema boundary (types, lengths,
enumerations that a daemon may never send), so bad input is refused before any database work.
"""

from __future__ import annotations

import math
import re
from datetime import datetime
from typing import Annotated, Any, Literal, get_args
from uuid import UUID

import msgspec
from msgspec import Meta

from control_plane.config import MAX_CAPABILITIES_BYTES, MAX_CAPABILITIES_DEPTH

# `(?!\n)$`: Python's `$` also matches before a trailing newline; this form does not, and it is
# valid ECMAScript too, so the OpenAPI document carries the same pattern.
VERSION_PATTERN = r"^(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)(?!\n)$"
NODE_ID_PATTERN = r"^[^\x00-\x1f\x7f-\x9f]+(?!\n)$"
_CONTROL_CHARS = re.compile(r"[\x00-\x1f\x7f-\x9f]")

Version = Annotated[str, Meta(max_length=64, pattern=VERSION_PATTERN, examples=["1.4"])]
NodeId = Annotated[str, Meta(min_length=1, max_length=256, pattern=NODE_ID_PATTERN)]
# Not blank, and no NUL (PostgreSQL text cannot hold it; contract §6.10: NUL bytes → 400).
Reason = Annotated[str, Meta(min_length=1, max_length=512, pattern=r"^[^\x00]*[^\s\x00][^\x00]*$")]
Label = Annotated[str, Meta(min_length=1, max_length=200)]
# The enumerations of the SQL CHECKs, written once on this side (tests/db/test_vocabulary.py
# fails when they drift from the constraints in the database).
SlotState = Literal["registering", "online", "degraded", "offline", "revoked"]
HealthState = Literal["online", "degraded", "offline"]
SelfReportedHealth = Literal["online", "degraded"]  # a daemon may never report the others
SessionState = Literal["provisioning", "active", "archived", "closed"]
MembershipRole = Literal["owner", "collaborator", "runtime_contributor", "viewer"]
MembershipState = Literal["pending", "active", "suspended", "revoked"]
SweepMode = Literal["normal", "gap_grace", "stall_hold"]
SLOT_STATES: tuple[str, ...] = get_args(SlotState)
HEALTH_STATES: tuple[str, ...] = get_args(HealthState)
SWEEP_MODES: tuple[str, ...] = get_args(SweepMode)
Capabilities = dict[str, Any]


def is_valid_node_id(value: str) -> bool:
    return 1 <= len(value) <= 256 and _CONTROL_CHARS.search(value) is None


def check_capabilities(value: dict[str, Any], *, non_empty: bool = False) -> None:
    """Size (compact JSON) and depth caps; NUL and non-finite numbers that jsonb cannot hold."""
    if non_empty and not value:
        raise ValueError("capabilities must declare at least one capability")
    if len(msgspec.json.encode(value)) > MAX_CAPABILITIES_BYTES:
        raise ValueError(f"capabilities exceed {MAX_CAPABILITIES_BYTES} bytes of compact JSON")
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            if depth > MAX_CAPABILITIES_DEPTH:
                raise ValueError(f"capabilities nest deeper than {MAX_CAPABILITIES_DEPTH}")
            for key, child in item.items():
                if "\x00" in key:
                    raise ValueError("capabilities contain a NUL character")
                stack.append((child, depth + 1))
        elif isinstance(item, list):
            if depth > MAX_CAPABILITIES_DEPTH:
                raise ValueError(f"capabilities nest deeper than {MAX_CAPABILITIES_DEPTH}")
            stack.extend((child, depth + 1) for child in item)
        elif isinstance(item, str):
            if "\x00" in item:
                raise ValueError("capabilities contain a NUL character")
        elif isinstance(item, float) and not math.isfinite(item):
            raise ValueError("capabilities contain a non-finite number")


class Body(msgspec.Struct, forbid_unknown_fields=True, rename="camel", omit_defaults=True):
    """Base of every request body."""


# --- runtime-node requests -------------------------------------------------------------------


class AttachRequest(Body):
    participant_id: UUID
    node_id: NodeId
    client_version: Version
    capabilities: Capabilities
    health_state: SelfReportedHealth  # accepted, not stored: a fresh slot is registering

    def __post_init__(self) -> None:
        if not is_valid_node_id(self.node_id):
            raise ValueError("nodeId must be 1-256 characters without control characters")
        check_capabilities(self.capabilities)


class DeclarationRequest(Body):
    capabilities: Capabilities

    def __post_init__(self) -> None:
        check_capabilities(self.capabilities, non_empty=True)


class HealthChanges(Body):
    state: SelfReportedHealth
    reason: Reason | None = None


class CapabilityUpdateRequest(Body):
    capabilities: Capabilities
    health_changes: HealthChanges | None = None  # null means absent

    def __post_init__(self) -> None:
        check_capabilities(self.capabilities)


class HeartbeatRequest(Body):
    health_state: SelfReportedHealth


class ReasonRequest(Body):
    """Detach and revoke: an optional reason, stored in the event (contract §9)."""

    reason: Reason | None = None


# --- admin requests ---------------------------------------------------------------------------


class CreateParticipantRequest(Body):
    display_name: Label | None = None


class IssueTokenRequest(Body):
    label: Label | None = None
    expires_in_seconds: Annotated[int, Meta(ge=1, le=2_147_483_647)] | None = None


class CreateSessionRequest(Body):
    min_client_version: Version | None = None
    state: SessionState = "active"


class PutMembershipRequest(Body):
    role: MembershipRole
    state: MembershipState


class RaiseFloorRequest(Body):
    # null is accepted by the schema so that "clearing" gets its 409 from the SQL rule.
    min_client_version: Version | None


class SessionStateRequest(Body):
    state: SessionState


# --- responses (documentation: the SQL functions build the exact JSON) -------------------------
# Timestamps are `datetime` (JSON Schema `format: date-time`): PostgreSQL renders timestamptz in
# jsonb as ISO 8601 with an offset, which every RFC 3339 parser reads.


class Response_(msgspec.Struct, rename="camel"):
    """Base of response shapes."""


class AdvertisedTiming(Response_):
    """contract §10: the settings at the moment of the write; daemons beat at the interval."""

    heartbeat_interval_seconds: float
    degraded_after_seconds: float
    offline_after_seconds: float


class AttachResult(AdvertisedTiming):
    attachment_id: UUID
    session_id: UUID
    node_id: NodeId
    participant_id: UUID
    state: SlotState
    read_only: bool
    client_version: Version
    attached_at: datetime


class NodeStateResult(AdvertisedTiming):
    node_id: NodeId
    state: SlotState
    updated_at: datetime


class RosterNode(Response_):
    attachment_id: UUID
    node_id: NodeId
    participant_id: UUID
    state: SlotState
    health_state: HealthState | None
    last_heartbeat_at: datetime | None
    read_only: bool
    capabilities: dict[str, Any]
    client_version: Version
    attached_at: datetime


class RosterResult(Response_):
    revision: int  # the event id up to which `nodes` includes every event (contract §9)
    nodes: list[RosterNode]


class RuntimeNodeEvent(Response_):
    """One row of runtime_node_events (contract §9); absent values are null."""

    id: int
    at: datetime
    session_id: UUID
    node_id: NodeId
    attachment_id: UUID
    kind: Literal[
        "attached",
        "declared",
        "capabilities_updated",
        "state_changed",
        "health_changed",
        "detached",
        "revoked",
    ]
    state: SlotState
    previous_state: SlotState | None
    health_state: HealthState | None
    previous_health_state: HealthState | None
    actor: Literal["daemon", "owner", "admin", "sweep"]
    actor_participant_id: UUID | None
    reason: str | None
    capabilities: dict[str, Any] | None


class EventsPage(Response_):
    events: list[RuntimeNodeEvent]
    next: int  # pass as `after` next time


class ParticipantResult(Response_):
    participant_id: UUID


class TokenResult(Response_):
    token_id: UUID
    token: str
    expires_at: datetime | None


class SessionResult(Response_):
    session_id: UUID
    state: SessionState
    min_client_version: Version | None


class MembershipResult(Response_):
    session_id: UUID
    participant_id: UUID
    role: MembershipRole
    state: MembershipState
    joined_at: datetime | None


class FloorResult(Response_):
    session_id: UUID
    min_client_version: Version


# --- admin reads (contract §11) ------------------------------------------------------------------


class ParticipantSummary(Response_):
    participant_id: UUID
    display_name: str | None
    created_at: datetime


class ParticipantPage(Response_):
    items: list[ParticipantSummary]
    next: UUID | None  # pass as `after` for the next page; null on the last page


class TokenMetadata(Response_):
    token_id: UUID
    label: str | None
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None


class ParticipantDetail(Response_):
    participant_id: UUID
    display_name: str | None
    created_at: datetime
    tokens: list[TokenMetadata]


class SessionSummary(Response_):
    session_id: UUID
    state: SessionState
    min_client_version: Version | None
    created_at: datetime
    updated_at: datetime


class SessionPage(Response_):
    items: list[SessionSummary]
    next: UUID | None  # pass as `after` for the next page; null on the last page


class SessionMember(Response_):
    participant_id: UUID
    display_name: str | None
    role: MembershipRole
    state: MembershipState
    joined_at: datetime | None
    updated_at: datetime


class SessionDetail(Response_):
    session_id: UUID
    state: SessionState
    min_client_version: Version | None
    created_at: datetime
    updated_at: datetime
    members: list[SessionMember]


# --- operations endpoints ---------------------------------------------------------------------


class HealthResult(Response_):
    status: Literal["ok"]


class SweepStatus(Response_):
    """The liveness sweep's last run and outage-guard mode (`control_plane.sweep_state`)."""

    mode: SweepMode
    last_started_at: datetime | None
    last_finished_at: datetime | None
    age_seconds: float | None
    last_duration_ms: float | None
    last_transitions: int
    total_runs: int
    total_transitions: int
    resumed_at: datetime | None
    stall_since: datetime | None
    interval_seconds: float


class ReadinessResult(Response_):
    """`status` is `ready` with no reasons (200) or `not ready` with at least one (503)."""

    status: Literal["ready", "not ready"]
    reasons: list[str]
    sweep: SweepStatus | None  # null when the database could not be read
