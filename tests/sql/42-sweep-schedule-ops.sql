-- pg_cron jobs created by migration 0002 (the sweep, picked by pg_cron version, and the history
-- purge), the < 1.5 loop procedure's shape, and the operations functions behind /readyz and
-- /metrics. Rolled back; presence is emptied inside the transaction for the count checks.
BEGIN;
CREATE EXTENSION IF NOT EXISTS pgtap;
SET search_path = control_plane, public, pg_catalog;
SET LOCAL timezone = 'UTC';

SELECT plan(37);

CREATE TEMP TABLE cron_version AS
SELECT string_to_array(regexp_replace(extversion, '[^0-9.].*$', ''), '.')::integer[]
           >= ARRAY[1, 5] AS seconds_capable
  FROM pg_extension WHERE extname = 'pg_cron';

-- The sweep job ---------------------------------------------------------------------------------
SELECT has_extension('pg_cron', 'pg_cron is installed');
SELECT is((SELECT count(*)::int FROM cron.job WHERE jobname = 'runtime-node-staleness-sweep'), 1,
          'one job runtime-node-staleness-sweep');
SELECT is(j.schedule,
          CASE WHEN v.seconds_capable THEN '5 seconds' ELSE '* * * * *' END,
          'sweep schedule: 5 seconds on pg_cron >= 1.5, every minute (the loop) below')
  FROM cron.job j, cron_version v WHERE j.jobname = 'runtime-node-staleness-sweep';
SELECT is(j.command,
          CASE WHEN v.seconds_capable
               THEN 'SELECT count(*) FROM control_plane.runtime_node_sweep()'
               ELSE 'CALL control_plane.runtime_node_sweep_loop()' END,
          'sweep command: the function on pg_cron >= 1.5, the loop procedure below')
  FROM cron.job j, cron_version v WHERE j.jobname = 'runtime-node-staleness-sweep';
SELECT is_empty(
    $$SELECT jobname FROM cron.job
       WHERE jobname LIKE 'runtime-node-%'
         AND cardinality(regexp_split_to_array(btrim(schedule), '\s+')) = 6$$,
    'no 6-field cron string (pg_cron < 1.5 would read */5 seconds as minutes)');
SELECT ok(active, 'the sweep job is active')
  FROM cron.job WHERE jobname = 'runtime-node-staleness-sweep';
SELECT is(database, current_database()::text, 'the sweep job runs in this database')
  FROM cron.job WHERE jobname = 'runtime-node-staleness-sweep';
SELECT ok((SELECT rolsuper FROM pg_roles WHERE rolname = j.username),
          'the jobs run as the migrating superuser')
  FROM cron.job j WHERE j.jobname = 'runtime-node-staleness-sweep';

-- The history purge job ---------------------------------------------------------------------------
SELECT is(schedule, '*/10 * * * *', 'history purge every 10 minutes')
  FROM cron.job WHERE jobname = 'runtime-node-cron-history-purge';
SELECT ok(active, 'the purge job is active')
  FROM cron.job WHERE jobname = 'runtime-node-cron-history-purge';

-- Run the purge's own command against planted history rows.
UPDATE settings SET cron_history_retention = '1 hour';
INSERT INTO cron.job_run_details (jobid, runid, job_pid, database, username, command, status,
                                  return_message, start_time, end_time)
SELECT j.jobid, -v.n, 0, current_database(), current_user, 'planted by 42', v.status, 'test',
       now() - v.age, CASE WHEN v.status = 'running' THEN NULL ELSE now() - v.age END
  FROM cron.job j,
       (VALUES (1, interval '2 hours', 'succeeded'), (2, interval '61 minutes', 'failed'),
               (3, interval '3 hours', 'running'), (4, interval '59 minutes', 'succeeded'),
               (5, interval '1 minute', 'succeeded')) v(n, age, status)
 WHERE j.jobname = 'runtime-node-staleness-sweep';
INSERT INTO cron.job_run_details (jobid, runid, job_pid, database, username, command, status,
                                  return_message, start_time, end_time)
VALUES (-4242, -6, 0, current_database(), current_user, 'planted by 42 (foreign job)',
        'succeeded', 'test', now() - interval '5 hours', now() - interval '5 hours');
DO $$
BEGIN
    EXECUTE (SELECT command FROM cron.job WHERE jobname = 'runtime-node-cron-history-purge');
END
$$;
SELECT results_eq(
    $$SELECT -runid FROM cron.job_run_details WHERE command LIKE 'planted by 42%' ORDER BY 1$$,
    ARRAY[4::bigint, 5, 6],
    'purge: this schema''s runs older than cron_history_retention go (also crashed "running" '
    'ones); recent runs and other jobs'' history stay');

-- The loop procedure (pg_cron < 1.5) ------------------------------------------------------------
SELECT isnt(to_regprocedure('control_plane.runtime_node_sweep_loop(interval, timestamptz)'), NULL,
            'runtime_node_sweep_loop(interval, timestamptz) exists');
SELECT ok(p.prokind = 'p' AND NOT p.prosecdef AND p.proconfig IS NULL,
          'the loop is a plain procedure: no SECURITY DEFINER, no SET clause (it COMMITs)')
  FROM pg_proc p
 WHERE p.oid = 'control_plane.runtime_node_sweep_loop(interval, timestamptz)'::regprocedure;
