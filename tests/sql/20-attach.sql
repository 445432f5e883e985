-- runtime_node_attach (contract §4, §5, §6.1): authorization, session state, the version floor
-- (P1–P3), the upsert's outcomes (new, reconnect, re-handshake, revoked, other owner), the
-- single-active-session index from both the INSERT and the reactivating UPDATE (P9), revoked is
-- terminal (P10), multi-node coexistence (P5), and "a refused attach changes nothing".
BEGIN;
CREATE EXTENSION IF NOT EXISTS pgtap;
SET search_path = control_plane, public, pg_catalog;
\ir _lifecycle_fixtures.psql

SELECT plan(75);

DO $$
BEGIN
    PERFORM pg_temp.mk(x) FROM unnest(ARRAY['ann', 'bob', 'olga', 'vic', 'pam', 'sue', 'rex',
                                            'out', 'exp', 'tok']) x;
    PERFORM pg_temp.mks('s1');                -- no floor
    PERFORM pg_temp.mks('s2', '2.0');
    PERFORM pg_temp.mks('s110', '1.10');
    PERFORM pg_temp.mks('sb');                -- "another session"
    PERFORM pg_temp.mks('prov', NULL, 'provisioning');
    PERFORM pg_temp.mks('arch', NULL, 'archived');
    PERFORM pg_temp.mks('closed', NULL, 'closed');
    PERFORM pg_temp.member(s, 'ann', 'runtime_contributor')
       FROM unnest(ARRAY['s1', 's2', 's110', 'sb', 'prov', 'arch', 'closed']) s;
    PERFORM pg_temp.member('s1', 'bob', 'collaborator');
    PERFORM pg_temp.member('sb', 'bob', 'collaborator');
    PERFORM pg_temp.member('s1', 'olga', 'owner');
    PERFORM pg_temp.member('s1', 'vic', 'viewer');
    PERFORM pg_temp.member('s1', 'pam', 'collaborator', 'pending');
    PERFORM pg_temp.member('s1', 'sue', 'collaborator', 'suspended');
    PERFORM pg_temp.member('s1', 'rex', 'owner', 'revoked');
    PERFORM pg_temp.member('s1', 'exp', 'collaborator');
    PERFORM pg_temp.member('s1', 'tok', 'collaborator');
    -- exp's only token expired an hour ago; tok's token is revoked.
    UPDATE participant_tokens SET created_at = now() - interval '2 hours',
                                  expires_at = now() - interval '1 hour'
     WHERE participant_id = pg_temp.p('exp');
    PERFORM admin_revoke_token(token_id) FROM fx_who WHERE name = 'tok';
END $$;

-- P1: no floor → read-write, registering, exact wire shape ------------------------------------
CREATE TEMP TABLE r1 AS SELECT pg_temp.attach('ann', 's1', 'n1', '0.1', '{"gpu": true}') AS r;
SELECT is((SELECT array_agg(k ORDER BY k) FROM r1, jsonb_object_keys(r) k),
          ARRAY['attachedAt', 'attachmentId', 'clientVersion', 'degradedAfterSeconds',
                'heartbeatIntervalSeconds', 'nodeId', 'offlineAfterSeconds', 'participantId',
                'readOnly', 'sessionId', 'state'],
          'attach returns exactly the eight camelCase keys and the three timings (contract §10)');
SELECT is((SELECT r ->> 'state' FROM r1), 'registering', 'P1: a new slot is registering');
SELECT is((SELECT r -> 'readOnly' FROM r1), 'false'::jsonb, 'P1: a NULL floor admits read-write');
SELECT is((SELECT r ->> 'sessionId' FROM r1), pg_temp.s('s1')::text, 'sessionId echoed');
SELECT is((SELECT r ->> 'nodeId' FROM r1), pg_temp.n('n1'), 'nodeId echoed');
SELECT is((SELECT r ->> 'participantId' FROM r1), pg_temp.p('ann')::text, 'participantId echoed');
SELECT is((SELECT r ->> 'clientVersion' FROM r1), '0.1', 'clientVersion echoed');
SELECT is((SELECT r ->> 'attachmentId' FROM r1), (pg_temp.slot('s1', 'n1')).id::text,
          'attachmentId is the row id');
SELECT is((SELECT r -> 'attachedAt' FROM r1), to_jsonb((pg_temp.slot('s1', 'n1')).attached_at),
          'attachedAt is the row''s attached_at');
SELECT is((pg_temp.slot('s1', 'n1')).capabilities, '{"gpu": true}'::jsonb, 'capabilities stored');
SELECT is((pg_temp.slot('s1', 'n1')).participant_id, pg_temp.p('ann'), 'the caller owns the slot');

