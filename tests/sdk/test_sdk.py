"""The SDK against the real server: lifecycle, read-only admission, slot loss, retries through a
real database outage, one exception class per problem code, and wire shapes that match the
served OpenAPI document."""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest
from runtime_node_client import ControlPlaneClient, Resync, RetryPolicy, RuntimeNode, models
from runtime_node_client import errors as sdk_errors

from control_plane import errors as server_errors
from tests.conftest import start_server
from tests.sdk.conftest import DatabaseLink, World, make_world


def node_id() -> str:
    return f"sdk-{secrets.token_hex(6)}"


def runtime_node(world: World, nid: str, **kw: Any) -> RuntimeNode:
    return RuntimeNode(
        world.base_url,
        world.token,
        session_id=world.session_id,
        participant_id=world.participant_id,
        node_id=nid,
        client_version=kw.pop("client_version", "1.4"),
        capabilities=kw.pop("capabilities", {"python": "3.12"}),
        **kw,
    )


async def roster_row(world: World, nid: str) -> models.RosterNode:
    async with ControlPlaneClient(world.base_url, world.token) as client:
        roster = await client.roster(world.session_id)
    return next(n for n in roster.nodes if n.node_id == nid)


async def eventually(check: Callable[[], Awaitable[bool]], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await check():
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"not within {timeout}s: {what}")


def test_lifecycle_attach_declare_beat_update_detach(world: World, fast_timings: None) -> None:
    nid = node_id()

    async def scenario() -> None:
        async with runtime_node(world, nid) as node:
            assert node.status.state == "online"  # attached, then declared
            assert node.status.read_only is False
            assert node.status.heartbeat_interval == 1.0  # advertised by the server
            await eventually(lambda: _beats_at_least(node, 3), 6, "three beats")
            row = await roster_row(world, nid)
            assert (row.state, row.health_state) == ("online", "online")
            assert row.capabilities == {"python": "3.12"}

            await node.set_health("degraded", reason="disk nearly full")
            assert node.status.state == "degraded" and node.status.health == "degraded"
            await eventually(
                lambda: _roster_is(world, nid, "degraded", "degraded"), 4, "degraded in roster"
            )
            await node.update_capabilities({"python": "3.13"}, health="online")
            row = await roster_row(world, nid)
            assert row.state == "online" and row.capabilities == {"python": "3.13"}
        assert node.status.state == "offline"
        row = await roster_row(world, nid)
        assert (row.state, row.health_state) == ("offline", "offline")

    asyncio.run(scenario())


async def _beats_at_least(node: RuntimeNode, n: int) -> bool:
    return node.status.beats >= n


async def _roster_is(world: World, nid: str, state: str, health: str) -> bool:
    row = await roster_row(world, nid)
    return (row.state, row.health_state) == (state, health)


def test_below_the_floor_is_admitted_read_only_and_still_beats(
    server: str, admin_token: str, fast_timings: None
) -> None:
    nid = node_id()

    async def scenario() -> None:
        world = await make_world(server, admin_token, floor="2.0")
        async with runtime_node(world, nid, client_version="1.9") as node:
            assert node.status.read_only is True
            assert node.status.state == "registering"  # no declaration: it would be refused
            with pytest.raises(sdk_errors.FloorExceeded):
                await node.declare({"python": "3.12"})
            await eventually(lambda: _beats_at_least(node, 2), 5, "beats while read-only")
            row = await roster_row(world, nid)
            assert row.read_only and row.health_state == "online"

    asyncio.run(scenario())


@pytest.mark.parametrize("how", ["revoke", "detach_elsewhere", "token_revoked"])
def test_losing_the_slot_stops_beating_and_says_why(
    world: World, fast_timings: None, how: str
) -> None:
    nid = node_id()

    async def scenario() -> None:
        async with ControlPlaneClient(world.base_url, world.admin_token) as admin:
            node = runtime_node(world, nid)
            async with node:
                await eventually(lambda: _beats_at_least(node, 1), 5, "a first beat")
                if how == "revoke":
                    await admin.revoke(world.session_id, nid, reason="test")
                elif how == "detach_elsewhere":
                    async with ControlPlaneClient(world.base_url, world.token) as other:
                        await other.detach(nid)
                else:
                    participant = await admin.get_participant(world.participant_id)
                    await admin.revoke_token(participant.tokens[0].token_id)
                await asyncio.wait_for(node.lost.wait(), timeout=5)
                lost = node.status.lost
                assert lost is not None
                beats = node.status.beats
                await asyncio.sleep(2.5)  # > 2 intervals: no beat, no retry storm after a loss
                assert node.status.beats == beats
                diagnosed = await node.diagnose()
                assert diagnosed is not None
                expected = {
                    "revoke": "revoked",
                    "detach_elsewhere": "detached",
                    "token_revoked": "unauthenticated",
                }[how]
                assert diagnosed.cause == expected, diagnosed

    asyncio.run(scenario())


