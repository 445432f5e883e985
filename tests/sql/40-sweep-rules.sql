-- The liveness sweep's rules (contract §4 presence axis, §7): thresholds with strict >, transition
-- only, idempotent, never a promotion, hysteresis through heartbeats, slot axis untouched,
-- sweep_state recorded, privileges.
-- Isolation: the database is shared with other suites and the live pg_cron sweep. Inside this
-- transaction every presence row is deleted, settings and sweep_state are set explicitly, and
-- the sweep is called with p_now on a fixed clock T = 2030-01-01 00:00:00 UTC; all rolled back.
BEGIN;
CREATE EXTENSION IF NOT EXISTS pgtap;
SET search_path = control_plane, public, pg_catalog;
SET LOCAL timezone = 'UTC';

SELECT plan(37);

-- T + p_secs on this file's fixed clock.
CREATE FUNCTION pg_temp.t(p_secs double precision DEFAULT 0) RETURNS timestamptz
    LANGUAGE sql IMMUTABLE
AS $$ SELECT '2030-01-01 00:00:00+00'::timestamptz + make_interval(secs => p_secs) $$;

-- A presence row whose last beat is p_age seconds before T.
CREATE FUNCTION pg_temp.node(p_id text, p_age double precision, p_health text) RETURNS void
    LANGUAGE sql
AS $$ INSERT INTO control_plane.runtime_node_presence (node_id, last_heartbeat_at, health_state)
      VALUES (p_id, pg_temp.t(-p_age), p_health) $$;

-- What a heartbeat does: last_heartbeat_at = "now" (here T + p_at), health as reported.
CREATE FUNCTION pg_temp.beat(p_id text, p_at double precision, p_health text) RETURNS void
    LANGUAGE sql
AS $$ UPDATE control_plane.runtime_node_presence
         SET last_heartbeat_at = pg_temp.t(p_at), health_state = p_health
       WHERE node_id = p_id $$;

CREATE FUNCTION pg_temp.sweep(p_at double precision)
    RETURNS TABLE (node_id text, health_state text)
    LANGUAGE sql
AS $$ SELECT s.node_id, s.health_state FROM control_plane.runtime_node_sweep(pg_temp.t(p_at)) s $$;

DELETE FROM runtime_node_presence;
UPDATE settings
   SET heartbeat_interval = '15 seconds', degraded_after = '30 seconds',
       offline_after = '60 seconds', sweep_interval = '5 seconds', gap_grace = '15 seconds',
       stall_min_nodes = 10;
-- The previous sweep finished 5 s before T: no gap, normal mode.
UPDATE sweep_state
   SET last_started_at = pg_temp.t(-5), last_finished_at = pg_temp.t(-5), last_duration_ms = 1,
       last_transitions = 0, total_runs = 100, total_transitions = 1000, mode = 'normal',
       resumed_at = NULL, stall_since = NULL;

-- The slot axis: an owner, a session and attachments for some of the nodes.
INSERT INTO participants (id) VALUES ('4000a000-0000-4000-8000-000000000001');
INSERT INTO sessions (id) VALUES ('4000a000-0000-4000-8000-000000000002');
INSERT INTO session_memberships (session_id, participant_id, role, state, joined_at)
VALUES ('4000a000-0000-4000-8000-000000000002', '4000a000-0000-4000-8000-000000000001',
        'owner', 'active', now());
INSERT INTO runtime_node_attachments (session_id, participant_id, node_id, client_version, state,
                                      capabilities)
SELECT '4000a000-0000-4000-8000-000000000002', '4000a000-0000-4000-8000-000000000001', n, '1.0',
       s, '{"gpu": true}'
  FROM (VALUES ('sw40-age45', 'online'), ('sw40-age90', 'degraded'),
               ('sw40-fresh', 'online'), ('sw40-off45', 'offline')) v(n, s);
CREATE TEMP TABLE slots_before AS
SELECT md5(string_agg(a::text, E'\n' ORDER BY a.id)) AS digest
  FROM runtime_node_attachments a
 WHERE a.session_id = '4000a000-0000-4000-8000-000000000002';

