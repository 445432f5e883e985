-- runtime_node_update_capabilities (contract §4, §6.3): full replacement, the slot-state rules
-- (registering → online refused, registering/online → degraded, degraded → online), the order
-- auth → floor → state rule, input validation, and "writes only the attachment row".
BEGIN;
CREATE EXTENSION IF NOT EXISTS pgtap;
SET search_path = control_plane, public, pg_catalog;
\ir _lifecycle_fixtures.psql

SELECT plan(39);

DO $$
BEGIN
    PERFORM pg_temp.mk(x) FROM unnest(ARRAY['ann', 'bob', 'vic', 'out']) x;
    PERFORM pg_temp.mks('s1');
    PERFORM pg_temp.mks('s2', '2.0');
    PERFORM pg_temp.member('s1', 'ann', 'runtime_contributor');
    PERFORM pg_temp.member('s2', 'ann', 'runtime_contributor');
    PERFORM pg_temp.member('s1', 'bob', 'collaborator');
    PERFORM pg_temp.member('s1', 'vic', 'viewer');
    PERFORM pg_temp.attach('ann', 's1', 'n1', '1.0', '{"a": 1, "b": 2}');
    PERFORM pg_temp.attach('bob', 's1', 'bobs');
    PERFORM pg_temp.attach('ann', 's2', 'low', '1.9');
    PERFORM pg_temp.attach('ann', 's2', 'ok', '2.0');
    -- n1 has a presence row, to show that capability updates never touch it.
    PERFORM pg_temp.beat('ann', 'n1', 'online');
END $$;

-- No health change: capabilities fully replaced, state unchanged --------------------------------
SELECT pg_temp.fp('sessions') AS fp_s, pg_temp.fp('session_memberships') AS fp_m,
       pg_temp.fp('runtime_node_presence') AS fp_p \gset
CREATE TEMP TABLE r1 AS SELECT pg_temp.caps('ann', 'n1', '{"a": 9}') AS r;
SELECT is((SELECT array_agg(k ORDER BY k) FROM r1, jsonb_object_keys(r) k),
          ARRAY['degradedAfterSeconds', 'heartbeatIntervalSeconds', 'nodeId', 'offlineAfterSeconds',
                'state', 'updatedAt'],
          'returns exactly nodeId, state, updatedAt and the three timings (contract §10)');
SELECT is((SELECT r ->> 'state' FROM r1), 'registering', 'no health change: state unchanged');
SELECT is((SELECT r -> 'updatedAt' FROM r1), to_jsonb((pg_temp.slot('s1', 'n1')).updated_at),
          'updatedAt is the row''s updated_at');
SELECT is((pg_temp.slot('s1', 'n1')).capabilities, '{"a": 9}'::jsonb,
          'full replacement: the missing key b is removed');
SELECT is(pg_temp.caps('ann', 'n1', '{}') ->> 'state', 'registering', 'an empty map is allowed');
SELECT is((pg_temp.slot('s1', 'n1')).capabilities, '{}'::jsonb, 'and removes every capability');

-- registering + online → CPC03, nothing changes ---------------------------------------------------
SELECT pg_temp.fp() AS fp_c3 \gset
SELECT throws_ok($$SELECT pg_temp.caps('ann', 'n1', '{"x": 1}', 'online')$$, 'CPC03',
                 'only a capability declaration brings a registering node online',
                 'registering → online by capability update → capabilityupdate_conflict');
SELECT is(pg_temp.fp(), :'fp_c3', 'the refused update changed nothing');

-- The other transitions -------------------------------------------------------------------------
SELECT is(pg_temp.caps('ann', 'n1', '{"x": 1}', 'degraded') ->> 'state', 'degraded',
          'registering → degraded');
SELECT is(pg_temp.caps('ann', 'n1', '{"x": 2}', 'online') ->> 'state', 'online',
          'degraded → online');
SELECT is(pg_temp.caps('ann', 'n1', '{"x": 3}', 'online') ->> 'state', 'online',
          'online → online');
SELECT is(pg_temp.caps('ann', 'n1', '{"x": 4}') ->> 'state', 'online',
          'online, no health change → online');
