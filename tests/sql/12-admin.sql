-- The admin SQL functions (contract §6.8) as a DBA calls them in psql, and caller_participant, the
-- token resolution every runtime-node function starts with.
BEGIN;
CREATE EXTENSION IF NOT EXISTS pgtap;
SET search_path = control_plane, public, pg_catalog;

SELECT plan(75);

-- admin_create_participant ---------------------------------------------------------------------
SELECT admin_create_participant() AS r_p1 \gset
SELECT ok((:'r_p1'::jsonb ->> 'participantId') ~ '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$',
          'create participant returns a lower-case participantId');
SELECT is((SELECT array_agg(k) FROM jsonb_object_keys(:'r_p1'::jsonb) k), ARRAY['participantId'],
          'and nothing else');
SELECT :'r_p1'::jsonb ->> 'participantId' AS p1 \gset
SELECT is((SELECT display_name FROM participants WHERE id = :'p1'), NULL, 'displayName is optional');
SELECT admin_create_participant('Ann') ->> 'participantId' AS p2 \gset
SELECT is((SELECT display_name FROM participants WHERE id = :'p2'), 'Ann', 'displayName is stored');
SELECT throws_ok($$SELECT control_plane.admin_create_participant('')$$, 'CP400', NULL,
                 'an empty displayName is refused');
SELECT throws_ok(format('SELECT control_plane.admin_create_participant(%L)', repeat('x', 201)),
                 'CP400', NULL, 'a 201-character displayName is refused');

-- admin_issue_token ----------------------------------------------------------------------------
SELECT admin_issue_token(:'p1') AS r_t1 \gset
SELECT :'r_t1'::jsonb ->> 'token' AS t1, :'r_t1'::jsonb ->> 'tokenId' AS t1_id \gset
SELECT is((SELECT array_agg(k ORDER BY k) FROM jsonb_object_keys(:'r_t1'::jsonb) k),
          ARRAY['expiresAt', 'token', 'tokenId'], 'issue token returns {tokenId, token, expiresAt}');
SELECT matches(:'t1'::text, '^cpt_[A-Za-z0-9_-]{43}$', 'token is cpt_ + 43 base64url characters (32 bytes)');
SELECT is(length(decode(translate(substr(:'t1', 5), '-_', '+/') || '=', 'base64')), 32,
          'which decode to 32 bytes');
SELECT ok(jsonb_typeof(:'r_t1'::jsonb -> 'expiresAt') = 'null', 'no expiry unless asked');
SELECT is((SELECT participant_id::text FROM participant_tokens WHERE id = :'t1_id'), :'p1'::text,
          'the token row belongs to the participant');
SELECT is((SELECT token_sha256 FROM participant_tokens WHERE id = :'t1_id'),
          sha256(convert_to(:'t1', 'UTF8')), 'only the SHA-256 digest of the token is stored');
SELECT is((SELECT count(*)::int FROM participant_tokens t
            WHERE t.id = :'t1_id'
              AND (t::text LIKE '%' || substr(:'t1', 5) || '%'
                   OR encode(t.token_sha256, 'escape') LIKE '%' || substr(:'t1', 5) || '%')),
          0, 'the secret itself appears nowhere in its row');
SELECT isnt(admin_issue_token(:'p1') ->> 'token', :'t1'::text, 'every token is fresh');
SELECT is(caller_participant(sha256(convert_to(:'t1', 'UTF8'))), :'p1'::uuid,
          'caller_participant resolves the token digest to its participant');

SELECT admin_issue_token(:'p2', 'laptop', 3600) AS r_t2 \gset
SELECT :'r_t2'::jsonb ->> 'tokenId' AS t2_id, :'r_t2'::jsonb ->> 'token' AS t2 \gset
SELECT is((SELECT label FROM participant_tokens WHERE id = :'t2_id'), 'laptop', 'label is stored');
SELECT is((SELECT expires_at FROM participant_tokens WHERE id = :'t2_id'),
          now() + interval '3600 seconds', 'expires_at = now + expiresInSeconds');
SELECT is((:'r_t2'::jsonb ->> 'expiresAt')::timestamptz, now() + interval '3600 seconds',
          'expiresAt is returned as a timestamp');
SELECT matches(:'r_t2'::jsonb ->> 'expiresAt', '^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)$',
               'expiresAt is RFC 3339 with an offset');
SELECT throws_ok(format('SELECT control_plane.admin_issue_token(%L, NULL, 0)', :'p1'), 'CP400', NULL,
                 'expiresInSeconds 0 is refused');
SELECT throws_ok(format('SELECT control_plane.admin_issue_token(%L, NULL, -5)', :'p1'), 'CP400', NULL,
                 'a negative expiresInSeconds is refused');
