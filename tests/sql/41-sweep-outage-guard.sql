-- The sweep's outage guard (contract §7): the gap guard (the control plane was not watching) and
-- the ingestion-stall guard (nobody's beats arrive), on explicit p_now calls.
-- Isolation as in 40-sweep-rules.sql: presence emptied, settings and sweep_state set explicitly,
-- fixed clock T = 2030-01-01 00:00:00 UTC, everything rolled back.
BEGIN;
CREATE EXTENSION IF NOT EXISTS pgtap;
SET search_path = control_plane, public, pg_catalog;
SET LOCAL timezone = 'UTC';

SELECT plan(40);

CREATE FUNCTION pg_temp.t(p_secs double precision DEFAULT 0) RETURNS timestamptz
    LANGUAGE sql IMMUTABLE
AS $$ SELECT '2030-01-01 00:00:00+00'::timestamptz + make_interval(secs => p_secs) $$;

CREATE FUNCTION pg_temp.node(p_id text, p_age double precision, p_health text) RETURNS void
    LANGUAGE sql
AS $$ INSERT INTO control_plane.runtime_node_presence (node_id, last_heartbeat_at, health_state)
      VALUES (p_id, pg_temp.t(-p_age), p_health) $$;

-- Sweeps every 5 s from T + p_from to T + p_to; before each, the nodes in p_beating beat (as a
-- heartbeat would: last_heartbeat_at = that instant, health online). Returns every transition
-- with the second it happened at.
CREATE FUNCTION pg_temp.sweeps(p_from integer, p_to integer, p_beating text[] DEFAULT '{}')
    RETURNS TABLE (at integer, node_id text, health_state text)
    LANGUAGE plpgsql
AS $$
BEGIN
    FOR at IN SELECT g FROM generate_series(p_from, p_to, 5) g LOOP
        UPDATE control_plane.runtime_node_presence p
           SET last_heartbeat_at = pg_temp.t(at), health_state = 'online'
         WHERE p.node_id = ANY (p_beating);
        RETURN QUERY SELECT at, s.node_id, s.health_state
                       FROM control_plane.runtime_node_sweep(pg_temp.t(at)) s;
    END LOOP;
END
$$;

-- sweep_state as if the previous sweep finished p_ago seconds before T + p_at.
CREATE FUNCTION pg_temp.prime(p_at double precision, p_ago double precision) RETURNS void
    LANGUAGE sql
AS $$ UPDATE control_plane.sweep_state
         SET last_started_at = pg_temp.t(p_at - p_ago), last_finished_at = pg_temp.t(p_at - p_ago),
             mode = 'normal', resumed_at = NULL, stall_since = NULL $$;

DELETE FROM runtime_node_presence;
UPDATE settings
   SET heartbeat_interval = '15 seconds', degraded_after = '30 seconds',
       offline_after = '60 seconds', sweep_interval = '5 seconds', gap_grace = '15 seconds',
       stall_min_nodes = 10;

-- 1. Gap guard ================================================================================
-- Nobody swept for 60 s (> gap_grace 15 s). Two nodes still beat (so this is no stall).
SELECT pg_temp.prime(0, 60);
SELECT pg_temp.node('gap-old', 120, 'online');
SELECT pg_temp.node('gap-45', 45, 'online');
SELECT pg_temp.node('gap-deg', 90, 'degraded');
SELECT pg_temp.node('gap-late', 45, 'online');    -- beats again during the grace
SELECT pg_temp.node('gap-beat1', 0, 'online');
SELECT pg_temp.node('gap-beat2', 0, 'online');

CREATE TEMP TABLE gap AS SELECT * FROM pg_temp.sweeps(0, 0, '{gap-beat1,gap-beat2}');
SELECT is_empty('SELECT * FROM gap',
                'first sweep after a gap demotes no one (staleness counts from resumption)');
SELECT is(mode, 'gap_grace', 'after a gap: mode gap_grace') FROM sweep_state;
SELECT is(resumed_at, pg_temp.t(0), 'after a gap: resumed_at = p_now') FROM sweep_state;

INSERT INTO gap SELECT * FROM pg_temp.sweeps(5, 30, '{gap-beat1,gap-beat2}');
SELECT is_empty('SELECT * FROM gap',
                'up to degraded_after after resumption: still no demotion (strict >)');
INSERT INTO gap SELECT * FROM pg_temp.sweeps(35, 35, '{gap-beat1,gap-beat2}');
SELECT results_eq(
    'SELECT node_id, health_state FROM gap WHERE at = 35 ORDER BY node_id',
    $$VALUES ('gap-45', 'degraded'), ('gap-late', 'degraded'), ('gap-old', 'degraded')$$,
    'degraded_after past resumption: online → degraded, not offline, however old the beat');
UPDATE runtime_node_presence SET last_heartbeat_at = pg_temp.t(40), health_state = 'online'
 WHERE node_id = 'gap-late';
INSERT INTO gap SELECT * FROM pg_temp.sweeps(40, 60, '{gap-beat1,gap-beat2}');
SELECT is_empty('SELECT * FROM gap WHERE at BETWEEN 40 AND 60',
                'until resumed_at + offline_after (inclusive) no node goes offline');
SELECT is((SELECT count(*)::int FROM runtime_node_presence WHERE health_state = 'offline'), 0,
          'no node offline within offline_after of resumption');
SELECT is(mode, 'gap_grace', 'still gap_grace at resumed_at + offline_after') FROM sweep_state;

INSERT INTO gap SELECT * FROM pg_temp.sweeps(65, 65, '{gap-beat1,gap-beat2}');
SELECT results_eq(
    'SELECT node_id, health_state FROM gap WHERE at = 65 ORDER BY node_id',
    $$VALUES ('gap-45', 'offline'), ('gap-deg', 'offline'), ('gap-old', 'offline')$$,
    'after the grace: normal rules, the long-silent nodes go offline');
SELECT is(health_state, 'online', 'a node that beat during the grace stays online')
  FROM runtime_node_presence WHERE node_id = 'gap-late';
SELECT is(mode, 'normal', 'after the grace: mode normal') FROM sweep_state;
SELECT is(resumed_at, pg_temp.t(0), 'resumed_at kept as the last resumption') FROM sweep_state;
SELECT is_empty('SELECT * FROM pg_temp.sweeps(70, 70, ''{gap-beat1,gap-beat2}'')',
                'regular sweeps (5 s apart) open no new grace');
SELECT is(mode, 'normal', 'mode stays normal while sweeps are regular') FROM sweep_state;

-- A gap of exactly gap_grace is not a gap; one of gap_grace + 1 s is.
SELECT pg_temp.prime(100, 15);
SELECT pg_temp.sweeps(100, 100, '{gap-beat1}');
SELECT is(mode, 'normal', 'previous sweep exactly gap_grace ago: no gap (strict >)')
  FROM sweep_state;
SELECT pg_temp.prime(200, 16);
SELECT pg_temp.sweeps(200, 200, '{gap-beat1}');
SELECT is(mode, 'gap_grace', 'previous sweep gap_grace + 1 s ago: gap') FROM sweep_state;

-- The very first sweep (no previous run recorded) resumes with grace.
UPDATE sweep_state SET last_started_at = NULL, last_finished_at = NULL, mode = 'normal',
                       resumed_at = NULL;
DELETE FROM runtime_node_presence;
SELECT pg_temp.node('first-old', 300, 'online');
SELECT pg_temp.node('first-beat', 0, 'online');
SELECT is_empty('SELECT * FROM pg_temp.sweeps(0, 0)', 'first sweep ever: nobody demoted');
SELECT results_eq('SELECT mode, resumed_at FROM sweep_state',
                  $$VALUES ('gap_grace', pg_temp.t(0))$$,
                  'first sweep ever: gap_grace from p_now');

-- 2. Ingestion-stall guard ======================================================================
DELETE FROM runtime_node_presence;
SELECT pg_temp.prime(0, 5);
SELECT pg_temp.node(format('stall-%s', lpad(i::text, 2, '0')), 90, 'online')
  FROM generate_series(1, 12) i;
SELECT pg_temp.node('stall-gone', 1000, 'offline');

CREATE TEMP TABLE stall AS SELECT * FROM pg_temp.sweeps(0, 0);
SELECT is((SELECT count(*)::int FROM stall), 12,
          '≥ stall_min_nodes live nodes, none fresh: each one is transitioned ...');
SELECT is((SELECT count(*)::int FROM stall WHERE health_state = 'degraded'), 12,
          '... to degraded only: no one goes offline (degraded still allowed)');
SELECT results_eq('SELECT mode, stall_since FROM sweep_state',
                  $$VALUES ('stall_hold', pg_temp.t(0))$$, 'mode stall_hold since p_now');

SELECT pg_temp.node('stall-new', 40, 'online');  -- silent, but not yet degraded at T
INSERT INTO stall SELECT * FROM pg_temp.sweeps(5, 105);
SELECT results_eq(
    'SELECT at, node_id, health_state FROM stall WHERE at > 0',
    $$VALUES (5, 'stall-new', 'degraded')$$,
    'while holding: nothing goes offline for minutes; a newly stale node still degrades');
SELECT results_eq('SELECT mode, stall_since FROM sweep_state',
                  $$VALUES ('stall_hold', pg_temp.t(0))$$,
                  'still stall_hold, stall_since unchanged');
SELECT is((SELECT count(*)::int FROM runtime_node_presence WHERE health_state = 'offline'), 1,
          'only the node that was already offline is offline');

-- A heartbeat arrives: the hold ends and grace starts from that sweep.
INSERT INTO stall SELECT * FROM pg_temp.sweeps(110, 110, '{stall-01}');
SELECT is_empty('SELECT * FROM stall WHERE at = 110', 'the sweep that sees a fresh beat demotes no one');
SELECT results_eq('SELECT mode, resumed_at, stall_since FROM sweep_state',
                  $$VALUES ('gap_grace', pg_temp.t(110), NULL::timestamptz)$$,
                  'a fresh beat clears stall_hold and grants grace from then');
INSERT INTO stall SELECT * FROM pg_temp.sweeps(115, 170, '{stall-01}');
SELECT is_empty('SELECT * FROM stall WHERE at BETWEEN 115 AND 170',
                'no node offline within offline_after of the resumption');
SELECT is(mode, 'gap_grace', 'gap_grace until resumed_at + offline_after') FROM sweep_state;
INSERT INTO stall SELECT * FROM pg_temp.sweeps(175, 175, '{stall-01}');
SELECT is((SELECT count(*)::int FROM stall WHERE at = 175 AND health_state = 'offline'), 12,
          'after the grace the silent nodes go offline');
SELECT is(health_state, 'online', 'the node that beats again stays online')
  FROM runtime_node_presence WHERE node_id = 'stall-01';
SELECT is(mode, 'normal', 'then mode normal') FROM sweep_state;

-- Fewer live nodes than stall_min_nodes: no hold (a small fleet may really be gone).
DELETE FROM runtime_node_presence;
SELECT pg_temp.prime(0, 5);
SELECT pg_temp.node(format('small-%s', i), 90, 'online') FROM generate_series(1, 9) i;
SELECT pg_temp.node(format('small-off-%s', i), 90, 'offline') FROM generate_series(1, 5) i;
SELECT is((SELECT count(*)::int FROM pg_temp.sweeps(0, 0) WHERE health_state = 'offline'), 9,
          '9 live stale nodes (< stall_min_nodes; offline ones do not count): offline normally');
SELECT is(mode, 'normal', 'no hold below stall_min_nodes') FROM sweep_state;

-- Exactly stall_min_nodes live nodes, none fresh: hold.
DELETE FROM runtime_node_presence;
SELECT pg_temp.prime(0, 5);
SELECT pg_temp.node(format('ten-%s', i), 90, 'degraded') FROM generate_series(1, 10) i;
SELECT is_empty('SELECT * FROM pg_temp.sweeps(0, 0)',
                'exactly stall_min_nodes degraded, silent nodes: held, none offline');
SELECT is(mode, 'stall_hold', 'exactly stall_min_nodes: stall_hold') FROM sweep_state;

-- A node beating exactly degraded_after ago counts as fresh.
UPDATE runtime_node_presence SET last_heartbeat_at = pg_temp.t(-25) WHERE node_id = 'ten-1';
SELECT is((SELECT count(*)::int FROM pg_temp.sweeps(5, 5)), 0,
          'a beat exactly degraded_after old ends the hold (grace, nothing offline)');
SELECT is(mode, 'gap_grace', 'hold left for grace') FROM sweep_state;

-- Releasing a hold by hand: the DBA takes the dead fleet offline, leaving < stall_min_nodes.
UPDATE runtime_node_presence SET last_heartbeat_at = pg_temp.t(-90);
SELECT pg_temp.prime(100, 5);
SELECT pg_temp.sweeps(100, 100);
SELECT is(mode, 'stall_hold', 'silent again: holding') FROM sweep_state;
UPDATE runtime_node_presence SET health_state = 'offline'
 WHERE node_id IN ('ten-1', 'ten-2', 'ten-3', 'ten-4', 'ten-5', 'ten-6', 'ten-7');
SELECT is((SELECT count(*)::int FROM pg_temp.sweeps(105, 105) WHERE health_state = 'offline'), 3,
          'below stall_min_nodes the hold is released and the rest go offline');
SELECT results_eq('SELECT mode, stall_since FROM sweep_state',
                  $$VALUES ('normal', NULL::timestamptz)$$, 'released: mode normal');

SELECT * FROM finish();
ROLLBACK;