SELECT is(pg_temp.caps('ann', 'n1', '{"x": 5}', 'degraded') ->> 'state', 'degraded',
          'online → degraded');
SELECT is(pg_temp.caps('ann', 'n1', '{"x": 6}') ->> 'state', 'degraded',
          'degraded, no health change → degraded');
SELECT is((pg_temp.slot('s1', 'n1')).capabilities, '{"x": 6}'::jsonb, 'last capabilities stored');
SELECT is(pg_temp.fp('sessions'), :'fp_s', 'capability updates do not write sessions');
SELECT is(pg_temp.fp('session_memberships'), :'fp_m', 'nor memberships');
SELECT is(pg_temp.fp('runtime_node_presence'), :'fp_p', 'nor presence');

-- Input ----------------------------------------------------------------------------------------
SELECT throws_ok(format($$SELECT pg_temp.caps('ann', 'n1', '{}', %L)$$, h), 'CP400',
                 'healthChanges.state must be online or degraded',
                 format('health %s → CP400', h))
  FROM unnest(ARRAY['offline', 'registering', 'revoked', 'ONLINE', '']) h;
SELECT throws_ok($$SELECT pg_temp.caps('ann', 'n1', '[]')$$, 'CP400',
                 'capabilities must be a JSON object', 'non-object capabilities → CP400');
SELECT throws_ok(format($$SELECT control_plane.runtime_node_update_capabilities(%L, %L, '{}', 'degraded', %L)$$,
                        pg_temp.d('ann'), pg_temp.n('n1'), r), 'CP400',
                 'healthChanges.reason must be 1 to 512 characters, not blank', format('reason %s → CP400', why))
  FROM (VALUES ('   ', 'blank'), ('', 'empty'), (repeat('r', 513), 'of 513 characters')) v (r, why);
SELECT is((control_plane.runtime_node_update_capabilities(pg_temp.d('ann'), pg_temp.n('n1'), '{}',
                                                          'degraded', repeat('r', 512))) ->> 'state',
          'degraded', 'a reason of 512 characters is accepted');

-- Floor gate, before the state rule ----------------------------------------------------------------
SELECT pg_temp.fp() AS fp_floor \gset
SELECT throws_ok($$SELECT pg_temp.caps('ann', 'low', '{"y": 1}')$$, 'CPC04', NULL,
                 'below the floor → version.floor_exceeded');
SELECT throws_ok($$SELECT pg_temp.caps('ann', 'low', '{"y": 1}', 'online')$$, 'CPC04', NULL,
                 'below the floor + registering → online: the floor is checked first');
SELECT is(pg_temp.fp(), :'fp_floor', 'below-floor updates changed nothing');
SELECT throws_ok($$SELECT pg_temp.caps('ann', 'ok', '{"y": 1}', 'online')$$, 'CPC03', NULL,
                 'at the floor the state rule applies');
SELECT admin_raise_floor(pg_temp.s('s2'), '10.0') \g /dev/null
SELECT throws_ok($$SELECT pg_temp.caps('ann', 'ok', '{"y": 1}', 'degraded')$$, 'CPC04', NULL,
                 'a raised floor applies at once');

-- Uniform 403 ----------------------------------------------------------------------------------
SELECT pg_temp.attach('ann', 's1', 'gone') \g /dev/null
SELECT pg_temp.detach('ann', 'gone') \g /dev/null
SELECT pg_temp.fp() AS fp_403 \gset
SELECT throws_ok(format($$SELECT pg_temp.caps(%L, %L, '{}', 'degraded')$$, who, node), 'CP403',
                 'permission denied', format('403: %s', why))
  FROM (VALUES ('ann', 'nope', 'unknown node'),
               ('ann', 'bobs', 'node owned by another member'),
               ('vic', 'n1', 'a viewer of the session, not the owner'),
               ('out', 'n1', 'not a member'),
               ('ann', 'gone', 'own node, slot offline')) v (who, node, why);
SELECT is(pg_temp.fp(), :'fp_403', 'the refused updates changed nothing');

SELECT * FROM finish();
ROLLBACK;