SELECT pg_temp.node('sw40-fresh', 10, 'online');
SELECT pg_temp.node('sw40-age45', 45, 'online');
SELECT pg_temp.node('sw40-age90', 90, 'online');
SELECT pg_temp.node('sw40-deg90', 90, 'degraded');
SELECT pg_temp.node('sw40-deg45', 45, 'degraded');
SELECT pg_temp.node('sw40-at30', 30, 'online');
SELECT pg_temp.node('sw40-at60', 60, 'online');
SELECT pg_temp.node('sw40-deg-at60', 60, 'degraded');
SELECT pg_temp.node('sw40-off45', 45, 'offline');
SELECT pg_temp.node('sw40-off-fresh', 1, 'offline');
SELECT pg_temp.node('sw40-selfdeg', 5, 'degraded');

-- A row version's ctid changes on every UPDATE, even a no-op one: "never rewritten" is checkable.
CREATE TEMP TABLE versions AS SELECT node_id::text, ctid AS version FROM runtime_node_presence;

-- One pass at T: several nodes, each to its own target ---------------------------------------
CREATE TEMP TABLE pass1 AS SELECT * FROM pg_temp.sweep(0);
SELECT results_eq(
    'SELECT node_id, health_state FROM pass1 ORDER BY node_id',
    $$VALUES ('sw40-age45', 'degraded'), ('sw40-age90', 'offline'), ('sw40-at60', 'degraded'),
             ('sw40-deg90', 'offline')$$,
    'one pass returns exactly the transitioned rows with their new health');
SELECT is(health_state, 'degraded', '45 s without a beat: online → degraded')
  FROM runtime_node_presence WHERE node_id = 'sw40-age45';
SELECT is(health_state, 'offline', '90 s without a beat: online → offline in one pass')
  FROM runtime_node_presence WHERE node_id = 'sw40-age90';
SELECT is(health_state, 'offline', '90 s: degraded → offline')
  FROM runtime_node_presence WHERE node_id = 'sw40-deg90';
SELECT is(health_state, 'degraded', '45 s and already degraded: stays degraded')
  FROM runtime_node_presence WHERE node_id = 'sw40-deg45';
SELECT is(health_state, 'online', 'exactly degraded_after (30 s) old: untouched (strict >)')
  FROM runtime_node_presence WHERE node_id = 'sw40-at30';
SELECT is(health_state, 'degraded', 'exactly offline_after (60 s) old: degraded, not offline')
  FROM runtime_node_presence WHERE node_id = 'sw40-at60';
SELECT is(health_state, 'degraded', 'degraded and exactly 60 s old: not offline (strict >)')
  FROM runtime_node_presence WHERE node_id = 'sw40-deg-at60';
SELECT is(health_state, 'online', 'fresh (10 s) node untouched')
  FROM runtime_node_presence WHERE node_id = 'sw40-fresh';
SELECT is(health_state, 'offline', 'offline 45 s old: not promoted, not turned into degraded')
  FROM runtime_node_presence WHERE node_id = 'sw40-off45';
SELECT is(health_state, 'offline', 'offline with a fresh beat (detached): never promoted')
  FROM runtime_node_presence WHERE node_id = 'sw40-off-fresh';
SELECT is(health_state, 'degraded', 'self-reported degraded and fresh: untouched')
  FROM runtime_node_presence WHERE node_id = 'sw40-selfdeg';
SELECT is_empty(
    $$SELECT v.node_id FROM versions v JOIN runtime_node_presence p ON p.node_id = v.node_id
       WHERE p.ctid <> v.version
         AND v.node_id NOT IN ('sw40-age45', 'sw40-age90', 'sw40-at60', 'sw40-deg90')$$,
    'rows not transitioned were not rewritten (same row version)');
SELECT is(
    (SELECT min(last_heartbeat_at) FROM runtime_node_presence WHERE node_id LIKE 'sw40-age%'),
    pg_temp.t(-90), 'the sweep never touches last_heartbeat_at');

-- sweep_state records the run ---------------------------------------------------------------
SELECT is(last_started_at, pg_temp.t(0), 'sweep_state.last_started_at = p_now') FROM sweep_state;
SELECT ok(last_finished_at >= pg_temp.t(0)
          AND last_finished_at = last_started_at
                                 + make_interval(secs => last_duration_ms / 1000),
          'sweep_state.last_finished_at = p_now + the run''s duration') FROM sweep_state;
SELECT ok(last_duration_ms >= 0, 'sweep_state.last_duration_ms recorded') FROM sweep_state;
SELECT is(last_transitions, 4, 'sweep_state.last_transitions = rows transitioned') FROM sweep_state;
SELECT is(total_runs, 101::bigint, 'sweep_state.total_runs incremented') FROM sweep_state;
SELECT is(total_transitions, 1004::bigint, 'sweep_state.total_transitions accumulated')
  FROM sweep_state;
