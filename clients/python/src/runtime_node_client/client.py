"""`ControlPlaneClient`: one typed async method per API call, retries included.

Participant calls (attach, declaration, heartbeat, ...) take a participant token; admin calls
take the admin token. The same class serves both: pass the token you have.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator, Mapping
from typing import Any, TypeVar
from uuid import UUID

import httpx
import msgspec

from runtime_node_client import feed
from runtime_node_client.errors import (
    ControlPlaneError,
    RetryableError,
    TransportError,
    error_from_response,
)
from runtime_node_client.models import (
    Attachment,
    Capabilities,
    CreatedParticipant,
    CreatedSession,
    Event,
    EventPage,
    Floor,
    IssuedToken,
    Membership,
    MembershipState,
    NodeState,
    Participant,
    ParticipantPage,
    Role,
    Roster,
    SelfReportedHealth,
    SessionDetail,
    SessionPage,
    SessionState,
)
from runtime_node_client.retry import RetryPolicy

T = TypeVar("T")
USER_AGENT = "runtime-node-client/0.2"
# Methods whose repetition cannot change the outcome: retried after a lost connection too.
# Every runtime-node write is idempotent by the contract (attach re-handshakes, declaration and
# capability updates replace, detach and revoke are no-ops once done); admin creates are not.
_IDEMPOTENT = {"GET", "PUT", "DELETE", "HEAD"}


def _path_segment(value: str) -> str:
    return httpx.URL("/" + value).raw_path.decode("ascii")[1:].replace("/", "%2F")


class ControlPlaneClient:
    """Async client of the control plane.

    >>> async with ControlPlaneClient("http://127.0.0.1:8000", token) as cp:
    ...     roster = await cp.roster(session_id)
    """

    def __init__(
        self,
        base_url: str,
        token: str,
        *,
        timeout: float = 10.0,
        retry: RetryPolicy | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.retry = retry or RetryPolicy()
        self._http = httpx.AsyncClient(
            base_url=self.base_url,
            timeout=timeout,
            transport=transport,
            headers={"Authorization": f"Bearer {token}", "User-Agent": USER_AGENT},
        )

    async def __aenter__(self) -> ControlPlaneClient:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    @property
    def http(self) -> httpx.AsyncClient:
        """The underlying httpx client (for streaming calls)."""
        return self._http

    # --- plumbing -----------------------------------------------------------------------------

    async def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: Mapping[str, str | int] | None = None,
        retry: RetryPolicy | None = None,
        idempotent: bool | None = None,
        timeout: float | None = None,
    ) -> httpx.Response:
        """One API call with retries; returns the 2xx response or raises `ControlPlaneError`."""
        policy = retry or self.retry
        safe = method in _IDEMPOTENT if idempotent is None else idempotent
        content = msgspec.json.encode(json) if json is not None else None
        headers = {"Content-Type": "application/json"} if content is not None else None
        started = time.monotonic()
        attempt = 0
        while True:
            attempt += 1
            try:
                response = await self._http.request(
                    method,
                    path,
                    content=content,
                    params=params,
                    headers=headers,
                    timeout=timeout if timeout is not None else httpx.USE_CLIENT_DEFAULT,
                )
            except httpx.TransportError as exc:
                error: ControlPlaneError = TransportError(f"{type(exc).__name__}: {exc}")
                retryable = safe
            else:
                if response.is_success:
                    return response
                error = error_from_response(response)
                retryable = isinstance(error, RetryableError)
            if not retryable or attempt >= policy.attempts:
                raise error
            wait = policy.backoff(attempt, error.retry_after)
            if time.monotonic() - started + wait > policy.deadline:
                raise error
            await asyncio.sleep(wait)

    async def _call(self, method: str, path: str, into: type[T], **kw: Any) -> T:
        response = await self.request(method, path, **kw)
        return msgspec.json.decode(response.content, type=into)

    # --- runtime nodes (participant token) -----------------------------------------------------

    async def attach(
        self,
        session_id: UUID | str,
        *,
        participant_id: UUID | str,
        node_id: str,
        client_version: str,
        capabilities: Capabilities,
        health_state: SelfReportedHealth = "online",
    ) -> Attachment:
        body = {
            "participantId": str(participant_id),
            "nodeId": node_id,
            "clientVersion": client_version,
            "capabilities": capabilities,
            "healthState": health_state,
        }
        # Attach is a re-handshake when repeated by the same owner: safe to retry.
        return await self._call(
            "POST", f"/v1/sessions/{session_id}/runtime-nodes", Attachment, json=body,
            idempotent=True,
        )  # fmt: skip

    async def declare(self, node_id: str, capabilities: Capabilities) -> NodeState:
        return await self._call(
            "POST",
            f"/v1/runtime-nodes/{_path_segment(node_id)}/declaration",
            NodeState,
            json={"capabilities": capabilities},
            idempotent=True,
        )

    async def update_capabilities(
        self,
        node_id: str,
        capabilities: Capabilities,
        *,
        health: SelfReportedHealth | None = None,
        reason: str | None = None,
    ) -> NodeState:
        body: dict[str, Any] = {"capabilities": capabilities}
        if health is not None:
            body["healthChanges"] = {"state": health, **({"reason": reason} if reason else {})}
        return await self._call(
            "PUT", f"/v1/runtime-nodes/{_path_segment(node_id)}/capabilities", NodeState, json=body
        )

    async def heartbeat(
        self,
        node_id: str,
        health: SelfReportedHealth = "online",
        *,
        retry: RetryPolicy | None = None,
    ) -> None:
        await self.request(
            "POST",
            f"/v1/runtime-nodes/{_path_segment(node_id)}/heartbeat",
            json={"healthState": health},
            idempotent=True,
            retry=retry,
        )

    async def detach(self, node_id: str, *, reason: str | None = None) -> None:
        await self.request(
            "POST",
            f"/v1/runtime-nodes/{_path_segment(node_id)}/detach",
            json={"reason": reason} if reason else None,
            idempotent=True,
        )

    async def roster(self, session_id: UUID | str) -> Roster:
        return await self._call("GET", f"/v1/sessions/{session_id}/runtime-nodes", Roster)

    async def revoke(
        self, session_id: UUID | str, node_id: str, *, reason: str | None = None
    ) -> None:
        """Session owner's participant token, or the admin token."""
        await self.request(
            "POST",
            f"/v1/sessions/{session_id}/runtime-nodes/{_path_segment(node_id)}/revoke",
            json={"reason": reason} if reason else None,
            idempotent=True,
        )

    # --- change feed ---------------------------------------------------------------------------

    async def events(
        self, session_id: UUID | str, *, after: int | None = None, limit: int = 100, wait: float = 0
    ) -> EventPage:
        """One page of the session's change feed (long-poll with `wait` > 0)."""
        params: dict[str, str | int] = {"limit": limit}
        if after is not None:
            params["after"] = after
        if wait:
            params["wait"] = int(wait)
        return await self._call(
            "GET",
            f"/v1/sessions/{session_id}/runtime-nodes/events",
            EventPage,
            params=params,
            timeout=wait + 10.0,
        )

    def watch(
        self, session_id: UUID | str, *, after: int | None = None
    ) -> AsyncGenerator[Event | feed.Resync, None]:
        """Follow the session's events forever (Server-Sent Events), resuming after
        reconnects with `Last-Event-ID`. Without `after` it lists the roster first and yields a
        `Resync` with it; it yields a `Resync` again whenever the cursor expired (410). To stop
        early, iterate it inside `contextlib.aclosing(...)` so its HTTP stream closes then."""
        return feed.watch(self, str(session_id), after=after)

    # --- admin (admin token) -------------------------------------------------------------------

    async def create_participant(self, display_name: str | None = None) -> CreatedParticipant:
        body = {"displayName": display_name} if display_name else {}
        return await self._call("POST", "/v1/admin/participants", CreatedParticipant, json=body)

    async def issue_token(
        self,
        participant_id: UUID | str,
        *,
        label: str | None = None,
        expires_in_seconds: int | None = None,
    ) -> IssuedToken:
        body: dict[str, Any] = {}
        if label:
            body["label"] = label
        if expires_in_seconds is not None:
            body["expiresInSeconds"] = expires_in_seconds
        return await self._call(
            "POST", f"/v1/admin/participants/{participant_id}/tokens", IssuedToken, json=body
        )

    async def revoke_token(self, token_id: UUID | str) -> None:
        await self.request("DELETE", f"/v1/admin/tokens/{token_id}")

    async def create_session(
        self, *, min_client_version: str | None = None, state: SessionState | None = None
    ) -> CreatedSession:
        body: dict[str, Any] = {}
        if min_client_version:
            body["minClientVersion"] = min_client_version
        if state:
            body["state"] = state
        return await self._call("POST", "/v1/admin/sessions", CreatedSession, json=body)

    async def put_membership(
        self,
        session_id: UUID | str,
        participant_id: UUID | str,
        *,
        role: Role,
        state: MembershipState = "active",
    ) -> Membership:
        return await self._call(
            "PUT",
            f"/v1/admin/sessions/{session_id}/members/{participant_id}",
            Membership,
            json={"role": role, "state": state},
        )

    async def raise_floor(self, session_id: UUID | str, min_client_version: str) -> Floor:
        return await self._call(
            "PUT",
            f"/v1/admin/sessions/{session_id}/min-client-version",
            Floor,
            json={"minClientVersion": min_client_version},
        )

    async def set_session_state(
        self, session_id: UUID | str, state: SessionState
    ) -> CreatedSession:
        return await self._call(
            "PUT", f"/v1/admin/sessions/{session_id}/state", CreatedSession, json={"state": state}
        )

    async def list_participants(
        self, *, limit: int = 100, after: UUID | str | None = None
    ) -> ParticipantPage:
        params: dict[str, str | int] = {"limit": limit}
        if after:
            params["after"] = str(after)
        return await self._call("GET", "/v1/admin/participants", ParticipantPage, params=params)

    async def get_participant(self, participant_id: UUID | str) -> Participant:
        return await self._call("GET", f"/v1/admin/participants/{participant_id}", Participant)

    async def list_sessions(
        self,
        *,
        state: SessionState | None = None,
        limit: int = 100,
        after: UUID | str | None = None,
    ) -> SessionPage:
        params: dict[str, str | int] = {"limit": limit}
        if state:
            params["state"] = state
        if after:
            params["after"] = str(after)
        return await self._call("GET", "/v1/admin/sessions", SessionPage, params=params)

    async def get_session(self, session_id: UUID | str) -> SessionDetail:
        return await self._call("GET", f"/v1/admin/sessions/{session_id}", SessionDetail)
