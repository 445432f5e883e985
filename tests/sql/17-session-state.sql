-- The session lifecycle (contract §11): admin_set_session_state moves forward only along
-- provisioning → active → archived → closed (skipping allowed, the same state a no-op), and the
-- trigger holds DBAs' UPDATEs to the same order. Only attach looks at the state (contract §6.8).
BEGIN;
CREATE EXTENSION IF NOT EXISTS pgtap;
SET search_path = control_plane, public, pg_catalog;
\ir _lifecycle_fixtures.psql

SELECT plan(36);

CREATE TEMP TABLE states (rank integer PRIMARY KEY, state text NOT NULL);
INSERT INTO states VALUES (1, 'provisioning'), (2, 'active'), (3, 'archived'), (4, 'closed');

-- Every forward pair is allowed (each on a fresh session), every backward pair refused ---------------
SELECT is(admin_set_session_state(sid, b.state) - 'sessionId',
          jsonb_build_object('state', b.state, 'minClientVersion', NULL),
          format('%s → %s is allowed', a.state, b.state))
  FROM states a JOIN states b ON b.rank > a.rank
 CROSS JOIN LATERAL (SELECT (admin_create_session(NULL, a.state) ->> 'sessionId')::uuid) s (sid)
 ORDER BY a.rank, b.rank;

SELECT throws_ok(format('SELECT control_plane.admin_set_session_state(%L, %L)',
                        admin_create_session(NULL, a.state) ->> 'sessionId', b.state),
                 'CPC07',
                 format('session state may only move forward (provisioning → active → archived → '
                        'closed): %s → %s is refused', a.state, b.state),
                 format('%s → %s is refused (CPC07)', a.state, b.state))
  FROM states a JOIN states b ON b.rank < a.rank
 ORDER BY a.rank, b.rank;

-- One session walked through its life ------------------------------------------------------------
SELECT pg_temp.mks('s1', '1.2', 'provisioning') \g /dev/null
UPDATE sessions SET updated_at = now() - interval '1 hour' WHERE id = pg_temp.s('s1');
SELECT is(admin_set_session_state(pg_temp.s('s1'), 'provisioning'),
          jsonb_build_object('sessionId', pg_temp.s('s1'), 'state', 'provisioning',
                             'minClientVersion', '1.2'),
          'the same state: 200 with {sessionId, state, minClientVersion}');
SELECT is((SELECT updated_at FROM sessions WHERE id = pg_temp.s('s1')), now() - interval '1 hour',
          'and a no-op (row not rewritten)');
SELECT is(admin_set_session_state(pg_temp.s('s1'), 'active') ->> 'state', 'active',
          'provisioning → active');
SELECT is((SELECT updated_at FROM sessions WHERE id = pg_temp.s('s1')), now(),
          'a transition stamps updated_at');
SELECT is((SELECT min_client_version::text FROM sessions WHERE id = pg_temp.s('s1')), '1.2',
          'and leaves the floor alone');

-- Only attach looks at the state: nodes attached while active stay as they are.
DO $$
BEGIN
    PERFORM pg_temp.mk('ann');
    PERFORM pg_temp.member('s1', 'ann', 'runtime_contributor');
    PERFORM pg_temp.attach('ann', 's1', 'n1', '1.2');
    PERFORM pg_temp.declare('ann', 'n1');
    PERFORM pg_temp.beat('ann', 'n1', 'online');
END $$;
SELECT pg_temp.fp('runtime_node_attachments') AS fp_a, pg_temp.fp('runtime_node_presence') AS fp_p,
       pg_temp.fp('session_memberships') AS fp_m \gset
SELECT is(admin_set_session_state(pg_temp.s('s1'), 'archived') ->> 'state', 'archived',
          'active → archived');
SELECT is(pg_temp.fp('runtime_node_attachments') || pg_temp.fp('runtime_node_presence')
          || pg_temp.fp('session_memberships'), :'fp_a' || :'fp_p' || :'fp_m',
          'archiving changes no attachment, presence or membership');
SELECT throws_ok($$SELECT pg_temp.attach('ann', 's1', 'n2', '1.2')$$, 'CPC05', NULL,
                 'a new attach to an archived session → CPC05 (session.not_active)');
SELECT lives_ok($$SELECT pg_temp.beat('ann', 'n1', 'degraded')$$,
                'a node attached before still beats');
SELECT is((pg_temp.caps('ann', 'n1', '{"cpu": 3}', 'degraded')) ->> 'state', 'degraded',
          'and updates its capabilities');

SELECT pg_temp.fp('sessions') AS fp_s \gset
SELECT throws_ok(format('SELECT control_plane.admin_set_session_state(%L, %L)', pg_temp.s('s1'), st),
                 'CPC07', NULL, format('archived → %s is refused', st))
  FROM unnest(ARRAY['active', 'provisioning']) st;
SELECT is(pg_temp.fp('sessions'), :'fp_s', 'a refused transition changes nothing');
SELECT is(admin_set_session_state(pg_temp.s('s1'), 'closed') ->> 'state', 'closed', 'archived → closed');
SELECT is(admin_set_session_state(pg_temp.s('s1'), 'closed') ->> 'state', 'closed',
          'closed → closed is a no-op too');

-- Bad input, unknown session ------------------------------------------------------------------------
SELECT pg_temp.fp('sessions') AS fp_s \gset
SELECT throws_ok(format('SELECT control_plane.admin_set_session_state(%L, %L)', pg_temp.s('s1'), st),
                 'CP400', 'state must be one of provisioning, active, archived, closed',
                 format('state %L → CP400', st))
  FROM unnest(ARRAY['open', '', 'Closed']) st;
SELECT throws_ok(format('SELECT control_plane.admin_set_session_state(%L, NULL)', pg_temp.s('s1')),
                 'CP400', NULL, 'a NULL state → CP400');
SELECT throws_ok(format('SELECT control_plane.admin_set_session_state(%L, %L)', gen_random_uuid(), 'closed'),
                 'CPN04', 'session not found', 'unknown session → CPN04 (not_found)');
SELECT is(pg_temp.fp('sessions'), :'fp_s', 'refused input changed nothing');

-- A DBA's UPDATE obeys the same order -----------------------------------------------------------------
SELECT throws_ok(format($$UPDATE control_plane.sessions SET state = 'active' WHERE id = %L$$, pg_temp.s('s1')),
                 'CPC07', NULL, 'a DBA''s backwards UPDATE → CPC07 (trigger)');
SELECT pg_temp.mks('s2', NULL, 'provisioning') \g /dev/null
SELECT lives_ok(format($$UPDATE control_plane.sessions SET state = 'archived' WHERE id = %L$$, pg_temp.s('s2')),
                'a DBA''s forward UPDATE is fine');
SELECT lives_ok(format($$UPDATE control_plane.sessions SET min_client_version = '3.0' WHERE id = %L$$,
                       pg_temp.s('s2')), 'an UPDATE of other columns is not affected');

SELECT * FROM finish();
ROLLBACK;
