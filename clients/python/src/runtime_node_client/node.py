"""`RuntimeNode`: the keep-alive loop a daemon author never has to write.

    async with RuntimeNode(url, token, session_id=s, participant_id=p, node_id="laptop-1",
                           client_version="1.4", capabilities={"python": "3.12"}) as node:
        ...  # the node is attached, declared (unless read-only) and beating
        await node.lost.wait()  # or do work; node.status says where it stands

On entry it attaches and (by default) declares; a background task then heartbeats at the
interval the server advertised (±10 % jitter, so a fleet does not beat in lockstep). On exit —
normal, exception or cancellation — it stops beating and detaches.

When the slot is lost (a heartbeat answered 403: detached elsewhere, revoked, membership
suspended; or 401: the token expired or was revoked) the loop stops at once, records why in
`status.lost` and sets `lost`; it never retries a refusal. 503/429 are retried within the
current interval honouring `Retry-After`; a beat that cannot get through is skipped, not
queued, so an outage ends without a storm.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Awaitable
from dataclasses import dataclass, replace
from types import TracebackType
from typing import Literal
from uuid import UUID

from runtime_node_client.client import ControlPlaneClient
from runtime_node_client.errors import (
    ControlPlaneError,
    FloorExceeded,
    PermissionDenied,
    RetryableError,
    Unauthenticated,
)
from runtime_node_client.models import (
    Attachment,
    Capabilities,
    NodeState,
    SelfReportedHealth,
    SlotState,
)
from runtime_node_client.retry import RetryPolicy

log = logging.getLogger("runtime_node_client")

JITTER = 0.10  # ± share of the interval
LossCause = Literal["permission_denied", "unauthenticated", "detached", "revoked"]
_CAUSE_BY_STATE: dict[SlotState, LossCause] = {"revoked": "revoked", "offline": "detached"}


@dataclass(frozen=True, slots=True)
class SlotLost:
    """Why the node stopped beating. `cause` is `permission_denied` (the server does not say
    more to a caller who lost the slot: detached, revoked or no longer an active member),
    `unauthenticated` (token expired or revoked), or — after `RuntimeNode.diagnose()` —
    `detached` / `revoked` when the roster tells."""

    cause: LossCause
    error: ControlPlaneError | None
    at: float  # time.time()


@dataclass(frozen=True, slots=True)
class NodeStatus:
    """A read-only snapshot of what the SDK knows about its node."""

    node_id: str
    session_id: UUID | None = None
    attachment_id: UUID | None = None
    state: SlotState | None = None  # slot state from the last write's answer
    read_only: bool = False  # below the session's version floor: declarations are refused
    health: SelfReportedHealth = "online"  # what the heartbeats report
    heartbeat_interval: float = 15.0
    last_beat_at: float | None = None  # time.time() of the last 204
    beats: int = 0
    failed_beats: int = 0  # beats that got no 204 within their interval (outage, overload)
    lost: SlotLost | None = None


class RuntimeNode:
    def __init__(
        self,
        base_url: str,
        token: str,
        *,
        session_id: UUID | str,
        participant_id: UUID | str,
        node_id: str,
        client_version: str,
        capabilities: Capabilities,
        declare: bool = True,
        health: SelfReportedHealth = "online",
        client: ControlPlaneClient | None = None,
        detach_reason: str | None = "daemon exit",
    ) -> None:
        self._owns_client = client is None
        self.client = client or ControlPlaneClient(base_url, token)
        self._session_id = str(session_id)
        self._participant_id = str(participant_id)
        self._client_version = client_version
        self._capabilities = dict(capabilities)
        self._declare = declare
        self._detach_reason = detach_reason
        self._status = NodeStatus(node_id=node_id, health=health)
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self.lost = asyncio.Event()
        """Set when the slot is lost; `status.lost` says why."""

    # --- read-only state -------------------------------------------------------------------------

    @property
    def status(self) -> NodeStatus:
        return self._status

    @property
    def node_id(self) -> str:
        return self._status.node_id

    @property
    def capabilities(self) -> Capabilities:
        return dict(self._capabilities)

    # --- lifecycle -------------------------------------------------------------------------------

    async def __aenter__(self) -> RuntimeNode:
        try:
            await self.start()
        except BaseException:
            await self._close_client()
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def start(self) -> Attachment:
        """Attach, declare (unless read-only or `declare=False`), start beating."""
        attachment = await self.client.attach(
            self._session_id,
            participant_id=self._participant_id,
            node_id=self.node_id,
            client_version=self._client_version,
            capabilities=self._capabilities,
            health_state=self._status.health,
        )
        self._status = replace(
            self._status,
            session_id=attachment.session_id,
            attachment_id=attachment.attachment_id,
            state=attachment.state,
            read_only=attachment.read_only,
            heartbeat_interval=attachment.heartbeat_interval_seconds,
            lost=None,
        )
        self.lost.clear()
        if self._declare and not attachment.read_only:
            await self.declare()
        self._task = asyncio.create_task(self._beat_forever(), name=f"heartbeat {self.node_id}")
        return attachment

    async def close(self) -> None:
        """Stop beating and detach (shielded from cancellation, bounded in time)."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        try:
            if self._status.attachment_id is not None and self._status.lost is None:
                detach = self.client.detach(self.node_id, reason=self._detach_reason)
                await asyncio.shield(asyncio.wait_for(detach, timeout=10.0))
                self._status = replace(self._status, state="offline")
        except (ControlPlaneError, TimeoutError) as exc:
            log.warning("detach of %s failed: %s", self.node_id, exc)
        finally:
            await self._close_client()

    async def _close_client(self) -> None:
        if self._owns_client:
            await self.client.aclose()

    # --- writes ----------------------------------------------------------------------------------

    async def declare(self, capabilities: Capabilities | None = None) -> NodeState:
        """Declare the capabilities the daemon validated: the only way to `online`."""
        if capabilities is not None:
            self._capabilities = dict(capabilities)
        return self._apply(await self._write(self.client.declare(self.node_id, self._capabilities)))

    async def update_capabilities(
        self,
        capabilities: Capabilities,
        *,
        health: SelfReportedHealth | None = None,
        reason: str | None = None,
    ) -> NodeState:
        """Replace the capability map (a missing key is a removal), optionally moving the slot
        between online and degraded."""
        result = await self._write(
            self.client.update_capabilities(
                self.node_id, dict(capabilities), health=health, reason=reason
            )
        )
        self._capabilities = dict(capabilities)
        return self._apply(result)

    async def set_health(
        self, health: SelfReportedHealth, *, reason: str | None = None
    ) -> NodeState:
        """Report degraded/online: the slot changes now, the heartbeats carry it from now on."""
        result = await self.update_capabilities(self._capabilities, health=health, reason=reason)
        self._status = replace(self._status, health=health)
        self._wake.set()  # tell the server's liveness view at once, not at the next interval
        return result

    async def _write(self, call: Awaitable[NodeState]) -> NodeState:
        try:
            result = await call
        except FloorExceeded:
            self._status = replace(self._status, read_only=True)
            raise
        return result

    def _apply(self, result: NodeState) -> NodeState:
        self._status = replace(
            self._status, state=result.state, heartbeat_interval=result.heartbeat_interval_seconds
        )
        return result

    # --- slot loss -------------------------------------------------------------------------------

    async def diagnose(self) -> SlotLost | None:
        """After a loss, ask the roster whether the slot was detached or revoked (the heartbeat's
        403 deliberately does not say). Needs the caller to still be an active member."""
        lost = self._status.lost
        if lost is None or lost.cause != "permission_denied":
            return lost
        try:
            roster = await self.client.roster(self._session_id)
        except ControlPlaneError:
            return lost
        for node in roster.nodes:
            if node.attachment_id == self._status.attachment_id:
                cause = _CAUSE_BY_STATE.get(node.state)
                if cause is not None:
                    lost = replace(lost, cause=cause)
                    self._status = replace(self._status, lost=lost, state=node.state)
        return lost

    def _lose(self, cause: LossCause, error: ControlPlaneError) -> None:
        log.warning("runtime node %s lost its slot (%s): %s", self.node_id, cause, error)
        self._status = replace(self._status, lost=SlotLost(cause, error, time.time()))
        self.lost.set()

    # --- the heartbeat loop ----------------------------------------------------------------------

    def _next_delay(self) -> float:
        interval = self._status.heartbeat_interval
        return interval * random.uniform(1 - JITTER, 1 + JITTER)

    async def _beat_forever(self) -> None:
        while True:
            await self._beat_once()
            if self._status.lost is not None:
                return
            self._wake.clear()
            with contextlib.suppress(TimeoutError):  # woken early by set_health()
                await asyncio.wait_for(self._wake.wait(), timeout=self._next_delay())

    async def _beat_once(self) -> None:
        # Retries stay inside this beat's interval: the next beat supersedes a late one.
        budget = RetryPolicy(
            attempts=self.client.retry.attempts,
            base=self.client.retry.base,
            cap=self.client.retry.cap,
            deadline=self._status.heartbeat_interval * 0.8,
        )
        try:
            await self.client.heartbeat(self.node_id, self._status.health, retry=budget)
        except PermissionDenied as exc:
            self._lose("permission_denied", exc)
        except Unauthenticated as exc:
            self._lose("unauthenticated", exc)
        except RetryableError as exc:
            self._status = replace(self._status, failed_beats=self._status.failed_beats + 1)
            log.info("heartbeat of %s not delivered this interval: %s", self.node_id, exc)
        except ControlPlaneError as exc:  # 4xx other than the above: a bug; do not spin
            self._status = replace(self._status, failed_beats=self._status.failed_beats + 1)
            log.error("heartbeat of %s refused: %s", self.node_id, exc)
        else:
            self._status = replace(
                self._status, last_beat_at=time.time(), beats=self._status.beats + 1
            )
