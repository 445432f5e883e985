"""Drill: races over real HTTP, while a thread sweeps explicitly every 50 ms.

1. one node attached to many sessions at once (one owner in 20 sessions, and 20 owners each in
   their own session): exactly one attach wins, the rest get 409 attach_conflict, and the
   refused attaches leave no row;
2. heartbeats racing detach: the slot ends offline and presence is never left online/degraded;
3. heartbeats, re-handshakes and declarations racing revoke: revoked stays revoked (attach
   afterwards → 409 attach_revoked, declaration → 403), presence offline;
4. capability updates racing a floor raise: the stored capabilities are those of an update that
   was acknowledged, no update sent after the raise was acknowledged succeeds, and afterwards
   every version-sensitive write is refused with version.floor_exceeded.

Throughout: one active attachment per node, no 5xx, no deadlock (pg_stat_database.deadlocks
unchanged and no "deadlock detected" in the server log written during the drill).
"""

from __future__ import annotations

import asyncio
import threading
from collections import Counter
from typing import Any

import httpx

from drills import fleet, seed
from drills.harness import Context, Server, Verdict, connect, deadlocks

SESSIONS = 20
ATTACH_ROUNDS = 6
NODES = 30
BEATS = 8
FLOOR_SESSIONS = 20
UPDATES = 10


async def drill(ctx: Context) -> Verdict:
    verdict = Verdict("races")
    url = ctx.database_url
    # The races are about the database's invariants under concurrency: a server of its own
    # without per-token rates or admission queues in the way (those have drills of their own:
    # noisy-neighbour, reconnect-storm).
    server = Server(url, ctx.admin_token, ctx.work_dir, env=UNLIMITED)
    await asyncio.to_thread(server.start)
    try:
        return await _drill(ctx, verdict, server)
    finally:
        await asyncio.to_thread(server.stop)


UNLIMITED = {
    "RATE_LIMIT_WRITES_PER_S": "0",
    "RATE_LIMIT_READS_PER_S": "0",
    "RATE_LIMIT_ADMIN_PER_S": "0",
    "ADMISSION_QUEUE": "10000",
    "ADMISSION_QUEUE_WAIT_MS": "8000",
}


async def _drill(ctx: Context, verdict: Verdict, server: Server) -> Verdict:
    url = ctx.database_url
    rid = seed.run_id()
    with connect(url) as conn:
        deadlocks_before = deadlocks(conn)
    log_offset = ctx.cluster.log_size() if ctx.cluster else 0
    statuses: Counter[str] = Counter()
    stop = threading.Event()
    sweeper = threading.Thread(target=_sweep_loop, args=(url, stop), daemon=True)
    sweeper.start()
    created: list[seed.Node] = []
    try:
        async with fleet.client(server.base_url, connections=100) as http:
            await _attach_race(url, http, verdict, rid, statuses, created)
            await _detach_race(url, http, verdict, rid, statuses, created)
            await _revoke_race(url, http, verdict, rid, statuses, created, ctx.admin_token)
            await _floor_race(url, http, verdict, rid, statuses, created, ctx.admin_token)
    finally:
        stop.set()
        sweeper.join()
        seed.detach_all(url, created)
    with connect(url) as conn:
        deadlock_delta = deadlocks(conn) - deadlocks_before
        doubled = conn.execute(
            "SELECT count(*) AS n FROM (SELECT node_id FROM control_plane.runtime_node_attachments"
            " WHERE control_plane.slot_is_active(state)"
            " GROUP BY node_id HAVING count(*) > 1) d"
        ).fetchone()
    logged = ctx.cluster.log_since(log_offset).count("deadlock detected") if ctx.cluster else 0
    server_errors = sum(n for s, n in statuses.items() if s.startswith("5") or s.isalpha())
    verdict.figures.update(
        requests=sum(statuses.values()),
        **{f"s{k}": v for k, v in sorted(statuses.items())},
        deadlocks=deadlock_delta,
        deadlocks_logged=logged,
    )
    verdict.check(server_errors == 0, f"{server_errors} 5xx answers or transport errors")
    verdict.check(deadlock_delta == 0, f"pg_stat_database.deadlocks rose by {deadlock_delta}")
    verdict.check(logged == 0, f"{logged} 'deadlock detected' in the PostgreSQL log")
    verdict.check(doubled is not None and doubled["n"] == 0, "a node has two active attachments")
    return verdict


def _sweep_loop(url: str, stop: threading.Event) -> None:
    """The sweep racing everything else (it only demotes stale rows; these are fresh)."""
    with connect(url) as conn:
        while not stop.wait(0.05):
            conn.execute("SELECT count(*) FROM control_plane.runtime_node_sweep()")