SELECT throws_ok(format('SELECT control_plane.admin_issue_token(%L, %L)', :'p1', ''), 'CP400', NULL,
                 'an empty label is refused');
SELECT throws_ok(format('SELECT control_plane.admin_issue_token(%L)', gen_random_uuid()), 'CPN04', NULL,
                 'a token for an unknown participant → CPN04');

-- caller_participant: unknown, expired, revoked → CP401 -------------------------------------
SELECT throws_ok(format('SELECT control_plane.caller_participant(%L::bytea)', sha256('nope'::bytea)),
                 'CP401', NULL, 'an unknown digest → CP401');
SELECT throws_ok('SELECT control_plane.caller_participant(NULL)', 'CP401', NULL, 'no digest → CP401');
UPDATE participant_tokens SET created_at = now() - interval '2 hours',
                              expires_at = now() - interval '1 second' WHERE id = :'t2_id';
SELECT throws_ok(format('SELECT control_plane.caller_participant(%L::bytea)', sha256(convert_to(:'t2', 'UTF8'))),
                 'CP401', NULL, 'an expired token → CP401');
UPDATE participant_tokens SET expires_at = now() + interval '1 second' WHERE id = :'t2_id';
SELECT is(caller_participant(sha256(convert_to(:'t2', 'UTF8'))), :'p2'::uuid,
          'a token not yet expired works');

-- admin_revoke_token ---------------------------------------------------------------------------
SELECT lives_ok(format('SELECT control_plane.admin_revoke_token(%L)', :'t1_id'), 'revoke a token');
SELECT is((SELECT revoked_at FROM participant_tokens WHERE id = :'t1_id'), now(), 'revoked_at is set');
SELECT throws_ok(format('SELECT control_plane.caller_participant(%L::bytea)', sha256(convert_to(:'t1', 'UTF8'))),
                 'CP401', NULL, 'a revoked token → CP401');
UPDATE participant_tokens SET revoked_at = now() - interval '1 minute' WHERE id = :'t1_id';
SELECT lives_ok(format('SELECT control_plane.admin_revoke_token(%L)', :'t1_id'), 'revoking twice is fine');
SELECT is((SELECT revoked_at FROM participant_tokens WHERE id = :'t1_id'), now() - interval '1 minute',
          'and keeps the first revocation time');
SELECT throws_ok(format('SELECT control_plane.admin_revoke_token(%L)', gen_random_uuid()), 'CPN04', NULL,
                 'revoking an unknown token → CPN04');

-- admin_create_session -------------------------------------------------------------------------
SELECT admin_create_session() AS r_s1 \gset
SELECT :'r_s1'::jsonb ->> 'sessionId' AS s1 \gset
SELECT is(:'r_s1'::jsonb - 'sessionId', '{"state": "active", "minClientVersion": null}'::jsonb,
          'a session is active with no floor by default');
SELECT matches(:'s1'::text, '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$',
               'sessionId is a lower-case UUID');
SELECT is((SELECT state || '/' || coalesce(min_client_version, '-') FROM sessions WHERE id = :'s1'),
          'active/-', 'the row matches');
SELECT is(admin_create_session('1.10', st) - 'sessionId',
          jsonb_build_object('state', st, 'minClientVersion', '1.10'),
          format('a session may be created %s with a floor', st))
  FROM unnest(ARRAY['provisioning', 'active', 'archived', 'closed']) st;
SELECT throws_ok($$SELECT control_plane.admin_create_session(NULL, 'open')$$, 'CP400', NULL,
                 'an unknown session state → CP400');
SELECT throws_ok($$SELECT control_plane.admin_create_session(NULL, NULL)$$, 'CP400', NULL,
                 'a NULL session state → CP400');
SELECT throws_ok($$SELECT control_plane.admin_create_session('1.0.0')$$, '23514', NULL,
                 'a malformed floor never reaches the table');

-- admin_put_membership -------------------------------------------------------------------------
SELECT admin_put_membership(:'s1', :'p1', 'collaborator', 'pending') AS r_m1 \gset
SELECT is(:'r_m1'::jsonb, jsonb_build_object('sessionId', :'s1', 'participantId', :'p1',
                                              'role', 'collaborator', 'state', 'pending',
                                              'joinedAt', NULL),
          'a pending membership has no joinedAt');
SELECT is((admin_put_membership(:'s1', :'p1', 'owner', 'active') ->> 'joinedAt')::timestamptz, now(),
          'activation sets joinedAt');
SELECT is((SELECT role || '/' || state FROM session_memberships
            WHERE session_id = :'s1' AND participant_id = :'p1'),
          'owner/active', 'the upsert replaced role and state');
SELECT is((SELECT count(*)::int FROM session_memberships
            WHERE session_id = :'s1' AND participant_id = :'p1'), 1, 'still one row');