-- P2 / P3: the floor verdict, numeric ---------------------------------------------------------
SELECT is(pg_temp.attach('ann', 's2', 'at', '2.0') -> 'readOnly', 'false'::jsonb,
          'P2: at the floor (2.0 vs 2.0) → read-write');
SELECT is(pg_temp.attach('ann', 's2', 'ten', '10.0') -> 'readOnly', 'false'::jsonb,
          'P2: 10.0 vs floor 2.0 → read-write (numeric, not textual)');
SELECT is(pg_temp.attach('ann', 's2', 'low', '1.99') -> 'readOnly', 'true'::jsonb,
          'P3: 1.99 vs floor 2.0 → admitted read-only');
SELECT is(pg_temp.slot_state('s2', 'low'), 'registering', 'P3: below the floor is still joined');
SELECT is(pg_temp.attach('ann', 's110', 'v19', '1.9') -> 'readOnly', 'true'::jsonb,
          'P3: 1.9 vs floor 1.10 → read-only (numeric minor)');
SELECT is(pg_temp.attach('ann', 's110', 'v110', '1.10') -> 'readOnly', 'false'::jsonb,
          '1.10 vs floor 1.10 → read-write');

-- Roles ---------------------------------------------------------------------------------------
SELECT is(pg_temp.attach('bob', 's1', 'bobs') ->> 'state', 'registering',
          'a collaborator may attach');
SELECT is(pg_temp.attach('olga', 's1', 'olgas') ->> 'state', 'registering',
          'an owner may attach');

-- Uniform 403: every cause, one constant message, nothing written -----------------------------
SELECT pg_temp.fp() AS fp_403 \gset
SELECT throws_ok(format($$SELECT control_plane.runtime_node_attach(%L, %L, %L, %L, '1.0', '{}')$$,
                        pg_temp.d('ann'), pg_temp.s('s1'), pg_temp.p('bob'), pg_temp.n('x')),
                 'CP403', 'permission denied', '403: participantId is not the caller');
SELECT throws_ok(format($$SELECT control_plane.runtime_node_attach(%L, %L, %L, %L, '1.0', '{}')$$,
                        pg_temp.d('ann'), gen_random_uuid(), pg_temp.p('ann'), pg_temp.n('x')),
                 'CP403', 'permission denied', '403: unknown session');
SELECT throws_ok(format($$SELECT pg_temp.attach(%L, 's1', 'x')$$, who), 'CP403',
                 'permission denied', format('403: %s', why))
  FROM (VALUES ('out', 'not a member'),
               ('vic', 'viewer role'),
               ('pam', 'pending membership'),
               ('sue', 'suspended membership'),
               ('rex', 'revoked membership (even as owner)')) v (who, why);
SELECT throws_ok($$SELECT pg_temp.attach('out', 'closed', 'x')$$, 'CP403', 'permission denied',
                 '403 comes before the session state (a non-member of a closed session)');
SELECT is(pg_temp.fp(), :'fp_403', 'the refused attaches changed nothing');

-- 401 ------------------------------------------------------------------------------------------
SELECT throws_ok(format($$SELECT control_plane.runtime_node_attach(%L, %L, %L, %L, '1.0', '{}')$$,
                        sha256('nobody'::bytea), pg_temp.s('s1'), pg_temp.p('ann'), pg_temp.n('x')),
                 'CP401', NULL, '401: unknown token');
SELECT throws_ok($$SELECT pg_temp.attach('exp', 's1', 'x')$$, 'CP401', NULL, '401: expired token');
SELECT throws_ok($$SELECT pg_temp.attach('tok', 's1', 'x')$$, 'CP401', NULL, '401: revoked token');
SELECT throws_ok(format($$SELECT control_plane.runtime_node_attach(NULL, %L, %L, %L, '1.0', '{}')$$,
                        pg_temp.s('s1'), pg_temp.p('ann'), pg_temp.n('x')),
                 'CP401', NULL, '401: no token');

-- Session must be active -----------------------------------------------------------------------
SELECT throws_ok(format($$SELECT pg_temp.attach('ann', %L, 'x')$$, s), 'CPC05',
                 'the session is not active', format('CPC05: %s session', s))
  FROM unnest(ARRAY['prov', 'arch', 'closed']) s;
SELECT is(pg_temp.fp(), :'fp_403', 'attaches to inactive sessions changed nothing');

-- Input shape ----------------------------------------------------------------------------------
SELECT throws_ok(format($$SELECT control_plane.runtime_node_attach(%L, %L, %L, NULL, '1.0', '{}')$$,
                        pg_temp.d('ann'), pg_temp.s('s1'), pg_temp.p('ann')),
                 'CP400', 'nodeId is required', 'a NULL node id → CP400');
