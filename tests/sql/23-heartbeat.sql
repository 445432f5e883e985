-- runtime_node_heartbeat and runtime_node_heartbeat_batch (contract §4, §6.4): presence upsert on
-- the database clock, hysteresis, floor exemption, refusals write no presence, and the batch's
-- per-item verdicts with mixed callers, duplicates and malformed input.
BEGIN;
CREATE EXTENSION IF NOT EXISTS pgtap;
SET search_path = control_plane, public, pg_catalog;
\ir _lifecycle_fixtures.psql

SELECT plan(41);

DO $$
BEGIN
    PERFORM pg_temp.mk(x) FROM unnest(ARRAY['ann', 'bob', 'vic', 'out', 'sue']) x;
    PERFORM pg_temp.mks('s1');
    PERFORM pg_temp.mks('s2', '5.0');
    PERFORM pg_temp.member('s1', 'ann', 'runtime_contributor');
    PERFORM pg_temp.member('s2', 'ann', 'runtime_contributor');
    PERFORM pg_temp.member('s1', 'bob', 'collaborator');
    PERFORM pg_temp.member('s1', 'vic', 'viewer');
    PERFORM pg_temp.member('s1', 'sue', 'collaborator');
    PERFORM pg_temp.attach('ann', 's1', 'n1');
    PERFORM pg_temp.attach('ann', 's1', 'n2');
    PERFORM pg_temp.attach('bob', 's1', 'bobs');
    PERFORM pg_temp.attach('sue', 's1', 'sues');
    PERFORM pg_temp.attach('ann', 's2', 'low', '1.0');
    PERFORM pg_temp.attach('ann', 's1', 'gone');
    PERFORM pg_temp.detach('ann', 'gone');
    PERFORM pg_temp.attach('ann', 's1', 'rvk');
    PERFORM pg_temp.admin_revoke('s1', 'rvk');
    PERFORM pg_temp.member('s1', 'sue', 'collaborator', 'suspended');
END $$;

-- A beat creates presence on the database clock ------------------------------------------------
SELECT pg_temp.fp('runtime_node_attachments') AS fp_a, pg_temp.fp('sessions') AS fp_s,
       pg_temp.fp('session_memberships') AS fp_m \gset
SELECT lives_ok($$SELECT pg_temp.beat('ann', 'n1', 'online')$$, 'a registering node may beat');
SELECT is(pg_temp.health('n1'), 'online', 'presence health = the reported online');
SELECT is((SELECT last_heartbeat_at FROM runtime_node_presence WHERE node_id = pg_temp.n('n1')),
          now(), 'last_heartbeat_at = now() (the database clock)');
SELECT is(pg_temp.fp('runtime_node_attachments'), :'fp_a', 'a beat does not write attachments');
SELECT is(pg_temp.fp('sessions'), :'fp_s', 'nor sessions');
SELECT is(pg_temp.fp('session_memberships'), :'fp_m', 'nor memberships');
SELECT is(current_setting('synchronous_commit'), 'on',
          'the beat''s transaction commits synchronously (no acknowledged beat is lost)');

-- Updates, hysteresis --------------------------------------------------------------------------
SELECT pg_temp.beat('ann', 'n1', 'degraded') \g /dev/null
SELECT is(pg_temp.health('n1'), 'degraded', 'a degraded self-report is stored');
UPDATE runtime_node_presence SET health_state = 'offline', last_heartbeat_at = now() - interval '5 minutes'
 WHERE node_id = pg_temp.n('n1');
SELECT pg_temp.beat('ann', 'n1', 'online') \g /dev/null
SELECT is(pg_temp.health('n1'), 'online', 'a swept-offline node that beats returns to its reported health');
SELECT is((SELECT last_heartbeat_at FROM runtime_node_presence WHERE node_id = pg_temp.n('n1')),
          now(), 'and its last_heartbeat_at is refreshed');
SELECT is(pg_temp.presence_rows('n1'), 1::bigint, 'still one presence row per node');
SELECT lives_ok($$SELECT pg_temp.beat('ann', 'low', 'online')$$,
                'a below-floor (read-only) node may beat: heartbeats are exempt from the floor');
SELECT is(pg_temp.health('low'), 'online', 'and its presence is written');

-- Refusals write no presence -------------------------------------------------------------------
SELECT pg_temp.fp() AS fp_403 \gset
SELECT throws_ok(format($$SELECT pg_temp.beat(%L, %L)$$, who, node), 'CP403', 'permission denied',
                 format('403: %s', why))
  FROM (VALUES ('ann', 'nope', 'unknown node'),
               ('bob', 'n2', 'node owned by another member'),
               ('vic', 'n2', 'a viewer of the session'),
               ('out', 'n2', 'not a member'),
               ('ann', 'gone', 'own node, slot offline'),
               ('ann', 'rvk', 'own node, slot revoked'),
               ('sue', 'sues', 'own node, membership suspended')) v (who, node, why);