SELECT ok(NOT has_function_privilege('control_plane_api',
              'control_plane.runtime_node_sweep_loop(interval, timestamptz)', 'EXECUTE'),
          'the API role may not call the loop');
SELECT throws_ok('CALL control_plane.runtime_node_sweep_loop(interval ''0'')', 'CP400', NULL,
                 'a non-positive interval is refused');
SELECT ok(obj_description(p.oid, 'pg_proc') IS NOT NULL, p.proname || ' has a comment')
  FROM pg_proc p
 WHERE p.pronamespace = 'control_plane'::regnamespace
   AND p.proname IN ('runtime_node_sweep', 'runtime_node_sweep_loop', 'ops_status',
                     'ops_metrics', 'ops_sweep_status')
 ORDER BY p.proname;

-- ops_status (/readyz): cheap, no counts ------------------------------------------------------
UPDATE sweep_state
   SET last_started_at = now() - interval '2 seconds', last_finished_at = now() - interval '1 second',
       last_duration_ms = 3.5, last_transitions = 2, total_runs = 7, total_transitions = 9,
       mode = 'stall_hold', resumed_at = now() - interval '1 minute',
       stall_since = now() - interval '30 seconds';
SELECT is((SELECT array_agg(k ORDER BY k) FROM jsonb_object_keys(ops_status()) k),
          ARRAY['inRecovery', 'migrations', 'sweep'],
          'ops_status: migrations, sweep and inRecovery only (no counts)');
SELECT is((ops_status() ->> 'inRecovery')::boolean, false,
          'ops_status: inRecovery is false on a primary (true on a standby: no primary reachable)');
SELECT ok(ops_status() -> 'migrations' ? '0002-sweep-schedule',
          'ops_status lists the applied migrations');
SELECT is(ops_status() #>> '{sweep,mode}', 'stall_hold', 'ops_status exposes the guard mode');
SELECT is((ops_status() #>> '{sweep,ageSeconds}')::numeric, 1::numeric,
          'ops_status: ageSeconds = now() - lastFinishedAt');
SELECT is((ops_status() #>> '{sweep,intervalSeconds}')::numeric, 5::numeric,
          'ops_status: intervalSeconds from settings');
SELECT results_eq(
    $$SELECT (s->>'lastDurationMs')::float8, (s->>'lastTransitions')::int,
             (s->>'totalRuns')::bigint, (s->>'totalTransitions')::bigint,
             (s->>'stallSince')::timestamptz, (s->>'resumedAt')::timestamptz
        FROM (SELECT ops_status() -> 'sweep' AS s) x$$,
    $$SELECT 3.5::float8, 2, 7::bigint, 9::bigint, now() - interval '30 seconds',
             now() - interval '1 minute'$$,
    'ops_status: the sweep''s last run, totals and guard timestamps');
SELECT ok(p.prosecdef AND p.provolatile = 's', 'ops_status is SECURITY DEFINER and STABLE')
  FROM pg_proc p WHERE p.oid = 'control_plane.ops_status()'::regprocedure;
SELECT ok(has_function_privilege('control_plane_api', 'control_plane.ops_status()', 'EXECUTE'),
          'the API role may call ops_status');

-- ops_metrics (/metrics): the counts ------------------------------------------------------------
DELETE FROM runtime_node_presence;
INSERT INTO runtime_node_presence VALUES ('m42-a', now(), 'online'), ('m42-b', now(), 'online'),
                                         ('m42-c', now(), 'degraded');
SELECT is(ops_metrics() -> 'health', '{"online": 2, "degraded": 1}'::jsonb,
          'ops_metrics: presence rows per health (absent health: no key)');
CREATE TEMP TABLE slots_before AS SELECT ops_metrics() -> 'slots' AS s;
INSERT INTO participants (id) VALUES ('4200a000-0000-4000-8000-000000000001');
INSERT INTO sessions (id) VALUES ('4200a000-0000-4000-8000-000000000002');
INSERT INTO session_memberships (session_id, participant_id, role, state)
VALUES ('4200a000-0000-4000-8000-000000000002', '4200a000-0000-4000-8000-000000000001',
        'owner', 'active');
INSERT INTO runtime_node_attachments (session_id, participant_id, node_id, client_version, state)
SELECT '4200a000-0000-4000-8000-000000000002', '4200a000-0000-4000-8000-000000000001',
       'm42-slot-' || st, '1.0', st
  FROM unnest(ARRAY['registering', 'online', 'degraded', 'offline', 'revoked']) st;
SELECT is(coalesce((ops_metrics() #>> ARRAY['slots', st])::int, 0)
          - coalesce((SELECT (s ->> st)::int FROM slots_before), 0), 1,
          'ops_metrics counts attachments in slot state ' || st)
  FROM unnest(ARRAY['registering', 'online', 'degraded', 'offline', 'revoked']) st;
SELECT is(ops_metrics() -> 'sweep', ops_status() -> 'sweep', 'ops_metrics carries the sweep state');
SELECT ok(has_function_privilege('control_plane_api', 'control_plane.ops_metrics()', 'EXECUTE'),
          'the API role may call ops_metrics');

SELECT * FROM finish();
ROLLBACK;
