"""CPU seconds used per process group between two snapshots of /proc (Linux).

    python bench/cpu.py snapshot > before.json
    ... load ...
    python bench/cpu.py diff before.json → {"app": s, "postgres": s, ..., "machine_busy": s}

Groups: `postgres` (the benchmarked cluster: descendants of BENCH_PG_PID), `app` (descendants of
BENCH_APP_PID), `etcd`, `wrk`, `pgbench`, `bench` (this suite's own helpers: BENCH_SELF_PID's
tree) and `other` (everything else on the machine, e.g. other people's tests). On a 2-core
machine shared by the load generator, the app and PostgreSQL, this says where the cores went
during a phase. Take both snapshots while the load runs: a process that exits in between loses
its time to its parent's `cutime`, which is not counted.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

_TICKS = os.sysconf("SC_CLK_TCK")


def _read_procs() -> dict[int, tuple[int, str, float]]:
    """pid → (ppid, comm, cpu seconds) for every live process."""
    procs: dict[int, tuple[int, str, float]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            raw = Path(entry.path, "stat").read_text()
        except OSError:
            continue
        comm = raw[raw.index("(") + 1 : raw.rindex(")")]
        fields = raw[raw.rindex(")") + 2 :].split()
        cpu = (int(fields[11]) + int(fields[12])) / _TICKS  # utime + stime
        procs[int(entry.name)] = (int(fields[1]), comm, cpu)
    return procs


def _roots() -> dict[int, str]:
    roots: dict[int, str] = {}
    for var, group in (
        ("BENCH_PG_PID", "postgres"),
        ("BENCH_APP_PID", "app"),
        ("BENCH_SELF_PID", "bench"),
    ):
        value = os.environ.get(var, "")
        if value.isdigit():
            roots[int(value)] = group
    return roots


def _group(pid: int, procs: dict[int, tuple[int, str, float]], roots: dict[int, str]) -> str:
    comm = procs[pid][1]
    if comm in ("wrk", "pgbench", "etcd"):
        return comm
    seen = 0
    while pid > 1 and seen < 64:
        if pid in roots:
            return roots[pid]
        pid = procs.get(pid, (0, "", 0.0))[0]
        seen += 1
    return "other"


def snapshot() -> dict[str, float]:
    procs = _read_procs()
    roots = _roots()
    out = {f"{pid}:{_group(pid, procs, roots)}": cpu for pid, (_, _, cpu) in procs.items()}
    # /proc/stat cpu: user nice system idle iowait irq softirq steal ...
    total = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    out["_machine_busy"] = (sum(total) - total[3] - total[4] - total[7]) / _TICKS
    # Kernel packet processing for loopback TCP runs largely as softirq, which is not charged
    # to any process; steal is time the hypervisor gave to another guest.
    out["_softirq"] = (total[5] + total[6]) / _TICKS
    out["_steal"] = total[7] / _TICKS
    return out


def diff(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    groups: dict[str, float] = {}
    for key, seconds in after.items():
        if not key.startswith("_"):
            group = key.split(":", 1)[1]
            groups[group] = groups.get(group, 0.0) + seconds - before.get(key, 0.0)
    for key in ("machine_busy", "softirq", "steal"):
        groups[key] = after[f"_{key}"] - before.get(f"_{key}", 0.0)
    return {k: round(v, 3) for k, v in sorted(groups.items())}


def main() -> None:
    if sys.argv[1:2] == ["snapshot"]:
        json.dump(snapshot(), sys.stdout)
    elif sys.argv[1:2] == ["diff"] and len(sys.argv) == 3:
        before = json.loads(Path(sys.argv[2]).read_text())
        json.dump(diff(before, snapshot()), sys.stdout)
        print()
    else:
        raise SystemExit(__doc__)


if __name__ == "__main__":
    main()
