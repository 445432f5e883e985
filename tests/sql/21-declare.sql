-- runtime_node_declare (contract §4, §6.2): the only way online; authorization (uniform 403); the
-- floor gate (P4: below the floor → CPC04 and nothing changes, re-derived against the current
-- floor); writes only the attachment row.
BEGIN;
CREATE EXTENSION IF NOT EXISTS pgtap;
SET search_path = control_plane, public, pg_catalog;
\ir _lifecycle_fixtures.psql

SELECT plan(36);

DO $$
BEGIN
    PERFORM pg_temp.mk(x) FROM unnest(ARRAY['ann', 'bob', 'vic', 'out']) x;
    PERFORM pg_temp.mks('s1');
    PERFORM pg_temp.mks('s2', '2.0');
    PERFORM pg_temp.member('s1', 'ann', 'runtime_contributor');
    PERFORM pg_temp.member('s2', 'ann', 'runtime_contributor');
    PERFORM pg_temp.member('s1', 'bob', 'collaborator');
    PERFORM pg_temp.member('s1', 'vic', 'viewer');
    PERFORM pg_temp.attach('ann', 's1', 'n1', '1.0', '{"a": 1}');
    PERFORM pg_temp.attach('bob', 's1', 'bobs');
    PERFORM pg_temp.attach('ann', 's2', 'low', '1.9');
    PERFORM pg_temp.attach('ann', 's2', 'ok', '2.0');
END $$;

-- registering → online -------------------------------------------------------------------------
SELECT pg_temp.fp('sessions') AS fp_s, pg_temp.fp('session_memberships') AS fp_m,
       pg_temp.fp('runtime_node_presence') AS fp_p \gset
CREATE TEMP TABLE r1 AS SELECT pg_temp.declare('ann', 'n1', '{"b": 2}') AS r;
SELECT is((SELECT array_agg(k ORDER BY k) FROM r1, jsonb_object_keys(r) k),
          ARRAY['degradedAfterSeconds', 'heartbeatIntervalSeconds', 'nodeId', 'offlineAfterSeconds',
                'state', 'updatedAt'],
          'declare returns exactly nodeId, state, updatedAt and the three timings (contract §10)');
SELECT is((SELECT r ->> 'state' FROM r1), 'online', 'registering → online');
SELECT is((SELECT r ->> 'nodeId' FROM r1), pg_temp.n('n1'), 'nodeId echoed');
SELECT is((SELECT r -> 'updatedAt' FROM r1), to_jsonb((pg_temp.slot('s1', 'n1')).updated_at),
          'updatedAt is the row''s updated_at');
SELECT is(pg_temp.slot_state('s1', 'n1'), 'online', 'the slot is online');
SELECT is((pg_temp.slot('s1', 'n1')).capabilities, '{"b": 2}'::jsonb,
          'capabilities replaced (the old key is gone)');
SELECT is(pg_temp.fp('sessions'), :'fp_s', 'declare does not write sessions');
SELECT is(pg_temp.fp('session_memberships'), :'fp_m', 'declare does not write memberships');
SELECT is(pg_temp.fp('runtime_node_presence'), :'fp_p', 'declare does not write presence');

-- online → online refreshes; degraded → online ---------------------------------------------------
SELECT is(pg_temp.declare('ann', 'n1', '{"c": 3}') ->> 'state', 'online', 'online stays online');
SELECT is((pg_temp.slot('s1', 'n1')).capabilities, '{"c": 3}'::jsonb,
          'from online a declaration refreshes the capabilities');
SELECT is(pg_temp.caps('ann', 'n1', '{"c": 3}', 'degraded') ->> 'state', 'degraded',
          'degraded through a capability update');
SELECT is(pg_temp.declare('ann', 'n1') ->> 'state', 'online', 'degraded → online by declaration');

-- Input ----------------------------------------------------------------------------------------
SELECT throws_ok($$SELECT pg_temp.declare('ann', 'n1', '{}')$$, 'CP400',
                 'capabilities must be a non-empty JSON object', 'empty capabilities → CP400');
