"""Where pg_cron's jobs connect, and a check that they can (contract §7: the sweep must run).

pg_cron (without `cron.use_background_workers`) runs each job over a libpq connection to
`cron.job.nodename:nodeport`, stored when the job was scheduled from the `cron.host` setting
(default `localhost`). On a server that accepts only Unix-socket connections a `localhost` job
never runs, and nothing says so until `/readyz` reports the sweep stale. So every migrate:

1. picks the node name the jobs must use: `cron.host` when the server sets it, otherwise the host
   the migrating connection reached (a socket directory is a valid node name);
2. repairs this schema's jobs (`runtime-node-*`) registered with another node name or port;
3. checks the server really listens where the jobs connect (the socket directory is one of
   `unix_socket_directories`, or TCP is enabled by `listen_addresses`), and reports the jobs'
   last connection failure; either problem stops migrate with what to change.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import psycopg

JOB_PATTERN = "runtime-node-%"
# listen_addresses entries that accept a connection to localhost.
_LOOPBACK_LISTEN = {"*", "localhost", "127.0.0.1", "::1", "0.0.0.0", "::"}


@dataclass(frozen=True, slots=True)
class Target:
    nodename: str
    nodeport: int
    why: str


def _setting(conn: psycopg.Connection, name: str) -> tuple[str, str] | None:
    """(value, source) of a server setting, or None when the server does not know it."""
    row = conn.execute("SELECT setting, source FROM pg_settings WHERE name = %s", [name]).fetchone()
    return None if row is None else (str(row[0]), str(row[1]))


def _socket_dirs(conn: psycopg.Connection) -> list[str]:
    value = (_setting(conn, "unix_socket_directories") or ("", ""))[0]
    return [d.strip().rstrip("/") or "/" for d in value.split(",") if d.strip()]


def uses_background_workers(conn: psycopg.Connection) -> bool:
    setting = _setting(conn, "cron.use_background_workers")
    return setting is not None and setting[0] == "on"


def target(conn: psycopg.Connection) -> Target:
    port = int((_setting(conn, "port") or ("5432", ""))[0])
    host = _setting(conn, "cron.host")
    if host is not None and host[1] != "default":
        return Target(host[0], port, f"cron.host = {host[0]!r}")
    reached = conn.info.host
    if reached.startswith("/"):
        return Target(reached.rstrip("/") or "/", port, "the socket directory migrate connected to")
    # Over TCP the client's host name may be a proxy or another member's address (after a
    # failover the jobs run on the new primary): keep pg_cron's own default, the loopback.
    return Target(host[0] if host else "localhost", port, "pg_cron's default cron.host")


def problem(conn: psycopg.Connection, where: Target) -> str | None:
    """Why a job connecting to `where` cannot reach this server, or None."""
    if where.nodename.startswith("/"):
        dirs = _socket_dirs(conn)
        # A socket is only reachable on the server's machine, so when migrate reached it the
        # paths are local here too: compare them resolved (symlinks, trailing slashes).
        if os.path.realpath(where.nodename) not in {os.path.realpath(d) for d in dirs}:
            return (
                f"the jobs would connect to the socket directory {where.nodename!r}, which is not "
                f"one of this server's unix_socket_directories ({', '.join(dirs) or 'none'})"
            )
        return None
    listen = [a.strip() for a in (_setting(conn, "listen_addresses") or ("", ""))[0].split(",")]
    listen = [a for a in listen if a]
    dirs = _socket_dirs(conn)
    fix = (
        f"set cron.host = '{dirs[0] if dirs else '<socket directory>'}' in postgresql.conf, or "
        f"cron.use_background_workers = on (no connection at all: the choice for replicated "
        f"servers, whose members' addresses differ while the jobs replicate)"
    )
    if not listen:
        return (
            f"the jobs would connect over TCP to {where.nodename!r}, but this server accepts only "
            f"Unix-socket connections (listen_addresses = ''); {fix}"
        )
    if where.nodename == "localhost" and not set(listen) & _LOOPBACK_LISTEN:
        return (
            f"the jobs would connect to localhost, but this server listens only on "
            f"{', '.join(listen)}; {fix} (or to an address it listens on)"
        )
    return None


def repair(conn: psycopg.Connection, where: Target) -> int:
    """Point this schema's jobs at `where`; returns how many rows changed. Superuser only (pg_cron
    has no API for a job's node name; its cache is invalidated by a trigger on cron.job)."""
    cur = conn.execute(
        "UPDATE cron.job SET nodename = %s, nodeport = %s"
        " WHERE jobname LIKE %s AND database = current_database()"
        "   AND (nodename IS DISTINCT FROM %s OR nodeport IS DISTINCT FROM %s)",
        [where.nodename, where.nodeport, JOB_PATTERN, where.nodename, where.nodeport],
    )
    return cur.rowcount


def last_connection_failure(conn: psycopg.Connection) -> str | None:
    """The newest run of this schema's jobs, when it failed to connect (pg_cron's message)."""
    row = conn.execute(
        "SELECT d.status, d.return_message FROM cron.job_run_details d"
        "  JOIN cron.job j USING (jobid)"
        " WHERE j.jobname LIKE %s AND j.database = current_database()"
        " ORDER BY d.runid DESC LIMIT 1",  # a run that could not connect has no start_time
        [JOB_PATTERN],
    ).fetchone()
    if row is None or row[0] != "failed" or "connection" not in str(row[1]).lower():
        return None
    return str(row[1])


def forget_connection_failures(conn: psycopg.Connection) -> int:
    """After a repair, the runs that failed to connect describe a registration that is gone;
    left in place they would fail the next migrate's check until a new run succeeds."""
    cur = conn.execute(
        "DELETE FROM cron.job_run_details d USING cron.job j"
        " WHERE d.jobid = j.jobid AND j.jobname LIKE %s AND j.database = current_database()"
        "   AND d.status = 'failed' AND d.return_message ILIKE '%%connection%%'",
        [JOB_PATTERN],
    )
    return cur.rowcount


def ensure_job_connection(conn: psycopg.Connection) -> str:
    """Register, repair and check the jobs' connection; a one-line summary or SystemExit."""
    if uses_background_workers(conn):
        return "pg_cron runs jobs in background workers (no connection to check)"
    where = target(conn)
    why_not = problem(conn, where)
    if why_not is not None:
        raise SystemExit(f"pg_cron cannot run the sweep job: {why_not}")
    repaired = repair(conn, where)
    if repaired:
        forgotten = forget_connection_failures(conn)
        return (
            f"pg_cron: {repaired} job(s) now connect to {where.nodename}:{where.nodeport} "
            f"({where.why})"
            + (f"; {forgotten} failed run(s) of the old registration cleared" if forgotten else "")
        )
    failure = last_connection_failure(conn)
    if failure is not None:
        raise SystemExit(
            f"pg_cron jobs connect to {where.nodename}:{where.nodeport} ({where.why}) and their "
            f"last run failed: {failure.strip()}. Check pg_hba.conf for the job owner "
            f"(local connections) or set cron.host in postgresql.conf; after a fix, the "
            f"next run (within a minute) clears this"
        )
    return f"pg_cron jobs connect to {where.nodename}:{where.nodeport} ({where.why})"