def _tally(statuses: Counter[str], outcomes: list[fleet.Outcome]) -> None:
    for o in outcomes:
        statuses[o.error or str(o.status)] += 1


async def _attach_race(
    url: str,
    http: httpx.AsyncClient,
    verdict: Verdict,
    rid: str,
    statuses: Counter[str],
    created: list[seed.Node],
) -> None:
    wins: list[int] = []
    with connect(url) as conn:
        people = seed.participants(conn, SESSIONS + 1, f"drill races {rid}")
        sids = seed.sessions(conn, SESSIONS)
        solo_pid, solo_token = people[0]
        seed.memberships(conn, [(s, solo_pid) for s in sids])
        seed.memberships(conn, [(s, p) for s, (p, _) in zip(sids, people[1:], strict=True)])
    for rnd in range(ATTACH_ROUNDS):
        node_id = f"rc-at-{rid}-{rnd}"
        if rnd % 2 == 0:  # one owner, many sessions
            contenders = [seed.Node(node_id, solo_token, solo_pid, s) for s in sids]
        else:  # many owners, each in their own session
            contenders = [
                seed.Node(node_id, tok, pid, s)
                for s, (pid, tok) in zip(sids, people[1:], strict=True)
            ]
        outcomes = await asyncio.gather(*[fleet.attach(http, None, n) for n in contenders])
        _tally(statuses, outcomes)
        ok = [o for o in outcomes if o.status == 200]
        conflicts = [o for o in outcomes if o.code == "runtimenode.attach_conflict"]
        wins.append(len(ok))
        winner = [c for c, o in zip(contenders, outcomes, strict=True) if o.status == 200]
        created.extend(winner)
        with connect(url) as conn:
            rows = conn.execute(
                "SELECT state FROM control_plane.runtime_node_attachments WHERE node_id = %s",
                (node_id,),
            ).fetchall()
        verdict.check(
            len(ok) == 1 and len(conflicts) == SESSIONS - 1,
            f"attach round {rnd}: {len(ok)} winners, {len(conflicts)} conflicts "
            f"({Counter(o.code or o.status for o in outcomes)})",
        )
        verdict.check(len(rows) == 1, f"attach round {rnd}: {len(rows)} rows for the node")
    verdict.figures["attach_winners"] = "/".join(map(str, wins))


async def _live_nodes(
    url: str, http: httpx.AsyncClient, prefix: str, count: int
) -> list[seed.Node]:
    nodes = seed.fleet(url, count, prefix=prefix, nodes_per_session=10)
    await asyncio.gather(*[fleet.heartbeat(http, None, n) for n in nodes])
    return nodes