SELECT throws_ok($$SELECT pg_temp.declare('ann', 'n1', '"x"')$$, 'CP400',
                 'capabilities must be a non-empty JSON object', 'non-object capabilities → CP400');
SELECT throws_ok($$SELECT pg_temp.declare('ann', 'n1', NULL)$$, 'CP400',
                 'capabilities must be a non-empty JSON object', 'NULL capabilities → CP400');

-- P4: below the floor → CPC04, nothing changes -------------------------------------------------
SELECT pg_temp.fp() AS fp_p4 \gset
SELECT throws_ok($$SELECT pg_temp.declare('ann', 'low')$$, 'CPC04', NULL,
                 'P4: a below-floor (1.9 < 2.0) declaration → version.floor_exceeded');
SELECT is(pg_temp.fp(), :'fp_p4', 'P4: the refused declaration changed nothing');
SELECT is(pg_temp.slot_state('s2', 'low'), 'registering', 'P4: the node stays attached (not ejected)');
SELECT is(pg_temp.declare('ann', 'ok') ->> 'state', 'online', 'at the floor (2.0) a node may declare');
-- The verdict is re-derived against the current floor.
SELECT admin_raise_floor(pg_temp.s('s2'), '2.1') \g /dev/null
SELECT pg_temp.fp() AS fp_raise \gset
SELECT throws_ok($$SELECT pg_temp.declare('ann', 'ok')$$, 'CPC04', NULL,
                 'after the floor is raised above 2.0 the same node is refused at once');
SELECT is(pg_temp.fp(), :'fp_raise', 'and nothing changed');

-- Uniform 403 ----------------------------------------------------------------------------------
SELECT pg_temp.attach('ann', 's1', 'gone') \g /dev/null
SELECT pg_temp.detach('ann', 'gone') \g /dev/null
SELECT pg_temp.attach('ann', 's1', 'rvk') \g /dev/null
SELECT pg_temp.admin_revoke('s1', 'rvk') \g /dev/null
SELECT pg_temp.fp() AS fp_403 \gset
SELECT throws_ok(format($$SELECT pg_temp.declare(%L, %L)$$, who, node), 'CP403',
                 'permission denied', format('403: %s', why))
  FROM (VALUES ('ann', 'nope', 'unknown node'),
               ('ann', 'bobs', 'node owned by another member'),
               ('vic', 'n1', 'a viewer of the session, not the owner'),
               ('out', 'n1', 'not a member'),
               ('ann', 'gone', 'own node, slot offline'),
               ('ann', 'rvk', 'own node, slot revoked')) v (who, node, why);
SELECT is(pg_temp.fp(), :'fp_403', 'the refused declarations changed nothing');
SELECT pg_temp.member('s1', 'bob', 'collaborator', 'suspended') \g /dev/null
SELECT pg_temp.fp() AS fp_403 \gset
SELECT throws_ok($$SELECT pg_temp.declare('bob', 'bobs')$$, 'CP403', 'permission denied',
                 '403: own node, membership suspended');
SELECT is(pg_temp.fp(), :'fp_403', 'and changed nothing');
SELECT pg_temp.member('s1', 'bob', 'collaborator', 'revoked') \g /dev/null
SELECT throws_ok($$SELECT pg_temp.declare('bob', 'bobs')$$, 'CP403', 'permission denied',
                 '403: own node, membership revoked');
SELECT pg_temp.member('s1', 'bob', 'viewer', 'active') \g /dev/null
SELECT is(pg_temp.declare('bob', 'bobs') ->> 'state', 'online',
          'an owner whose role became viewer is still an active member (any role)');
SELECT throws_ok(format($$SELECT control_plane.runtime_node_declare(%L, %L, '{"a": 1}')$$,
                        sha256('nobody'::bytea), pg_temp.n('n1')),
                 'CP401', NULL, '401: unknown token');
SELECT is(pg_temp.slot_state('s1', 'gone'), 'offline', 'the offline slot was not brought online');
SELECT is(pg_temp.slot_state('s1', 'rvk'), 'revoked', 'the revoked slot stays revoked');

SELECT * FROM finish();
ROLLBACK;
