"""`python -m drills [name ...]`: run the drills (all by default) against DATABASE_URL.

Prints one `drill <name>: pass|fail <figures>` line per drill on stdout and exits non-zero if any
failed. The server processes it starts are stopped on the way out, and the timing settings a
drill lowers are restored.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import secrets
import signal
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

from drills import app_down, fuzz, noisy, races, restart, slow, soak, storm
from drills.harness import Cluster, Context, Verdict, log, wait_database

Drill = Callable[[Context], Coroutine[Any, Any, Verdict]]

# Order matters for the time budget. pg_cron < 1.5 starts its sweep loop on the minute, after the
# cluster starts and again after each restart: the restart drills run their sweep explicitly and
# need no pg_cron, so they go first (on a fresh cluster); by the time fuzz and races are done the
# loop is running again for the two drills that rely on it, app-down and the soak.
DRILLS: dict[str, Drill] = {
    "db-restart-fast": lambda ctx: restart.drill(ctx, "fast"),
    "db-restart-immediate": lambda ctx: restart.drill(ctx, "immediate"),
    "db-freeze": lambda ctx: restart.drill(ctx, "freeze"),
    "fuzz": fuzz.drill,
    "races": races.drill,
    "slow-clients": slow.drill,
    "noisy-neighbour": noisy.drill,
    "app-down": app_down.drill,
    "soak": soak.drill,
    "reconnect-storm": storm.drill,
}


def _interrupt(signum: int, _frame: object) -> None:
    # SIGTERM (timeout(1), a CI runner, kill) is handled like ^C: the running drill's cleanup
    # runs — a frozen database is thawed, lowered settings are restored, servers are stopped.
    raise KeyboardInterrupt(f"signal {signum}")


def main() -> int:
    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGINT, _interrupt)  # also when started in the background (SIG_IGN)
    parser = argparse.ArgumentParser(prog="python -m drills", description=__doc__)
    parser.add_argument("names", nargs="*", metavar="name", help=", ".join(DRILLS))
    args = parser.parse_args()
    names = args.names or list(DRILLS)
    unknown = [n for n in names if n not in DRILLS]
    if unknown:
        parser.error(f"unknown drill(s) {unknown}; choose from {list(DRILLS)}")
    url = os.environ.get("DATABASE_URL", "").strip()
    if not url:
        print("DATABASE_URL is not set (drills/run.sh provides one)", file=sys.stderr)
        return 2
    wait_database(url)
    with contextlib.suppress(ImportError):  # a faster loop leaves more CPU to the server
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    try:
        cluster: Cluster | None = Cluster.discover(url)
    except RuntimeError as exc:
        log(str(exc))
        cluster = None
    work_dir = Path(os.environ.get("DRILLS_WORK_DIR") or tempfile.mkdtemp(prefix="drills-"))
    work_dir.mkdir(parents=True, exist_ok=True)
    log(f"logs in {work_dir}; cluster {cluster.data_dir if cluster else 'not local'}")
    ctx = Context(url, cluster, "adm_" + secrets.token_urlsafe(24), work_dir)
    verdicts: list[Verdict] = []
    started = time.monotonic()
    try:
        for name in names:
            log(f"--- {name}")
            t0 = time.monotonic()
            try:
                if cluster is not None:
                    cluster.ensure_running()  # a failed restart drill must not sink the rest
                verdict = asyncio.run(DRILLS[name](ctx))
            except Exception as exc:
                traceback.print_exc()
                verdict = Verdict(name, failures=[f"crashed: {type(exc).__name__}: {exc}"])
            verdict.figures["took_s"] = round(time.monotonic() - t0)
            verdicts.append(verdict)
            print(verdict.line(), flush=True)
            for failure in verdict.failures:
                log(f"{name}: FAILED {failure}")
            if not verdict.passed and ctx.server is not None:
                log(f"server log tail ({ctx.server.log_path}):\n{ctx.server.log_tail(30)}")
    finally:
        ctx.close()
        if cluster is not None:
            cluster.recover()
    failed = [v.name for v in verdicts if not v.passed]
    print(
        f"drills: {len(verdicts) - len(failed)} passed, {len(failed)} failed"
        f" in {time.monotonic() - started:.0f} s",
        flush=True,
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