def test_retries_ride_out_a_real_database_outage(
    admin_token: str, fast_timings: None, database_link: DatabaseLink, tmp_path: Path
) -> None:
    """The database link of a server is cut under a beating node and a waiting read: no
    exception escapes, beats are skipped (not queued), and both recover once it is back."""
    server = start_server(database_link.url, admin_token, tmp_path, "outage")
    nid = node_id()

    async def scenario() -> None:
        world = await make_world(server.base_url, admin_token)
        async with runtime_node(world, nid) as node:
            await eventually(lambda: _beats_at_least(node, 2), 5, "beats before the outage")
            refused_before = _heartbeat_503s(world.base_url)
            database_link.cut()
            outage_started = time.monotonic()
            failed_before = node.status.failed_beats

            async with ControlPlaneClient(
                world.base_url, world.token, retry=RetryPolicy(attempts=50, deadline=60)
            ) as reader:
                roster = asyncio.create_task(reader.roster(world.session_id))
                await asyncio.sleep(4)
                assert not roster.done(), "the read should still be retrying"
                assert node.status.failed_beats > failed_before
                assert node.status.lost is None
                beats_during = node.status.beats
                database_link.restore()
                result = await asyncio.wait_for(roster, timeout=60)
                assert any(n.node_id == nid for n in result.nodes)
            await eventually(
                lambda: _beats_at_least(node, beats_during + 2), 30, "beats after the outage"
            )
            outage = time.monotonic() - outage_started
            refused = _heartbeat_503s(world.base_url) - refused_before
            # No storm: each 1 s beat retries within its own interval (backoff 0.5 s, doubling),
            # so a few attempts per second of outage at most.
            assert 0 < refused <= 4 * (outage + 1), (refused, outage)
            assert node.status.lost is None

    try:
        asyncio.run(scenario())
    finally:
        server.stop()


def _heartbeat_503s(base_url: str) -> float:
    text = httpx.get(f"{base_url}/metrics", timeout=5).text
    total = 0.0
    for line in text.splitlines():
        series = line.startswith("control_plane_http_requests_total{")
        if series and "/heartbeat" in line and 'status="503"' in line:
            total += float(line.rsplit(" ", 1)[1])
    return total


def test_every_server_problem_code_has_its_own_exception_class() -> None:
    server_codes = {kind.code for kind in server_errors.SQLSTATE_ERRORS.values()}
    server_codes |= {
        value.code
        for value in vars(server_errors).values()
        if isinstance(value, server_errors.ErrorKind)
    }
    missing = sorted(code for code in server_codes if code not in sdk_errors.ERROR_BY_CODE)
    assert not missing, f"no SDK exception for {missing}"
    classes = list(sdk_errors.ERROR_BY_CODE.values())
    assert len(classes) == len(set(classes)), "one class per code"


def test_refusals_raise_their_exception(world: World) -> None:
    async def scenario() -> None:
        async with ControlPlaneClient(world.base_url, world.token, retry=RetryPolicy(1)) as cp:
            with pytest.raises(sdk_errors.PermissionDenied):
                await cp.roster("00000000-0000-4000-8000-000000000000")
            with pytest.raises(sdk_errors.InvalidRequest):
                await cp.attach(
                    world.session_id,
                    participant_id=world.participant_id,
                    node_id=node_id(),
                    client_version="1.x",
                    capabilities={},
                )
            nid = node_id()
            await cp.attach(
                world.session_id,
                participant_id=world.participant_id,
                node_id=nid,
                client_version="1.4",
                capabilities={},
            )
            with pytest.raises(sdk_errors.CapabilityUpdateConflict):
                await cp.update_capabilities(nid, {}, health="online")
        async with ControlPlaneClient(world.base_url, world.admin_token) as admin:
            await admin.revoke(world.session_id, nid)
        async with ControlPlaneClient(world.base_url, world.token) as cp:
            with pytest.raises(sdk_errors.AttachRevoked) as info:
                await cp.attach(
                    world.session_id,
                    participant_id=world.participant_id,
                    node_id=nid,
                    client_version="1.4",
                    capabilities={},
                )
            assert info.value.status == 409 and info.value.detail
        async with ControlPlaneClient(world.base_url, "cpt_unknown") as cp:
            with pytest.raises(sdk_errors.Unauthenticated):
                await cp.heartbeat(nid)

    asyncio.run(scenario())


