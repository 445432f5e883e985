"""Simulated daemons: bounded asyncio + httpx clients that beat, attach, declare and detach
against the real server and record every outcome (status, problem code, Retry-After, latency).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from drills.seed import Node

CLIENT_TIMEOUT = 10.0  # a request not answered within this is a "hang"


class Client(httpx.AsyncClient):
    """An httpx client that admits at most `connections` requests at a time through a
    semaphore: httpcore's own pool queue degrades badly with thousands of waiters."""

    def __init__(self, base_url: str, connections: int, timeout: float) -> None:
        super().__init__(
            base_url=base_url,
            timeout=httpx.Timeout(timeout),
            limits=httpx.Limits(max_connections=connections, max_keepalive_connections=connections),
        )
        self.gate = asyncio.Semaphore(connections)


def client(base_url: str, connections: int = 100, timeout: float = CLIENT_TIMEOUT) -> Client:
    return Client(base_url, connections, timeout)


@dataclass(slots=True)
class Outcome:
    op: str
    node_id: str
    sent: float  # monotonic
    done: float
    status: int  # 0: no HTTP response (see error)
    code: str | None = None
    retry_after: str | None = None
    error: str | None = None  # timeout | connect | transport: <ExceptionName>
    body: Any = None

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    @property
    def unavailable(self) -> bool:
        """A well-formed 503: problem code service.unavailable and a Retry-After header."""
        return (
            self.status == 503
            and self.code == "service.unavailable"
            and self.retry_after is not None
            and self.retry_after.isdigit()
        )


@dataclass
class Recorder:
    """Every outcome, or (keep_all=False, for the soak) counts, latencies and the failures."""

    keep_all: bool = True
    outcomes: list[Outcome] = field(default_factory=list)
    counts: Counter[tuple[str, str]] = field(default_factory=Counter)
    latencies: dict[str, list[float]] = field(default_factory=dict)

    def add(self, outcome: Outcome) -> None:
        if self.keep_all or not outcome.ok:
            self.outcomes.append(outcome)
        self.counts[(outcome.op, outcome.error or outcome.code or str(outcome.status))] += 1
        if outcome.ok:
            self.latencies.setdefault(outcome.op, []).append(outcome.done - outcome.sent)

    def between(self, start: float, end: float) -> list[Outcome]:
        """Outcomes of requests sent in [start, end)."""
        return [o for o in self.outcomes if start <= o.sent < end]

    def dump(self, path: Path, origin: float) -> None:
        """Every outcome as a JSON line, times relative to `origin` (for diagnosing a failure)."""
        with open(path, "w") as fh:
            for o in self.outcomes:
                row = {
                    "op": o.op, "node": o.node_id, "sent": round(o.sent - origin, 3),
                    "done": round(o.done - origin, 3), "status": o.status, "code": o.code,
                    "retry_after": o.retry_after, "error": o.error,
                }  # fmt: skip
                fh.write(json.dumps(row) + "\n")

    def tally(self, outcomes: list[Outcome] | None = None) -> Counter[str]:
        counts: Counter[str] = Counter()
        for o in self.outcomes if outcomes is None else outcomes:
            counts[o.error or str(o.status)] += 1
        return counts


async def call(
    http: httpx.AsyncClient,
    recorder: Recorder | None,
    op: str,
    method: str,
    path: str,
    node_id: str = "",
    headers: dict[str, str] | None = None,
    json: Any = None,
) -> Outcome:
    gate = http.gate if isinstance(http, Client) else contextlib.nullcontext()
    sent = time.monotonic()
    try:
        async with gate:  # the wait for a free connection counts in the latency, as it should
            response = await http.request(method, path, headers=headers, json=json)
    except httpx.TimeoutException:
        outcome = Outcome(op, node_id, sent, time.monotonic(), 0, error="timeout")
    except httpx.ConnectError:
        outcome = Outcome(op, node_id, sent, time.monotonic(), 0, error="connect")
    except httpx.TransportError as exc:
        error = f"transport:{type(exc).__name__}"
        outcome = Outcome(op, node_id, sent, time.monotonic(), 0, error=error)
    else:
        body: Any = None
        code = None
        if response.content:
            try:
                body = response.json()
            except ValueError:
                body = response.text[:200]
            if isinstance(body, dict):
                code = body.get("code")
        outcome = Outcome(
            op,
            node_id,
            sent,
            time.monotonic(),
            response.status_code,
            code,
            response.headers.get("retry-after"),
            body=body,
        )
    if recorder is not None:
        recorder.add(outcome)
    return outcome