async def _detach_race(
    url: str,
    http: httpx.AsyncClient,
    verdict: Verdict,
    rid: str,
    statuses: Counter[str],
    created: list[seed.Node],
) -> None:
    nodes = await _live_nodes(url, http, f"rc-dt-{rid}", NODES)
    created.extend(nodes)

    async def one(node: seed.Node) -> list[fleet.Outcome]:
        calls: list[Any] = [fleet.heartbeat(http, None, node) for _ in range(BEATS)]
        calls.insert(BEATS // 2, fleet.detach(http, None, node))
        return list(await asyncio.gather(*calls))

    results = await asyncio.gather(*[one(n) for n in nodes])
    for outcomes in results:
        _tally(statuses, outcomes)
    odd = [o for r in results for o in r if o.status not in (204, 403)]
    final = seed.states(url, [n.node_id for n in nodes])
    wrong = {k: v for k, v in final.items() if v[0] != "offline" or v[1] not in ("offline", None)}
    verdict.figures["detached"] = sum(1 for v in final.values() if v[0] == "offline")
    verdict.check(not odd, f"heartbeat/detach race: unexpected answers {odd[:3]}")
    verdict.check(not wrong, f"heartbeat/detach race: left live {list(wrong.items())[:3]}")


async def _revoke_race(
    url: str,
    http: httpx.AsyncClient,
    verdict: Verdict,
    rid: str,
    statuses: Counter[str],
    created: list[seed.Node],
    admin_token: str,
) -> None:
    nodes = await _live_nodes(url, http, f"rc-rv-{rid}", NODES)
    created.extend(nodes)

    async def one(node: seed.Node) -> list[fleet.Outcome]:
        calls: list[Any] = [fleet.heartbeat(http, None, node) for _ in range(BEATS)]
        calls += [fleet.attach(http, None, node), fleet.declare(http, None, node)]
        calls.insert(BEATS // 2, fleet.revoke(http, None, node, admin_token))
        return list(await asyncio.gather(*calls))

    results = await asyncio.gather(*[one(n) for n in nodes])
    for outcomes in results:
        _tally(statuses, outcomes)
    revokes = [o for r in results for o in r if o.op == "revoke"]
    allowed = {204, 200, 403, 409}
    odd = [o for r in results for o in r if o.status not in allowed]
    # Afterwards nothing brings a revoked slot back.
    after = await asyncio.gather(
        *[fleet.attach(http, None, n) for n in nodes],
        *[fleet.declare(http, None, n) for n in nodes],
        *[fleet.heartbeat(http, None, n) for n in nodes],
    )
    _tally(statuses, list(after))
    reattach = after[: len(nodes)]
    final = seed.states(url, [n.node_id for n in nodes])
    wrong = {k: v for k, v in final.items() if v[0] != "revoked" or v[1] not in ("offline", None)}
    verdict.figures["revoked"] = sum(1 for v in final.values() if v[0] == "revoked")
    verdict.check(all(o.status == 204 for o in revokes), f"revokes answered {revokes[:3]}")
    verdict.check(not odd, f"revoke race: unexpected answers {odd[:3]}")
    verdict.check(
        all(o.code == "runtimenode.attach_revoked" for o in reattach),
        f"attach after revoke: {Counter(o.code or o.status for o in reattach)}",
    )
    verdict.check(
        all(o.status == 403 for o in after[len(nodes) :]),
        "declaration or heartbeat of a revoked node was not refused with 403",
    )
    verdict.check(not wrong, f"revoke race: not revoked/offline {list(wrong.items())[:3]}")


async def _floor_race(
    url: str,
    http: httpx.AsyncClient,
    verdict: Verdict,
    rid: str,
    statuses: Counter[str],
    created: list[seed.Node],
    admin_token: str,
) -> None:
    nodes = seed.fleet(url, FLOOR_SESSIONS, prefix=f"rc-fl-{rid}", nodes_per_session=1)
    created.extend(nodes)
    violations: list[str] = []
    refused = 0

    async def one(node: seed.Node) -> None:
        nonlocal refused
        acked_at: list[float] = []

        async def raise_it() -> fleet.Outcome:
            await asyncio.sleep(0.005 * UPDATES / 2)
            outcome = await fleet.raise_floor(http, None, node.session_id, "2.0", admin_token)
            acked_at.append(outcome.done)
            return outcome

        async def update(seq: int) -> fleet.Outcome:
            await asyncio.sleep(0.005 * seq)  # spread: some are sent after the raise is acked
            return await fleet.update_capabilities(http, None, node, {"seq": seq})

        outcomes = await asyncio.gather(raise_it(), *[update(i) for i in range(UPDATES)])
        raised, updates = outcomes[0], list(outcomes[1:])
        _tally(statuses, list(outcomes))
        if raised.status != 200:
            violations.append(f"{node.node_id}: floor raise answered {raised.status}")
            return
        accepted = {i for i, o in enumerate(updates) if o.status == 200}
        refused += sum(1 for o in updates if o.code == "version.floor_exceeded")
        late = [i for i, o in enumerate(updates) if o.status == 200 and o.sent > acked_at[0]]
        if late:
            violations.append(f"{node.node_id}: updates {late} accepted after the raise")
        odd = [o for o in updates if o.status != 200 and o.code != "version.floor_exceeded"]
        if odd:
            violations.append(f"{node.node_id}: unexpected answers {odd[:2]}")
        with connect(url) as conn:
            row = conn.execute(
                "SELECT capabilities->'seq' AS seq FROM control_plane.runtime_node_attachments"
                " WHERE node_id = %s",
                (node.node_id,),
            ).fetchone()
        stored = row["seq"] if row else None
        if stored is not None and stored not in accepted:
            violations.append(f"{node.node_id}: stored seq {stored} was refused")
        # After the raise: every version-sensitive write is refused and changes nothing.
        later = await asyncio.gather(
            fleet.update_capabilities(http, None, node, {"seq": -1}),
            fleet.declare(http, None, node),
        )
        _tally(statuses, list(later))
        if any(o.code != "version.floor_exceeded" for o in later):
            violations.append(f"{node.node_id}: write below the floor {later}")

    await asyncio.gather(*[one(n) for n in nodes])
    verdict.figures["floor_refused"] = refused
    verdict.check(not violations, f"floor race: {violations[:3]}")