# --- the SDK's wire structs agree with the served OpenAPI document ------------------------------

# SDK struct → the server's schema component it mirrors.
MIRRORS = {
    models.Attachment: "AttachResult",
    models.NodeState: "NodeStateResult",
    models.RosterNode: "RosterNode",
    models.Roster: "RosterResult",
    models.CreatedParticipant: "ParticipantResult",
    models.IssuedToken: "TokenResult",
    models.Floor: "FloorResult",
    models.Event: "RuntimeNodeEvent",
    models.EventPage: "EventsPage",
    models.CreatedSession: "SessionResult",
    models.Session: "SessionSummary",
    models.SessionDetail: "SessionDetail",
    models.SessionMember: "SessionMember",
    models.SessionPage: "SessionPage",
    models.Membership: "MembershipResult",
    models.ParticipantSummary: "ParticipantSummary",
    models.Participant: "ParticipantDetail",
    models.ParticipantPage: "ParticipantPage",
    models.TokenInfo: "TokenMetadata",
}


def test_sdk_structs_match_the_openapi_document(client: httpx.Client) -> None:
    components = client.get("/schema/openapi.json").json()["components"]["schemas"]
    for struct, name in MIRRORS.items():
        assert name in components, f"{name} is not in the OpenAPI document"
        served = set(components[name]["properties"])
        sdk = {f.encode_name for f in msgspec.structs.fields(struct)}
        assert sdk == served, f"{struct.__name__} vs {name}: {sorted(sdk ^ served)}"
        # Fields the server always sends are required in the SDK too, except the timings and
        # the roster revision, which default for servers that predate them.
        required = set(components[name].get("required", []))
        sdk_required = {f.encode_name for f in msgspec.structs.fields(struct) if f.required}
        assert sdk_required <= required, f"{struct.__name__}: {sorted(sdk_required - required)}"


def test_watch_lists_then_follows_and_resumes_across_a_server_restart(
    database_url: str, admin_token: str, tmp_path: Path
) -> None:
    """`watch()` yields the roster first, then every event exactly once, in order, across a
    restart of the server it streams from (it reconnects with Last-Event-ID); events written
    through another app instance while it is down are not lost."""
    server = start_server(database_url, admin_token, tmp_path, "watch-1")
    other = start_server(database_url, admin_token, tmp_path, "watch-other")
    port = server.port
    nodes = [node_id() for _ in range(3)]

    async def scenario() -> list[int]:
        nonlocal server
        world = await make_world(server.base_url, admin_token)
        seen: list[models.Event] = []
        retry = RetryPolicy(attempts=40, base=0.2, cap=1.0, deadline=60)
        async with (
            ControlPlaneClient(world.base_url, world.token, retry=retry) as watcher,
            ControlPlaneClient(other.base_url, world.token) as daemon,
        ):

            async def follow() -> None:
                first = True
                async for item in watcher.watch(world.session_id):
                    if first:  # list, then follow
                        assert isinstance(item, Resync) and item.roster.nodes == []
                        first = False
                        continue
                    assert isinstance(item, models.Event)
                    seen.append(item)

            async def attach(nid: str) -> None:
                await daemon.attach(
                    world.session_id,
                    participant_id=world.participant_id,
                    node_id=nid,
                    client_version="1.4",
                    capabilities={"n": nid},
                )
                await daemon.declare(nid, {"n": nid, "ready": True})

            task = asyncio.create_task(follow())
            await asyncio.sleep(0.5)
            await attach(nodes[0])
            await eventually(lambda: _count_at_least(seen, 2), 10, "events before the restart")
            await asyncio.to_thread(server.stop)
            await attach(nodes[1])  # through the other instance while this one is down
            server = await asyncio.to_thread(
                start_server, database_url, admin_token, tmp_path, "watch-2", None, port
            )
            await attach(nodes[2])
            await eventually(lambda: _count_at_least(seen, 6), 30, "every event after it")
            await asyncio.sleep(0.5)  # nothing more (no duplicate) arrives
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        kinds = [(e.node_id, e.kind) for e in seen]
        assert kinds == [(n, k) for n in nodes for k in ("attached", "declared")], kinds
        return [e.id for e in seen]

    try:
        ids = asyncio.run(scenario())
    finally:
        server.stop()
        other.stop()
    assert ids == sorted(ids) and len(set(ids)) == len(ids)


async def _count_at_least(items: list[models.Event], n: int) -> bool:
    return len(items) >= n