# --- the runtime-node operations a daemon performs -------------------------------------------


async def heartbeat(http: httpx.AsyncClient, rec: Recorder | None, node: Node) -> Outcome:
    return await call(
        http, rec, "heartbeat", "POST", f"/v1/runtime-nodes/{node.node_id}/heartbeat",
        node.node_id, node.headers, {"healthState": "online"},
    )  # fmt: skip


async def attach(
    http: httpx.AsyncClient, rec: Recorder | None, node: Node, version: str = "1.0"
) -> Outcome:
    body = {
        "participantId": node.participant_id,
        "nodeId": node.node_id,
        "clientVersion": version,
        "capabilities": {"drill": True},
        "healthState": "online",
    }
    return await call(
        http, rec, "attach", "POST", f"/v1/sessions/{node.session_id}/runtime-nodes",
        node.node_id, node.headers, body,
    )  # fmt: skip


async def declare(http: httpx.AsyncClient, rec: Recorder | None, node: Node) -> Outcome:
    return await call(
        http, rec, "declare", "POST", f"/v1/runtime-nodes/{node.node_id}/declaration",
        node.node_id, node.headers, {"capabilities": {"drill": True, "slots": 1}},
    )  # fmt: skip


async def update_capabilities(
    http: httpx.AsyncClient, rec: Recorder | None, node: Node, capabilities: dict[str, Any]
) -> Outcome:
    return await call(
        http, rec, "capabilities", "PUT", f"/v1/runtime-nodes/{node.node_id}/capabilities",
        node.node_id, node.headers, {"capabilities": capabilities},
    )  # fmt: skip


async def detach(http: httpx.AsyncClient, rec: Recorder | None, node: Node) -> Outcome:
    return await call(
        http, rec, "detach", "POST", f"/v1/runtime-nodes/{node.node_id}/detach",
        node.node_id, node.headers, {"reason": "drill"},
    )  # fmt: skip


async def revoke(
    http: httpx.AsyncClient, rec: Recorder | None, node: Node, admin_token: str
) -> Outcome:
    return await call(
        http, rec, "revoke", "POST",
        f"/v1/sessions/{node.session_id}/runtime-nodes/{node.node_id}/revoke",
        node.node_id, {"Authorization": f"Bearer {admin_token}"}, {"reason": "drill"},
    )  # fmt: skip


async def raise_floor(
    http: httpx.AsyncClient, rec: Recorder | None, session_id: str, floor: str, admin_token: str
) -> Outcome:
    return await call(
        http, rec, "floor", "PUT", f"/v1/admin/sessions/{session_id}/min-client-version",
        "", {"Authorization": f"Bearer {admin_token}"}, {"minClientVersion": floor},
    )  # fmt: skip


# --- beating --------------------------------------------------------------------------------


@dataclass
class BeatStats:
    """Per-node liveness as the clients saw it."""

    last_ok: dict[str, float] = field(default_factory=dict)
    max_gap: dict[str, float] = field(default_factory=dict)  # between acknowledged beats
    max_lateness: float = 0.0  # how far behind schedule the generator sent a beat

    def acked(self, node_id: str, at: float) -> None:
        previous = self.last_ok.get(node_id)
        if previous is not None:
            gap = at - previous
            if gap > self.max_gap.get(node_id, 0.0):
                self.max_gap[node_id] = gap
        self.last_ok[node_id] = at


