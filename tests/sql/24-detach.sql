-- runtime_node_detach (contract §4, §5, §6.5): the owner takes the active slot offline (even with an
-- inactive membership), presence goes offline by UPDATE only, idempotent, the three caller cases
-- (owner / active non-owner member → 403 / anyone else → no-op), revoked never flips,
-- memberships never touched.
BEGIN;
CREATE EXTENSION IF NOT EXISTS pgtap;
SET search_path = control_plane, public, pg_catalog;
\ir _lifecycle_fixtures.psql

SELECT plan(30);

DO $$
BEGIN
    PERFORM pg_temp.mk(x) FROM unnest(ARRAY['ann', 'bob', 'vic', 'out', 'sue', 'own']) x;
    PERFORM pg_temp.mks('s1');
    PERFORM pg_temp.mks('s2');
    PERFORM pg_temp.member('s1', 'ann', 'runtime_contributor');
    PERFORM pg_temp.member('s2', 'ann', 'runtime_contributor');
    PERFORM pg_temp.member('s1', 'bob', 'collaborator');
    PERFORM pg_temp.member('s1', 'vic', 'viewer');
    PERFORM pg_temp.member('s1', 'sue', 'collaborator', 'suspended');
    PERFORM pg_temp.member('s1', 'own', 'owner');
    PERFORM pg_temp.member('s2', 'out', 'owner');  -- out is a stranger to s1
    PERFORM pg_temp.attach('ann', 's1', 'n1');
    PERFORM pg_temp.declare('ann', 'n1');
    PERFORM pg_temp.attach('ann', 's1', 'quiet');   -- never beats
END $$;

-- The owner detaches: slot offline, presence offline (last_heartbeat_at kept) --------------------
UPDATE runtime_node_presence SET last_heartbeat_at = now() - interval '7 seconds'
 WHERE node_id = pg_temp.n('n1');
SELECT pg_temp.beat('ann', 'n1', 'online') \g /dev/null
UPDATE runtime_node_presence SET last_heartbeat_at = now() - interval '7 seconds'
 WHERE node_id = pg_temp.n('n1');
SELECT pg_temp.fp('session_memberships') AS fp_m, pg_temp.fp('sessions') AS fp_s \gset
SELECT lives_ok($$SELECT pg_temp.detach('ann', 'n1')$$, 'the owner detaches');
SELECT is(pg_temp.slot_state('s1', 'n1'), 'offline', 'online → offline');
SELECT is(pg_temp.health('n1'), 'offline', 'presence → offline');
SELECT is((SELECT last_heartbeat_at FROM runtime_node_presence WHERE node_id = pg_temp.n('n1')),
          now() - interval '7 seconds', 'last_heartbeat_at is left alone');
SELECT is(pg_temp.fp('session_memberships'), :'fp_m', 'detach never touches memberships');
SELECT is(pg_temp.fp('sessions'), :'fp_s', 'nor sessions');

-- Idempotent; unknown node ------------------------------------------------------------------------
SELECT pg_temp.fp() AS fp_idem \gset
SELECT lives_ok($$SELECT pg_temp.detach('ann', 'n1')$$, 'detaching again succeeds');
SELECT lives_ok($$SELECT pg_temp.detach('ann', 'nope')$$, 'detaching an unknown node succeeds');
SELECT is(pg_temp.fp(), :'fp_idem', 'and neither wrote anything');

-- A node that never beat gets no presence row ---------------------------------------------------
SELECT lives_ok($$SELECT pg_temp.detach('ann', 'quiet')$$, 'detach a node that never beat');
SELECT is(pg_temp.slot_state('s1', 'quiet'), 'offline', 'its slot is offline');
SELECT is(pg_temp.presence_rows('quiet'), 0::bigint, 'no presence row is created');

-- The three caller cases --------------------------------------------------------------------------
SELECT pg_temp.attach('ann', 's1', 'n2') \g /dev/null
SELECT pg_temp.beat('ann', 'n2', 'online') \g /dev/null
SELECT pg_temp.fp() AS fp_callers \gset
SELECT throws_ok(format($$SELECT pg_temp.detach(%L, 'n2')$$, who), 'CP403', 'permission denied',
                 format('an active member who is not the owner → 403 (%s)', why))
  FROM (VALUES ('bob', 'collaborator'), ('vic', 'viewer'), ('own', 'session owner')) v (who, why);
SELECT lives_ok($$SELECT pg_temp.detach('out', 'n2')$$,
                'a member of another session only: the same no-op as an unknown node');
SELECT lives_ok($$SELECT pg_temp.detach('sue', 'n2')$$,
                'an inactive member of the session who is not the owner: no-op');
SELECT is(pg_temp.fp(), :'fp_callers', 'none of them changed anything');
SELECT is(pg_temp.slot_state('s1', 'n2'), 'registering', 'the slot is still active');
SELECT throws_ok(format($$SELECT control_plane.runtime_node_detach(%L, %L)$$,
                        sha256('nobody'::bytea), pg_temp.n('n2')), 'CP401', NULL, '401: unknown token');
SELECT throws_ok(format($$SELECT control_plane.runtime_node_detach(%L, %L)$$,
                        sha256('nobody'::bytea), pg_temp.n('nope')), 'CP401', NULL,
                 '401 comes before the no-op for an unknown node');

-- The owner may detach even with an inactive membership ------------------------------------------
SELECT pg_temp.member('s1', 'ann', 'runtime_contributor', 'suspended') \g /dev/null
SELECT pg_temp.fp('session_memberships') AS fp_m2 \gset
SELECT lives_ok($$SELECT pg_temp.detach('ann', 'n2')$$, 'a suspended owner detaches');
SELECT is(pg_temp.slot_state('s1', 'n2'), 'offline', 'the slot is offline (the node id is freed)');
SELECT is(pg_temp.health('n2'), 'offline', 'presence → offline');
SELECT is(pg_temp.fp('session_memberships'), :'fp_m2', 'the membership is untouched');
SELECT pg_temp.member('s1', 'ann', 'runtime_contributor', 'active') \g /dev/null

-- Revoked never flips ---------------------------------------------------------------------------
SELECT pg_temp.attach('ann', 's1', 'rvk') \g /dev/null
SELECT pg_temp.admin_revoke('s1', 'rvk') \g /dev/null
SELECT pg_temp.fp() AS fp_rvk \gset
SELECT lives_ok($$SELECT pg_temp.detach('ann', 'rvk')$$, 'detaching a revoked node: no-op');
SELECT is(pg_temp.fp(), :'fp_rvk', 'the revoked slot is unchanged');

-- Offline in one session, active in another: detach acts on the active slot ------------------
SELECT pg_temp.attach('ann', 's2', 'n1') \g /dev/null
SELECT lives_ok($$SELECT pg_temp.detach('ann', 'n1')$$, 'detach the node active in s2');
SELECT is(pg_temp.slot_state('s2', 'n1'), 'offline', 'the s2 slot is offline');
SELECT is(pg_temp.slot_state('s1', 'n1'), 'offline', 'the s1 slot stays offline');

SELECT * FROM finish();
ROLLBACK;