SELECT throws_ok(format($$SELECT control_plane.runtime_node_attach(%L, %L, %L, %L, '1.0', '{}')$$,
                        pg_temp.d('ann'), pg_temp.s('s1'), pg_temp.p('ann'), E'bad\x01node'),
                 '23514', NULL, 'a node id with a control character is refused by the domain');
SELECT throws_ok(format($$SELECT control_plane.runtime_node_attach(%L, %L, %L, %L, '1.0', '{}')$$,
                        pg_temp.d('ann'), pg_temp.s('s1'), pg_temp.p('ann'), repeat('x', 257)),
                 '23514', NULL, 'a 257-character node id is refused by the domain');
SELECT throws_ok($$SELECT pg_temp.attach('ann', 's1', 'x', '1.0', '[1]')$$, 'CP400',
                 'capabilities must be a JSON object', 'capabilities must be an object');
SELECT throws_ok($$SELECT pg_temp.attach('ann', 's1', 'x', '1.0.0')$$, '23514', NULL,
                 'a malformed client version is refused by the domain');
SELECT is(pg_temp.fp(), :'fp_403', 'malformed attaches changed nothing');

-- P5: two nodes, one session; sessions and memberships byte-identical ---------------------------
SELECT pg_temp.fp('sessions') AS fp_sessions, pg_temp.fp('session_memberships') AS fp_members \gset
SELECT pg_temp.fp('runtime_node_presence') AS fp_presence \gset
SELECT is(pg_temp.attach('ann', 'sb', 'p5a') ->> 'sessionId', pg_temp.s('sb')::text, 'P5: node A joins');
SELECT is(pg_temp.attach('bob', 'sb', 'p5b') ->> 'sessionId', pg_temp.s('sb')::text, 'P5: node B joins');
SELECT is((SELECT count(*) FROM runtime_node_attachments
            WHERE session_id = pg_temp.s('sb') AND state = 'registering'), 2::bigint,
          'P5: both slots are active side by side');
SELECT is(pg_temp.fp('sessions'), :'fp_sessions', 'P5: the sessions rows are byte-identical');
SELECT is(pg_temp.fp('session_memberships'), :'fp_members',
          'attach never writes session_memberships');
SELECT is(pg_temp.fp('runtime_node_presence'), :'fp_presence', 'attach never writes presence');
SELECT is((SELECT count(*) FROM fx_session), 7::bigint, 'no session was created');

-- Reconnect after detach: same id and attached_at, capabilities and version replaced -----------
-- A slot born an hour ago (inserted directly so that attached_at differs from now()).
INSERT INTO runtime_node_attachments (session_id, participant_id, node_id, capabilities,
                                      client_version, state, attached_at, updated_at)
VALUES (pg_temp.s('s1'), pg_temp.p('ann'), pg_temp.n('old'), '{"old": 1}', '1.0', 'online',
        now() - interval '1 hour', now() - interval '1 hour');
SELECT (pg_temp.slot('s1', 'old')).id AS old_id \gset
SELECT pg_temp.detach('ann', 'old') \g /dev/null
SELECT is(pg_temp.slot_state('s1', 'old'), 'offline', 'detached: offline');
CREATE TEMP TABLE r2 AS SELECT pg_temp.attach('ann', 's1', 'old', '3.4', '{"new": 2}') AS r;
SELECT is((SELECT r ->> 'attachmentId' FROM r2), :'old_id', 'reconnect keeps the attachment id');
SELECT is((SELECT (r ->> 'attachedAt')::timestamptz FROM r2), now() - interval '1 hour',
          'reconnect keeps attached_at');
SELECT is((SELECT r ->> 'state' FROM r2), 'registering', 'reconnect → registering');
SELECT is((pg_temp.slot('s1', 'old')).capabilities, '{"new": 2}'::jsonb,
          'reconnect replaces the capabilities');
SELECT is((pg_temp.slot('s1', 'old')).client_version::text, '3.4',
          'reconnect replaces the client version');

-- Re-handshake of an active slot by its owner ---------------------------------------------------
SELECT is(pg_temp.declare('ann', 'old') ->> 'state', 'online', 'declared online');
SELECT is(pg_temp.attach('ann', 's1', 'old', '3.5', '{"again": 3}') ->> 'attachmentId', :'old_id',
          're-handshake keeps the attachment id');
SELECT is(pg_temp.slot_state('s1', 'old'), 'registering', 're-handshake: online → registering');
SELECT is((pg_temp.slot('s1', 'old')).capabilities, '{"again": 3}'::jsonb,
          're-handshake replaces the capabilities');

