"""Drill: slow clients — hundreds of connections that never finish their request, while the
fleet beats.

SLOW_EACH (100) connections of each kind, all opened at once against the server's defaults
(HTTP_HEADER_TIMEOUT_S 5 s, HTTP_BODY_TIMEOUT_S 10 s):
- silent: connect and send nothing;
- slow headers: a heartbeat's request line and headers, one byte every 0.5 s;
- slow body: the whole head at once, then its body one byte every 0.5 s.
Meanwhile SLOW_BEATERS (200) nodes beat every second over persistent connections.

Pass: every beat is answered 204 (heartbeats keep flowing) and no beat waits longer than
MAX_BEAT_S; every silent and slow-header connection is closed by the server between the header
deadline and CLOSE_SLACK_S after it (counted from the connection's opening); every slow-body
connection between the body deadline and CLOSE_SLACK_S after it (counted from the end of its
headers); none is answered (a deadline closes without a response).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time

from drills import fleet, rawhttp, seed
from drills.harness import Context, Verdict, log

SLOW_EACH = int(os.environ.get("DRILLS_SLOW_EACH", "100"))
BEATERS = int(os.environ.get("DRILLS_SLOW_BEATERS", "200"))
HEADER_TIMEOUT_S = 5.0  # the server defaults (control_plane/config.py)
BODY_TIMEOUT_S = 10.0
CLOSE_SLACK_S = 1.5  # the guard checks every 0.25 s; the rest is a busy 2-core machine
DRIP_S = 0.5
MAX_BEAT_S = 1.0
WATCH_S = BODY_TIMEOUT_S + CLOSE_SLACK_S + 3


async def drill(ctx: Context) -> Verdict:
    verdict = Verdict("slow-clients")
    url = ctx.database_url
    server = ctx.ensure_server()
    rid = seed.run_id()
    nodes = seed.fleet(url, BEATERS + 1, prefix=f"sl-{rid}")
    try:
        await _run(server.port, verdict, nodes[:BEATERS], nodes[BEATERS])
    finally:
        seed.detach_all(url, nodes)
    return verdict


async def _run(port: int, verdict: Verdict, beaters: list[seed.Node], target: seed.Node) -> None:
    rec = fleet.Recorder()
    stats = fleet.BeatStats()
    pool = rawhttp.RawPool("127.0.0.1", port, connections=32)
    end = time.monotonic() + WATCH_S

    def until() -> bool:
        return time.monotonic() >= end

    beats = [
        asyncio.create_task(
            rawhttp.beat_forever(pool, rec, n, interval=1.0, jitter=0.1, until=until, stats=stats)
        )
        for n in beaters
    ]
    request = pool.heartbeat_request(target)
    head, _, body = request.partition(b"\r\n\r\n")
    head += b"\r\n\r\n"
    kinds = {"silent": (b"", b""), "headers": (b"", head), "body": (head, body)}
    slow = [
        asyncio.create_task(_slow(port, kind, at_once, drip))
        for kind, (at_once, drip) in kinds.items()
        for _ in range(SLOW_EACH)
    ]
    results = await asyncio.gather(*slow)
    await asyncio.gather(*beats)
    await pool.close()

    by_kind: dict[str, list[tuple[float | None, bool]]] = {k: [] for k in kinds}
    for kind, closed_after, got_answer in results:
        by_kind[kind].append((closed_after, got_answer))
    figures: dict[str, object] = {"connections": len(results), "beaters": BEATERS}
    for kind, deadline in (("silent", HEADER_TIMEOUT_S), ("headers", HEADER_TIMEOUT_S),
                           ("body", BODY_TIMEOUT_S)):  # fmt: skip
        times = [t for t, _ in by_kind[kind] if t is not None]
        still_open = sum(1 for t, _ in by_kind[kind] if t is None)
        answered = sum(1 for _, a in by_kind[kind] if a)
        early = sum(1 for t in times if t < deadline - 0.05)
        late = sum(1 for t in times if t > deadline + CLOSE_SLACK_S)
        figures[f"{kind}_closed_s"] = f"{min(times):.2f}-{max(times):.2f}" if times else "none"
        verdict.check(still_open == 0, f"{still_open} {kind} connection(s) never closed")
        verdict.check(early == 0 and late == 0,
                      f"{kind}: {early} closed before, {late} after the {deadline:.0f} s deadline "
                      f"(+{CLOSE_SLACK_S} s)")  # fmt: skip
        verdict.check(answered == 0, f"{answered} {kind} connection(s) got an answer")
    ok = rec.latencies.get("heartbeat", [])
    failed = [o for o in rec.outcomes if not o.ok]
    figures.update(
        beats=len(ok),
        beat_failures=len(failed),
        beat_p99_ms=round(1000 * fleet.percentile(ok, 0.99), 1),
        beat_max_ms=round(1000 * max(ok, default=0.0), 1),
    )
    verdict.figures.update(figures)
    log(f"slow: {figures}")
    verdict.check(not failed, f"{len(failed)} beats failed: "
                  f"{[(o.status, o.error) for o in failed[:3]]}")  # fmt: skip
    verdict.check(max(ok, default=0.0) <= MAX_BEAT_S, "a beat waited longer than 1 s")
    verdict.check(len(ok) >= BEATERS * (WATCH_S - 2), f"only {len(ok)} beats: did they flow?")


async def _slow(
    port: int, kind: str, at_once: bytes, drip: bytes
) -> tuple[str, float | None, bool]:
    """Open, send `at_once`, then `drip` a byte every DRIP_S; seconds from the moment the
    deadline started (opening, or the end of the head) to the server's close."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    started = time.monotonic()
    answered = False
    try:
        if at_once:
            writer.write(at_once)
            await writer.drain()
            started = time.monotonic()
        reading = asyncio.ensure_future(reader.read(4096))
        for i in range(10_000):
            done, _ = await asyncio.wait({reading}, timeout=DRIP_S)
            if done:
                data = reading.result()
                if data:
                    answered = True
                return kind, time.monotonic() - started, answered
            if time.monotonic() - started > WATCH_S:
                reading.cancel()
                return kind, None, answered
            if i < len(drip):
                try:
                    writer.write(drip[i : i + 1])
                    await writer.drain()
                except OSError:
                    reading.cancel()
                    return kind, time.monotonic() - started, answered
        return kind, None, answered
    except OSError:
        return kind, time.monotonic() - started, answered
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