SELECT is(mode, 'normal', 'no guard: mode normal') FROM sweep_state;
SELECT is(resumed_at, NULL, 'no gap: resumed_at stays null') FROM sweep_state;

-- Idempotent: a second pass at the same instant changes nothing ----------------------------
DROP TABLE versions;
CREATE TEMP TABLE versions AS SELECT node_id::text, ctid AS version FROM runtime_node_presence;
SELECT is_empty('SELECT * FROM pg_temp.sweep(0)', 'a second pass at the same p_now returns nothing');
SELECT is_empty(
    $$SELECT 1 FROM versions v JOIN runtime_node_presence p ON p.node_id = v.node_id
       WHERE p.ctid <> v.version$$,
    'a second pass rewrites no row');
SELECT is(last_transitions, 0, 'sweep_state.last_transitions = 0 after an idle pass')
  FROM sweep_state;

-- Hysteresis: a beat brings a degraded node straight back to online ---------------------------
SELECT pg_temp.beat('sw40-age45', 2, 'online');
SELECT results_eq(
    'SELECT node_id, health_state FROM pg_temp.sweep(5) ORDER BY node_id',
    $$VALUES ('sw40-at30', 'degraded'), ('sw40-at60', 'offline'), ('sw40-deg-at60', 'offline')$$,
    'T+5: a swept-degraded node that beat again is left alone; others age on');
SELECT is(health_state, 'online', 'degraded → online by its beat, never through offline')
  FROM runtime_node_presence WHERE node_id = 'sw40-age45';

-- A swept-offline node revives on its next beat, with the health it reports.
SELECT pg_temp.beat('sw40-age90', 6, 'online');
SELECT pg_temp.beat('sw40-deg90', 6, 'degraded');
SELECT is_empty('SELECT * FROM pg_temp.sweep(10)', 'T+10: revived nodes are fresh for the sweep');
SELECT results_eq(
    $$SELECT node_id::text, health_state FROM runtime_node_presence
       WHERE node_id IN ('sw40-age90', 'sw40-deg90') ORDER BY node_id$$,
    $$VALUES ('sw40-age90', 'online'), ('sw40-deg90', 'degraded')$$,
    'a swept-offline node revives on its next beat, to its reported health');

-- Time passes (T + 20 s): a degraded row crosses offline_after -------------------------------
SELECT results_eq(
    'SELECT node_id, health_state FROM pg_temp.sweep(20) ORDER BY node_id',
    $$VALUES ('sw40-deg45', 'offline')$$,
    'T+20: degraded → offline once past 60 s');
SELECT is(health_state, 'online', 'exactly 30 s old at T+20: still online')
  FROM runtime_node_presence WHERE node_id = 'sw40-fresh';
SELECT is(total_runs, 105::bigint, 'every pass counted in total_runs') FROM sweep_state;

-- The slot axis is never touched ---------------------------------------------------------------
SELECT is(
    (SELECT md5(string_agg(a::text, E'\n' ORDER BY a.id)) FROM runtime_node_attachments a
      WHERE a.session_id = '4000a000-0000-4000-8000-000000000002'),
    (SELECT digest FROM slots_before),
    'attachments are byte-identical after every pass');

-- Arguments, security, HOT --------------------------------------------------------------------
SELECT throws_ok('SELECT * FROM control_plane.runtime_node_sweep(NULL)', 'CP400', NULL,
                 'p_now null is refused');
SELECT ok(NOT p.prosecdef, 'runtime_node_sweep is not SECURITY DEFINER')
  FROM pg_proc p WHERE p.oid = 'control_plane.runtime_node_sweep(timestamptz)'::regprocedure;
SELECT ok(NOT has_function_privilege('control_plane_api',
                                     'control_plane.runtime_node_sweep(timestamptz)', 'EXECUTE'),
          'the API role may not run the sweep');
SELECT is(
    (SELECT count(*)::int FROM pg_index i
       JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY (i.indkey)
      WHERE i.indrelid = 'control_plane.runtime_node_presence'::regclass
        AND a.attname = 'last_heartbeat_at'),
    0, 'no index on presence.last_heartbeat_at (heartbeats stay HOT)');

SELECT * FROM finish();
ROLLBACK;