-- Another owner's slot in the same session → CPC01, never naming the owner -----------------------
SELECT pg_temp.fp() AS fp_conflict \gset
SELECT throws_ok($$SELECT pg_temp.attach('bob', 's1', 'old')$$, 'CPC01',
                 format('runtime node "%s" is already attached', pg_temp.n('old')),
                 'CPC01: the slot (active) belongs to another participant');
SELECT pg_temp.detach('ann', 'old') \g /dev/null
SELECT pg_temp.fp() AS fp_conflict \gset
SELECT throws_ok($$SELECT pg_temp.attach('bob', 's1', 'old')$$, 'CPC01',
                 format('runtime node "%s" is already attached', pg_temp.n('old')),
                 'CPC01: the slot (offline) belongs to another participant');
SELECT is(pg_temp.fp(), :'fp_conflict', 'the refused attach changed nothing');

-- P9: active in another session → CPC01 from the INSERT path ------------------------------------
SELECT is(pg_temp.attach('ann', 'sb', 'p9') ->> 'state', 'registering', 'P9: active in sb');
SELECT pg_temp.fp() AS fp_p9 \gset
SELECT throws_ok($$SELECT pg_temp.attach('ann', 's1', 'p9')$$, 'CPC01',
                 format('runtime node "%s" is already attached', pg_temp.n('p9')),
                 'P9: a second active session (INSERT path) → CPC01 naming only the node');
SELECT is(pg_temp.fp(), :'fp_p9', 'P9 (INSERT path): every table unchanged');
SELECT is((SELECT count(*) FROM runtime_node_attachments WHERE node_id = pg_temp.n('p9')),
          1::bigint, 'P9 (INSERT path): no slot was created');

-- P9: the reactivating UPDATE path (offline in s1, active in sb, re-attach to s1) ----------------
SELECT pg_temp.attach('ann', 's1', 'p9u') \g /dev/null
SELECT pg_temp.detach('ann', 'p9u') \g /dev/null
SELECT is(pg_temp.attach('ann', 'sb', 'p9u') ->> 'state', 'registering', 'P9: now active in sb');
SELECT pg_temp.fp() AS fp_p9u \gset
SELECT throws_ok($$SELECT pg_temp.attach('ann', 's1', 'p9u')$$, 'CPC01',
                 format('runtime node "%s" is already attached', pg_temp.n('p9u')),
                 'P9: reactivating the offline slot (UPDATE path) → CPC01');
SELECT is(pg_temp.fp(), :'fp_p9u', 'P9 (UPDATE path): every table unchanged');
SELECT is(pg_temp.slot_state('s1', 'p9u'), 'offline', 'P9 (UPDATE path): the s1 slot stays offline');
-- The conflict message names the node only: no session, no participant, no state.
CREATE TEMP TABLE msg AS SELECT NULL::text AS m;
DO $$
BEGIN
    PERFORM pg_temp.attach('ann', 's1', 'p9u');
EXCEPTION WHEN OTHERS THEN
    UPDATE msg SET m = SQLERRM;
END $$;
SELECT ok((SELECT position(pg_temp.s('sb')::text IN m) = 0 AND position(pg_temp.s('s1')::text IN m) = 0
             AND position(pg_temp.p('ann')::text IN m) = 0
             AND m !~ '(registering|online|degraded|offline|revoked)' FROM msg),
          'the conflict message names no session, participant or state');

-- P10: revoked is terminal ----------------------------------------------------------------------
SELECT pg_temp.attach('ann', 's1', 'p10') \g /dev/null
SELECT pg_temp.admin_revoke('s1', 'p10') \g /dev/null
SELECT pg_temp.fp() AS fp_p10 \gset
SELECT throws_ok($$SELECT pg_temp.attach('ann', 's1', 'p10')$$, 'CPC02',
                 format('runtime node "%s" may not be attached to this session again', pg_temp.n('p10')),
                 'P10: the owner''s re-attach of a revoked slot → CPC02');
SELECT throws_ok($$SELECT pg_temp.attach('bob', 's1', 'p10')$$, 'CPC02',
                 format('runtime node "%s" may not be attached to this session again', pg_temp.n('p10')),
                 'P10: anyone''s attach of a revoked slot → CPC02');
SELECT is(pg_temp.fp(), :'fp_p10', 'P10: the revoked slot and every table unchanged');
SELECT is(pg_temp.attach('ann', 'sb', 'p10') ->> 'state', 'registering',
          'a node revoked in one session may attach to another');

SELECT * FROM finish();
ROLLBACK;
