"""`python -m drills.ha [name ...]`: the HA drills against a running `scripts/ha/ha.sh up`.

Prints one `drill <name>: pass|fail <figures>` line per drill on stdout; exits non-zero if any
failed. Drill timings (drills.HA_TIMINGS: offline_after 20 s, sweep every 1 s) are set for
the run and restored.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
import time
import traceback

from drills.ha import drills
from drills.ha.topology import Topology
from drills.harness import Verdict, log, timings
from drills.seed import run_id

NAMES = (
    "rolling-app-restart",
    "switchover",
    "primary-crash",
    "sync-standby-lost",
    "sync-standby-lost-nonstrict",
)


def _interrupt(signum: int, _frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


async def _run(names: list[str]) -> list[Verdict]:
    topo = Topology.load()
    rid = run_id()
    verdicts: list[Verdict] = []
    if not topo.wait_healthy(120.0):
        return [Verdict("ha-topology", failures=["cluster not healthy before the drills"])]
    for name in names:
        started = time.monotonic()
        log(f"drill {name}: start")
        try:
            if name == "rolling-app-restart":
                verdicts.append(await drills.rolling_restart(topo, rid))
            elif name == "switchover":
                verdicts.append(await drills.switchover(topo, rid))
            elif name == "primary-crash":
                verdicts.extend(await drills.primary_crash(topo, rid))
            elif name == "sync-standby-lost":
                verdicts.append(await drills.sync_standby_lost(topo, rid))
            elif name == "sync-standby-lost-nonstrict":
                verdicts.append(await drills.sync_standby_lost(topo, rid, strict=False))
        except Exception as exc:  # noqa: BLE001 - a crashed drill is a failed drill
            traceback.print_exc(file=sys.stderr)
            verdicts.append(Verdict(name, failures=[f"drill crashed: {exc!r}"]))
        log(f"drill {name}: {time.monotonic() - started:.0f}s")
        for v in verdicts[-2:]:
            if v.failures:
                log(f"{v.name} failures: {v.failures}")
        if not topo.wait_healthy(120.0):
            verdicts.append(Verdict("ha-topology", failures=[f"not healthy after {name}"]))
            break
    return verdicts


def main() -> int:
    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGINT, _interrupt)
    parser = argparse.ArgumentParser(prog="python -m drills.ha", description=__doc__)
    parser.add_argument("names", nargs="*", metavar="name", help=", ".join(NAMES))
    args = parser.parse_args()
    names = args.names or list(NAMES)
    unknown = [n for n in names if n not in NAMES]
    if unknown:
        parser.error(f"unknown drill(s) {unknown}; choose from {list(NAMES)}")
    topo = Topology.load()
    started = time.monotonic()
    with timings(topo.database_url, drills.HA_TIMINGS):
        verdicts = asyncio.run(_run(names))
    for v in verdicts:
        print(v.line(), flush=True)
        for failure in v.failures:
            print(f"  - {failure}", flush=True)
    log(f"HA drills done in {time.monotonic() - started:.0f}s")
    return 0 if verdicts and all(v.passed for v in verdicts) else 1


if __name__ == "__main__":
    sys.exit(main())