async def beat_forever(
    http: httpx.AsyncClient,
    rec: Recorder | None,
    node: Node,
    *,
    interval: float,
    jitter: float,
    until: Callable[[], bool],
    stats: BeatStats,
    first_delay: float | None = None,
    paused: Callable[[], bool] = lambda: False,
) -> None:
    """Beat every `interval` ± `jitter` seconds on a fixed schedule (a slow answer does not push
    the next beat back) until `until()` is true; a slot that falls while `paused()` is skipped."""
    due = time.monotonic() + (random.uniform(0, interval) if first_delay is None else first_delay)
    while True:
        delay = due - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        if until():
            return
        if not paused():
            stats.max_lateness = max(stats.max_lateness, time.monotonic() - due)
            outcome = await heartbeat(http, rec, node)
            if outcome.status == 204:
                stats.acked(node.node_id, outcome.done)
        due += interval + random.uniform(-jitter, jitter)


def wall(monotonic: float) -> float:
    """A monotonic reading as Unix time (the drills and PostgreSQL share this machine's clock)."""
    return time.time() - time.monotonic() + monotonic


# --- a write ledger for churn ---------------------------------------------------------------

# The slot state each acknowledged write leaves behind.
STATE_AFTER = {"attach": "registering", "declare": "online", "detach": "offline"}


@dataclass
class Ledger:
    """Per node: the state of its last acknowledged write, and the states an unacknowledged
    attempt after it may or may not have produced (a 503 or a lost answer is ambiguous)."""

    acked: dict[str, str] = field(default_factory=dict)
    maybe: dict[str, set[str]] = field(default_factory=dict)
    acked_writes: int = 0

    def attempting(self, node_id: str, op: str) -> None:
        """Before each attempt: until acknowledged it may or may not happen (it may also land
        in the database before its answer reaches us)."""
        self.maybe.setdefault(node_id, set()).add(STATE_AFTER[op])

    def ack(self, node_id: str, op: str) -> None:
        self.acked[node_id] = STATE_AFTER[op]
        self.maybe.pop(node_id, None)
        self.acked_writes += 1

    def allowed(self, node_id: str) -> set[str | None]:
        """Slot states the node may be in (None: no row, never attached)."""
        base: set[str | None] = (
            {self.acked[node_id]} if node_id in self.acked else {"offline", None}
        )
        return base | self.maybe.get(node_id, set())


OPS: dict[str, Callable[..., Any]] = {"attach": attach, "declare": declare, "detach": detach}


async def churn(
    http: httpx.AsyncClient,
    rec: Recorder,
    ledger: Ledger,
    nodes: Callable[[], list[Node]],
    *,
    until: Callable[[], bool],
    pause: float = 0.2,
) -> None:
    """Cycle attach → declare → detach over the nodes `nodes()` currently names. An operation is
    retried until acknowledged (as a daemon would), unless the node set changes meanwhile: then
    it is abandoned and stays ambiguous in the ledger."""
    cycle = ("attach", "declare", "detach")
    step = 0
    previous: list[Node] | None = None
    while not until():
        current = nodes()
        if current is not previous:
            step, previous = 0, current  # a new node set starts with an attach
        node = current[step // 3 % len(current)]
        op = cycle[step % 3]
        while not until() and nodes() is current:
            ledger.attempting(node.node_id, op)
            outcome = await OPS[op](http, rec, node)
            if outcome.ok:
                ledger.ack(node.node_id, op)
                break
            if 400 <= outcome.status < 500:
                break  # a refusal changes nothing; the drill reports it, retrying cannot help
            await asyncio.sleep(pause)  # 503 or no answer: it may have happened; retry
        else:
            continue  # stopped, or the node set changed: the attempt stays ambiguous
        step += 1
        await asyncio.sleep(pause)


def percentile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]
