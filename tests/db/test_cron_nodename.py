"""pg_cron's jobs connect where the server listens (contract §7: the sweep must actually run).

The test cluster accepts only Unix-socket connections and leaves `cron.host` at its default
(`localhost`), like a socket-only `DATABASE_URL` server: jobs registered at `localhost` never run.
Migrate registers them at the socket directory it connected to and repairs jobs registered
elsewhere; that the repaired jobs really run is shown by tests/db/test_cron_live.py.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable

import psycopg

from control_plane import cron_jobs

MigrateCli = Callable[..., subprocess.CompletedProcess[str]]


def our_jobs(db: psycopg.Connection) -> list[tuple[str, str, int]]:
    return db.execute(
        "SELECT jobname, nodename, nodeport FROM cron.job"
        " WHERE jobname LIKE 'runtime-node-%' AND database = current_database() ORDER BY jobname"
    ).fetchall()


def setting(db: psycopg.Connection, name: str) -> str:
    row = db.execute("SELECT current_setting(%s)", [name]).fetchone()
    assert row is not None
    return str(row[0])


def server_port(db: psycopg.Connection) -> int:
    return int(setting(db, "port"))


def test_cluster_is_socket_only_with_the_default_cron_host(db: psycopg.Connection) -> None:
    """The premise of the other tests: the setting that used to hide the bug is absent."""
    assert setting(db, "listen_addresses") == ""
    assert db.execute(
        "SELECT setting, source FROM pg_settings WHERE name = 'cron.host'"
    ).fetchone() == ("localhost", "default")


def test_migrate_repairs_jobs_registered_at_localhost(
    db: psycopg.Connection, database_url: str, run_migrate: MigrateCli
) -> None:
    db.execute(
        "UPDATE cron.job SET nodename = 'localhost', nodeport = 5432"
        " WHERE jobname LIKE 'runtime-node-%' AND database = current_database()"
    )
    assert {row[1] for row in our_jobs(db)} == {"localhost"}

    proc = run_migrate(database_url)

    socket_dir = db.info.host
    assert socket_dir.startswith("/")
    jobs = our_jobs(db)
    assert [name for name, _, _ in jobs] == [
        "runtime-node-cron-history-purge",
        "runtime-node-events-purge",
        "runtime-node-staleness-sweep",
    ]
    assert {(node, port) for _, node, port in jobs} == {(socket_dir, server_port(db))}
    assert f"3 job(s) now connect to {socket_dir}:{server_port(db)}" in proc.stderr

    again = run_migrate(database_url)
    assert "now connect" not in again.stderr  # nothing left to repair
    assert f"pg_cron jobs connect to {socket_dir}:{server_port(db)}" in again.stderr


def test_a_tcp_node_name_is_refused_on_a_socket_only_server(db: psycopg.Connection) -> None:
    where = cron_jobs.Target("localhost", server_port(db), "test")
    why = cron_jobs.problem(db, where)
    assert why is not None
    assert "accepts only Unix-socket connections" in why
    assert f"cron.host = '{db.info.host}'" in why


def test_a_socket_directory_the_server_does_not_use_is_refused(db: psycopg.Connection) -> None:
    where = cron_jobs.Target("/nonexistent/socket-dir", server_port(db), "test")
    why = cron_jobs.problem(db, where)
    assert why is not None and "not one of this server's unix_socket_directories" in why
    assert cron_jobs.problem(db, cron_jobs.Target(db.info.host + "/", 1, "test")) is None


def test_a_failed_connection_of_the_last_run_stops_migrate(db: psycopg.Connection) -> None:
    """pg_cron records a job that cannot connect as a failed run, without start or end time
    (as pg_cron 1.4 writes it for a job at `localhost` on this cluster); migrate reports it."""
    with db.transaction(force_rollback=True):
        db.execute(
            "INSERT INTO cron.job_run_details"
            " (jobid, runid, job_pid, database, username, command, status, return_message,"
            "  start_time, end_time)"
            " SELECT jobid, nextval('cron.runid_seq'), NULL, database, username, command,"
            "        'failed', 'connection failed', NULL, NULL"
            "   FROM cron.job WHERE jobname = 'runtime-node-staleness-sweep'"
            "    AND database = current_database()"
        )
        assert cron_jobs.last_connection_failure(db) == "connection failed"
        try:
            cron_jobs.ensure_job_connection(db)
        except SystemExit as exc:
            assert "last run failed: connection failed" in str(exc)
        else:
            raise AssertionError("migrate accepted jobs whose last run could not connect")
    assert cron_jobs.last_connection_failure(db) is None


def test_a_repair_clears_the_failures_of_the_old_registration(
    db: psycopg.Connection, database_url: str, run_migrate: MigrateCli
) -> None:
    """Jobs at `localhost` fail to connect (pg_cron records it); after migrate repairs them, the
    next migrate must not refuse because of those stale failures."""
    db.execute(
        "UPDATE cron.job SET nodename = 'localhost'"
        " WHERE jobname LIKE 'runtime-node-%' AND database = current_database()"
    )
    db.execute(
        "INSERT INTO cron.job_run_details"
        " (jobid, runid, job_pid, database, username, command, status, return_message)"
        " SELECT jobid, nextval('cron.runid_seq'), NULL, database, username, command,"
        "        'failed', 'connection failed'"
        "   FROM cron.job WHERE jobname = 'runtime-node-staleness-sweep'"
        "    AND database = current_database()"
    )
    first = run_migrate(database_url)
    assert "3 job(s) now connect to" in first.stderr
    assert "1 failed run(s) of the old registration cleared" in first.stderr
    assert cron_jobs.last_connection_failure(db) is None
    run_migrate(database_url)  # check=True: succeeds