-- Make the first activation visibly older than this transaction's now().
UPDATE session_memberships SET joined_at = now() - interval '1 day'
 WHERE session_id = :'s1' AND participant_id = :'p1';
SELECT is((admin_put_membership(:'s1', :'p1', 'viewer', 'suspended') ->> 'joinedAt')::timestamptz,
          now() - interval '1 day', 'suspension keeps joinedAt');
SELECT is((admin_put_membership(:'s1', :'p1', 'owner', 'active') ->> 'joinedAt')::timestamptz,
          now() - interval '1 day', 're-activation keeps the first joinedAt');
SELECT is(admin_put_membership(:'s1', :'p2', r, 'active') ->> 'role', r,
          format('role %s is accepted', r))
  FROM unnest(ARRAY['collaborator', 'runtime_contributor', 'viewer', 'owner']) r;
SELECT is(admin_put_membership(:'s1', :'p2', 'viewer', st) ->> 'state', st,
          format('state %s is accepted', st))
  FROM unnest(ARRAY['pending', 'suspended', 'revoked', 'active']) st;
SELECT throws_ok(format('SELECT control_plane.admin_put_membership(%L, %L, %L, %L)', :'s1', :'p1', 'admin', 'active'),
                 'CP400', NULL, 'an unknown role → CP400');
SELECT throws_ok(format('SELECT control_plane.admin_put_membership(%L, %L, %L, %L)', :'s1', :'p1', 'owner', 'invited'),
                 'CP400', NULL, 'an unknown membership state → CP400');
SELECT throws_ok(format('SELECT control_plane.admin_put_membership(%L, %L, %L, %L)', gen_random_uuid(), :'p1', 'owner', 'active'),
                 'CPN04', NULL, 'an unknown session → CPN04');
SELECT throws_ok(format('SELECT control_plane.admin_put_membership(%L, %L, %L, %L)', :'s1', gen_random_uuid(), 'owner', 'active'),
                 'CPN04', NULL, 'an unknown participant → CPN04');
-- Memberships may be put on sessions in any state.
SELECT admin_create_session(NULL, 'closed') ->> 'sessionId' AS s_closed \gset
SELECT is(admin_put_membership(:'s_closed', :'p1', 'owner', 'active') ->> 'state', 'active',
          'memberships of a closed session can be put');

-- admin_raise_floor ----------------------------------------------------------------------------
SELECT is(admin_raise_floor(:'s1', '1.9'), jsonb_build_object('sessionId', :'s1', 'minClientVersion', '1.9'),
          'setting a first floor');
SELECT is(admin_raise_floor(:'s1', '1.10') ->> 'minClientVersion', '1.10',
          'raising 1.9 → 1.10 (numeric, although textually lower)');
UPDATE sessions SET updated_at = now() - interval '1 hour' WHERE id = :'s1';
SELECT is(admin_raise_floor(:'s1', '1.10') ->> 'minClientVersion', '1.10', 'the same value is accepted');
SELECT is((SELECT updated_at FROM sessions WHERE id = :'s1'), now() - interval '1 hour',
          'and is a no-op (row not rewritten)');
SELECT throws_ok(format('SELECT control_plane.admin_raise_floor(%L, %L)', :'s1', '1.9'), 'CPC06', NULL,
                 'lowering 1.10 → 1.9 → CPC06');
SELECT throws_ok(format('SELECT control_plane.admin_raise_floor(%L, %L)', :'s1', '0.99'), 'CPC06', NULL,
                 'lowering the major → CPC06');
SELECT throws_ok(format('SELECT control_plane.admin_raise_floor(%L, NULL)', :'s1'), 'CPC06', NULL,
                 'clearing the floor → CPC06');
SELECT is((SELECT min_client_version::text FROM sessions WHERE id = :'s1'), '1.10',
          'refused changes left the floor alone');
SELECT is(admin_raise_floor(:'s1', '10.0') ->> 'minClientVersion', '10.0', 'raising to 10.0');
SELECT throws_ok(format('SELECT control_plane.admin_raise_floor(%L, %L)', :'s1', '9.0'), 'CPC06', NULL,
                 '9.0 is below 10.0');
SELECT throws_ok(format('SELECT control_plane.admin_raise_floor(%L, NULL)', :'s_closed'), 'CPC06', NULL,
                 'clearing an absent floor is still refused (clearing is never a raise)');
SELECT throws_ok(format('SELECT control_plane.admin_raise_floor(%L, %L)', gen_random_uuid(), '1.0'), 'CPN04', NULL,
                 'an unknown session → CPN04');
SELECT throws_ok(format('SELECT control_plane.admin_raise_floor(%L, %L)', :'s1', '11.0.1'), '23514', NULL,
                 'a malformed floor is refused by the domain');

SELECT * FROM finish();
ROLLBACK;