SELECT is(pg_temp.fp(), :'fp_403', 'refused beats changed nothing');
SELECT is(pg_temp.presence_rows('n2') + pg_temp.presence_rows('gone') + pg_temp.presence_rows('rvk')
          + pg_temp.presence_rows('sues') + pg_temp.presence_rows('nope'), 0::bigint,
          'no presence row was written for a refused beat');
SELECT throws_ok(format($$SELECT control_plane.runtime_node_heartbeat(%L, %L, 'online')$$,
                        sha256('nobody'::bytea), pg_temp.n('n1')), 'CP401', NULL, '401: unknown token');
SELECT throws_ok(format($$SELECT control_plane.runtime_node_heartbeat(NULL, %L, 'online')$$,
                        pg_temp.n('n1')), 'CP401', NULL, '401: no token');
SELECT throws_ok(format($$SELECT pg_temp.beat('ann', 'n1', %L)$$, h), 'CP400',
                 'healthState must be online or degraded', format('health %s → CP400', coalesce(h, 'NULL')))
  FROM unnest(ARRAY['offline', 'registering', 'revoked', NULL]) h;
SELECT is(pg_temp.fp(), :'fp_403', 'refused beats changed nothing (401, 400)');

-- The batch: one SQLSTATE per item (NULL = accepted), each item authorized with its own token ----
SELECT pg_temp.fp('runtime_node_presence') AS fp_before_batch \gset
SELECT is(
    runtime_node_heartbeat_batch(
        ARRAY[pg_temp.d('ann'), pg_temp.d('bob'), pg_temp.d('bob'), sha256('x'::bytea),
              pg_temp.d('ann'), pg_temp.d('vic'), pg_temp.d('ann'), pg_temp.d('ann')],
        ARRAY[pg_temp.n('n2'), pg_temp.n('bobs'), pg_temp.n('n1'), pg_temp.n('n1'),
              pg_temp.n('n2'), pg_temp.n('bobs'), pg_temp.n('gone'), pg_temp.n('n1')],
        ARRAY['online', 'degraded', 'online', 'online',
              'degraded', 'online', 'online', 'offline']),
    ARRAY[NULL, NULL, 'CP403', 'CP401', NULL, 'CP403', 'CP403', 'CP400']::text[],
    'mixed callers: ann ok, bob ok, bob on ann''s node CP403, bad token CP401, ann dup ok, '
    'viewer CP403, offline slot CP403, bad health CP400');
SELECT is(pg_temp.health('n2'), 'degraded', 'a node twice in one batch: the last item wins');
SELECT is(pg_temp.health('bobs'), 'degraded', 'bob''s own beat was written with his health');
SELECT is(pg_temp.health('n1'), 'online',
          'bob''s, the unknown token''s and the bad-health items did not write ann''s node');
SELECT is(pg_temp.presence_rows('gone'), 0::bigint, 'the refused item wrote no presence');
SELECT is(runtime_node_heartbeat_batch('{}', '{}', '{}'), '{}'::text[],
          'an empty batch returns an empty verdict list');
SELECT pg_temp.fp() AS fp_bad_batch \gset
SELECT throws_ok(format($$SELECT control_plane.runtime_node_heartbeat_batch(ARRAY[%L::bytea], ARRAY[%L, %L], ARRAY['online'])$$,
                        pg_temp.d('ann'), pg_temp.n('n1'), pg_temp.n('n2')),
                 'CP400', NULL, 'arrays of unequal length → CP400');
SELECT throws_ok($$SELECT control_plane.runtime_node_heartbeat_batch(NULL, ARRAY['a'], ARRAY['online'])$$,
                 'CP400', NULL, 'a NULL array → CP400');
SELECT throws_ok(format($$SELECT control_plane.runtime_node_heartbeat_batch(ARRAY[[%L::bytea]], ARRAY[[%L]], ARRAY[['online']])$$,
                        pg_temp.d('ann'), pg_temp.n('n1')),
                 'CP400', NULL, 'two-dimensional arrays → CP400');
SELECT is(pg_temp.fp(), :'fp_bad_batch', 'malformed batches changed nothing');
-- Many nodes of one caller in one batch, in no particular order.
SELECT pg_temp.attach('ann', 's1', 'm' || i) FROM generate_series(1, 20) i \g /dev/null
SELECT is(
    runtime_node_heartbeat_batch(
        array_fill(pg_temp.d('ann'), ARRAY[20]),
        (SELECT array_agg(pg_temp.n('m' || i) ORDER BY md5(i::text)) FROM generate_series(1, 20) i),
        array_fill('online'::text, ARRAY[20])),
    array_fill(NULL::text, ARRAY[20]), 'a batch of 20 nodes in random order: all accepted (NULL)');
SELECT is((SELECT count(*) FROM runtime_node_presence
            WHERE node_id IN (SELECT pg_temp.n('m' || i) FROM generate_series(1, 20) i)
              AND health_state = 'online' AND last_heartbeat_at = now()),
          20::bigint, 'and all 20 presence rows are written');

SELECT * FROM finish();
ROLLBACK;
