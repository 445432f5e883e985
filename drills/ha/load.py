"""Bounded load for the HA drills: a fleet beating every 2 s and churn workers cycling
attach → declare → detach, spread over the app instances (or the load balancer), every outcome
recorded per target so recovery can be timed per instance."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from drills import fleet, seed
from drills.restart import _lost_beats, _lost_writes

# ~50 beats/s and ~20 churn writes/s: sustained, and far below what 2 shared cores serve.
BEATERS = 100
CHURN_WORKERS = 6
NODES_PER_WORKER = 2
BEAT_INTERVAL = 2.0
# The pool's deadline is 8 s (control_plane.database.CALL_DEADLINE_SECONDS); the client gives up
# at 12 s (a loaded 2-core machine schedules the client late too).
CLIENT_TIMEOUT = 12.0
# More connections than requests can ever be in flight (every beater and churn worker waits for
# its answer): latency is the server's, never a queue in the load generator.
CONNECTIONS = 256


@dataclass
class Load:
    targets: list[str]
    database_url: str
    prefix: str
    recorders: list[fleet.Recorder] = field(default_factory=list)
    ledger: fleet.Ledger = field(default_factory=fleet.Ledger)
    stats: fleet.BeatStats = field(default_factory=fleet.BeatStats)
    beaters: list[seed.Node] = field(default_factory=list)
    churners: list[seed.Node] = field(default_factory=list)
    probes: list[fleet.Recorder] = field(default_factory=list)  # /readyz, per target
    _done: bool = False
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)
    _clients: list[fleet.Client] = field(default_factory=list)

    def seed(self) -> None:
        self.beaters = seed.fleet(self.database_url, BEATERS, prefix=f"{self.prefix}b")
        self.churners = seed.fleet(
            self.database_url,
            CHURN_WORKERS * NODES_PER_WORKER,
            prefix=f"{self.prefix}c",
            attached=False,
        )

    async def start(self) -> None:
        self.recorders = [fleet.Recorder() for _ in self.targets]
        self._clients = [
            fleet.client(url, connections=CONNECTIONS, timeout=CLIENT_TIMEOUT)
            for url in self.targets
        ]
        n = len(self.targets)
        for i, node in enumerate(self.beaters):
            self._tasks.append(
                asyncio.create_task(
                    fleet.beat_forever(
                        self._clients[i % n],
                        self.recorders[i % n],
                        node,
                        interval=BEAT_INTERVAL,
                        jitter=0.2,
                        until=self._until,
                        stats=self.stats,
                    )
                )
            )
        self.probes = [fleet.Recorder() for _ in self.targets]
        for i in range(n):
            self._tasks.append(asyncio.create_task(self._probe(self._clients[i], self.probes[i])))
        for w in range(CHURN_WORKERS):
            mine = self.churners[w * NODES_PER_WORKER : (w + 1) * NODES_PER_WORKER]
            self._tasks.append(
                asyncio.create_task(
                    fleet.churn(
                        self._clients[w % n],
                        self.recorders[w % n],
                        self.ledger,
                        _constant(mine),
                        until=self._until,
                    )
                )
            )

    async def _probe(self, http: fleet.Client, rec: fleet.Recorder) -> None:
        """What a load balancer or an operator sees on /readyz, once a second."""
        while not self._done:
            await fleet.call(http, rec, "readyz", "GET", "/readyz")
            await asyncio.sleep(1.0)

    def readyz_reasons(self, target: int, start: float, end: float) -> list[str]:
        """Every /readyz reason target `target` gave for probes sent in [start, end)."""
        out: list[str] = []
        for o in self.probes[target].between(start, end):
            if isinstance(o.body, dict):
                out.extend(str(r) for r in o.body.get("reasons") or [])
        return out

    def _until(self) -> bool:
        return self._done

    async def stop(self) -> None:
        self._done = True
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for c in self._clients:
            await c.aclose()

    def cleanup(self) -> None:
        seed.detach_all(self.database_url, self.beaters + self.churners)

    # --- what happened ----------------------------------------------------------------------

    @property
    def outcomes(self) -> list[fleet.Outcome]:
        return [o for r in self.recorders for o in r.outcomes]

    def bad(self) -> list[fleet.Outcome]:
        """Anything but a 2xx or a well-formed 503 + Retry-After (a 5xx, a 4xx, a hang, a
        transport error)."""
        return [o for o in self.outcomes if not (o.ok or o.unavailable)]

    def unavailable(self) -> list[fleet.Outcome]:
        return [o for o in self.outcomes if o.unavailable]

    def writes_back(self, after: float) -> list[float | None]:
        """Per target: seconds from `after` to the first write acknowledged that was sent after
        it (None: never)."""
        out: list[float | None] = []
        for r in self.recorders:
            first = min((o.done for o in r.outcomes if o.ok and o.sent >= after), default=None)
            out.append(None if first is None else first - after)
        return out

    def unavailable_window(self) -> float:
        """Seconds from the first to the last 503 sent (0 when none)."""
        sent = [o.sent for o in self.unavailable()]
        return max(sent) - min(sent) if sent else 0.0

    def max_latency(self) -> float:
        return max((o.done - o.sent for o in self.outcomes), default=0.0)

    def lost(self, url: str, before: float) -> tuple[list[str], list[str]]:
        """(slot writes, heartbeats) acknowledged and missing on the server behind `url`."""
        merged = fleet.Recorder()
        merged.outcomes = self.outcomes
        return _lost_writes(url, self.churners, self.ledger), _lost_beats(url, merged, before)


def _constant(nodes: list[seed.Node]) -> Callable[[], list[seed.Node]]:
    return lambda: nodes


def now() -> float:
    return time.monotonic()
