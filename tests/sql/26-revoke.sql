-- runtime_node_revoke (contract §4, §6.7): session owner (runtime_node_revoke) or admin
-- (admin_revoke_runtime_node, the admin role's); any non-revoked slot → revoked
-- (terminal), presence offline only when the slot was active; already revoked → no-op; no slot →
-- CP404 (reached only by owners/admin); uniform 403 otherwise. And revoked stays terminal for
-- every other operation (P10).
BEGIN;
CREATE EXTENSION IF NOT EXISTS pgtap;
SET search_path = control_plane, public, pg_catalog;
\ir _lifecycle_fixtures.psql

SELECT plan(35);

DO $$
BEGIN
    PERFORM pg_temp.mk(x) FROM unnest(ARRAY['ann', 'own', 'bob', 'vic', 'sue', 'out']) x;
    PERFORM pg_temp.mks('s1');
    PERFORM pg_temp.mks('s2');
    PERFORM pg_temp.member('s1', 'ann', 'runtime_contributor');
    PERFORM pg_temp.member('s2', 'ann', 'runtime_contributor');
    PERFORM pg_temp.member('s1', 'own', 'owner');
    PERFORM pg_temp.member('s1', 'bob', 'collaborator');
    PERFORM pg_temp.member('s1', 'vic', 'viewer');
    PERFORM pg_temp.member('s1', 'sue', 'owner', 'suspended');
    PERFORM pg_temp.member('s2', 'out', 'owner');
    PERFORM pg_temp.attach('ann', 's1', 'n1');
    PERFORM pg_temp.declare('ann', 'n1');
    PERFORM pg_temp.beat('ann', 'n1', 'online');
END $$;

-- Uniform 403 (also where the node does not exist: no 404 oracle for non-owners) -----------------
SELECT pg_temp.fp() AS fp_403 \gset
SELECT throws_ok(format($$SELECT control_plane.runtime_node_revoke(%L, %L, %L)$$,
                        pg_temp.d(who), sid, pg_temp.n(node)),
                 'CP403', 'permission denied', format('403: %s', why))
  FROM (VALUES ('bob', pg_temp.s('s1'), 'n1', 'collaborator'),
               ('vic', pg_temp.s('s1'), 'n1', 'viewer'),
               ('ann', pg_temp.s('s1'), 'n1', 'the node''s own (non-owner) participant'),
               ('sue', pg_temp.s('s1'), 'n1', 'suspended owner'),
               ('out', pg_temp.s('s1'), 'n1', 'owner of another session'),
               ('own', gen_random_uuid(), 'n1', 'unknown session'),
               ('bob', pg_temp.s('s1'), 'nope', 'collaborator, unknown node')) v (who, sid, node, why);
SELECT throws_ok(format($$SELECT control_plane.runtime_node_revoke(%L, %L, %L)$$,
                        sha256('nobody'::bytea), pg_temp.s('s1'), pg_temp.n('n1')),
                 'CP401', NULL, '401: unknown token');
SELECT throws_ok(format($$SELECT control_plane.runtime_node_revoke(NULL, %L, %L)$$,
                        pg_temp.s('s1'), pg_temp.n('n1')),
                 'CP401', NULL, '401: no token (admin authority is another function)');
SELECT ok(NOT EXISTS (SELECT 1 FROM pg_proc p WHERE p.oid::regprocedure::text IN (
              'control_plane.runtime_node_revoke(bytea,uuid,text,boolean)',
              'control_plane.runtime_node_revoke(bytea,uuid,text,boolean,text)')),
          'the old p_as_admin flag is gone: no caller of the API role can claim admin');
SELECT ok(NOT has_function_privilege('control_plane_api',
                                     'control_plane.admin_revoke_runtime_node(uuid, text, text)', 'EXECUTE'),
          'the API role may not EXECUTE the admin revoke');
SELECT is(pg_temp.fp(), :'fp_403', 'no refused revoke changed anything');

-- The owner revokes an active slot ------------------------------------------------------------
SELECT pg_temp.fp('session_memberships') AS fp_m \gset
SELECT lives_ok($$SELECT pg_temp.revoke('own', 's1', 'n1')$$, 'the session owner revokes');
SELECT is(pg_temp.slot_state('s1', 'n1'), 'revoked', 'online → revoked');
SELECT is(pg_temp.health('n1'), 'offline', 'the active slot''s presence → offline');
SELECT is(pg_temp.fp('session_memberships'), :'fp_m', 'memberships untouched');
SELECT pg_temp.fp() AS fp_again \gset
SELECT lives_ok($$SELECT pg_temp.revoke('own', 's1', 'n1')$$, 'revoking again succeeds');
SELECT lives_ok($$SELECT pg_temp.admin_revoke('s1', 'n1')$$, 'and as admin too');
SELECT is(pg_temp.fp(), :'fp_again', 'already revoked: a no-op');

-- 404 only for owners / admin -----------------------------------------------------------------
SELECT throws_ok($$SELECT pg_temp.revoke('own', 's1', 'nope')$$, 'CP404',
                 'runtime node not found in this session', 'owner: no such slot → CP404');
SELECT throws_ok($$SELECT pg_temp.admin_revoke('s1', 'nope')$$, 'CP404',
                 'runtime node not found in this session', 'admin: no such slot → CP404');
SELECT throws_ok(format($$SELECT control_plane.admin_revoke_runtime_node(%L, %L)$$,
                        gen_random_uuid(), pg_temp.n('n1')), 'CP404', NULL,
                 'admin: unknown session → CP404');

-- Admin revokes an offline slot whose node is active elsewhere: presence untouched ----------------
SELECT pg_temp.attach('ann', 's1', 'n2') \g /dev/null
SELECT pg_temp.detach('ann', 'n2') \g /dev/null
SELECT pg_temp.attach('ann', 's2', 'n2') \g /dev/null
SELECT pg_temp.beat('ann', 'n2', 'online') \g /dev/null
SELECT lives_ok($$SELECT pg_temp.admin_revoke('s1', 'n2')$$, 'admin (no token) revokes an offline slot');
SELECT is(pg_temp.slot_state('s1', 'n2'), 'revoked', 'offline → revoked');
SELECT is(pg_temp.health('n2'), 'online', 'the node''s presence (active in s2) is untouched');
SELECT is(pg_temp.slot_state('s2', 'n2'), 'registering', 'its s2 slot is untouched');
-- A registering slot, never beat: no presence row appears.
SELECT pg_temp.attach('ann', 's1', 'n3') \g /dev/null
SELECT lives_ok($$SELECT pg_temp.revoke('own', 's1', 'n3')$$, 'revoke a registering slot');
SELECT is(pg_temp.presence_rows('n3'), 0::bigint, 'no presence row is created');

-- Revoked is terminal for everyone ---------------------------------------------------------------
SELECT pg_temp.fp() AS fp_terminal \gset
SELECT throws_ok($$SELECT pg_temp.attach('ann', 's1', 'n1')$$, 'CPC02', NULL, 'P10: re-attach → CPC02');
SELECT throws_ok($$SELECT pg_temp.declare('ann', 'n1')$$, 'CP403', 'permission denied',
                 'P10: declaration → 403 (no active slot)');
SELECT throws_ok($$SELECT pg_temp.caps('ann', 'n1', '{}', 'degraded')$$, 'CP403', 'permission denied',
                 'P10: capability update → 403');
SELECT throws_ok($$SELECT pg_temp.beat('ann', 'n1')$$, 'CP403', 'permission denied',
                 'P10: heartbeat → 403');
SELECT lives_ok($$SELECT pg_temp.detach('ann', 'n1')$$, 'P10: detach → no-op');
SELECT is(pg_temp.fp(), :'fp_terminal', 'P10: nothing changed');
SELECT throws_ok(format($$UPDATE control_plane.runtime_node_attachments SET state = 'offline' WHERE id = %L$$,
                        (pg_temp.slot('s1', 'n1')).id), '23514', NULL,
                 'not even a DBA''s UPDATE leaves revoked');

SELECT * FROM finish();
ROLLBACK;
