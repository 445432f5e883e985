-- Every table of contract §3: columns and types, CHECKed enumerations, the two unique indexes on
-- attachments, foreign keys, the node_id domain, the presence table's HOT-friendly layout, the
-- settings row, and the attachment immutability trigger.
-- Rows are inserted directly as superuser with random ids and node ids (the database is shared
-- with other suites and the live sweep) and rolled back at the end.
BEGIN;
CREATE EXTENSION IF NOT EXISTS pgtap;
SET search_path = control_plane, public, pg_catalog;

SELECT plan(181);

-- Columns and types ----------------------------------------------------------------------------
SELECT has_schema('control_plane');
SELECT tables_are('control_plane', ARRAY[
    'participants', 'participant_tokens', 'sessions', 'session_memberships',
    'runtime_node_attachments', 'runtime_node_presence', 'settings', 'sweep_state',
    'runtime_node_events', 'runtime_node_event_retention'],
    'control_plane holds exactly the tables of contract §3 and §9');

SELECT col_type_is('control_plane', t, c, ty, format('%s.%s is %s', t, c, ty))
  FROM (VALUES
    ('participants', 'id', 'uuid'),
    ('participants', 'display_name', 'text'),
    ('participants', 'created_at', 'timestamp with time zone'),
    ('participant_tokens', 'id', 'uuid'),
    ('participant_tokens', 'participant_id', 'uuid'),
    ('participant_tokens', 'token_sha256', 'bytea'),
    ('participant_tokens', 'label', 'text'),
    ('participant_tokens', 'created_at', 'timestamp with time zone'),
    ('participant_tokens', 'expires_at', 'timestamp with time zone'),
    ('participant_tokens', 'revoked_at', 'timestamp with time zone'),
    ('sessions', 'id', 'uuid'),
    ('sessions', 'state', 'text'),
    ('sessions', 'created_at', 'timestamp with time zone'),
    ('sessions', 'updated_at', 'timestamp with time zone'),
    ('session_memberships', 'session_id', 'uuid'),
    ('session_memberships', 'participant_id', 'uuid'),
    ('session_memberships', 'role', 'text'),
    ('session_memberships', 'state', 'text'),
    ('session_memberships', 'joined_at', 'timestamp with time zone'),
    ('session_memberships', 'updated_at', 'timestamp with time zone'),
    ('runtime_node_attachments', 'id', 'uuid'),
    ('runtime_node_attachments', 'session_id', 'uuid'),
    ('runtime_node_attachments', 'participant_id', 'uuid'),
    ('runtime_node_attachments', 'capabilities', 'jsonb'),
    ('runtime_node_attachments', 'state', 'text'),
    ('runtime_node_attachments', 'attached_at', 'timestamp with time zone'),
    ('runtime_node_attachments', 'updated_at', 'timestamp with time zone'),
    ('runtime_node_presence', 'last_heartbeat_at', 'timestamp with time zone'),
    ('runtime_node_presence', 'health_state', 'text')) AS x(t, c, ty);

-- The domains are the column types, so a malformed version or node id can never be stored.
SELECT col_type_is('control_plane', 'sessions', 'min_client_version',
                   'control_plane', 'client_version', 'sessions.min_client_version is client_version');
SELECT col_type_is('control_plane', 'runtime_node_attachments', 'client_version',
                   'control_plane', 'client_version', 'attachments.client_version is client_version');
SELECT col_type_is('control_plane', 'runtime_node_attachments', 'node_id',
                   'control_plane', 'node_id', 'attachments.node_id is the node_id domain');
SELECT col_type_is('control_plane', 'runtime_node_presence', 'node_id',
                   'control_plane', 'node_id', 'presence.node_id is the node_id domain');

SELECT col_is_pk('control_plane', 'participants', 'id', 'participants pk');
SELECT col_is_pk('control_plane', 'participant_tokens', 'id', 'participant_tokens pk');
SELECT col_is_pk('control_plane', 'sessions', 'id', 'sessions pk');
SELECT col_is_pk('control_plane', 'runtime_node_attachments', 'id', 'attachments pk');
SELECT col_is_pk('control_plane', 'runtime_node_presence', 'node_id', 'presence pk is node_id');
SELECT col_not_null('control_plane', 'runtime_node_presence', 'last_heartbeat_at',
                    'presence.last_heartbeat_at is NOT NULL');
SELECT col_is_null('control_plane', 'sessions', 'min_client_version', 'the floor is optional');
SELECT col_is_null('control_plane', 'session_memberships', 'joined_at', 'joined_at is nullable');
SELECT col_is_null('control_plane', 'participant_tokens', 'expires_at', 'expiry is optional');
SELECT col_is_unique('control_plane', 'participant_tokens', 'token_sha256',
                     'token digests are unique');
SELECT col_default_is('control_plane', 'sessions', 'state', 'active', 'sessions default active');
SELECT col_default_is('control_plane', 'runtime_node_attachments', 'state', 'registering',
                      'attachments default registering');
SELECT col_default_is('control_plane', 'runtime_node_attachments', 'capabilities', '{}'::jsonb,
                      'capabilities default {}');
SELECT hasnt_column('control_plane', 'participant_tokens', 'token',
                    'the token secret itself has no column');

-- Foreign keys ---------------------------------------------------------------------------------
SELECT fk_ok('control_plane', 'participant_tokens', 'participant_id',
             'control_plane', 'participants', 'id');
SELECT fk_ok('control_plane', 'session_memberships', 'session_id',
             'control_plane', 'sessions', 'id');
SELECT fk_ok('control_plane', 'session_memberships', 'participant_id',
             'control_plane', 'participants', 'id');
SELECT fk_ok('control_plane', 'runtime_node_attachments', 'session_id',
             'control_plane', 'sessions', 'id');
SELECT fk_ok('control_plane', 'runtime_node_attachments', 'participant_id',
             'control_plane', 'participants', 'id');

-- Test data: two participants, three sessions, memberships; random node ids -------------------
SELECT gen_random_uuid() AS p1, gen_random_uuid() AS p2,
       gen_random_uuid() AS s1, gen_random_uuid() AS s2, gen_random_uuid() AS s3,
       'pgtap-11-' || gen_random_uuid() AS n1, 'pgtap-11-' || gen_random_uuid() AS n2 \gset
INSERT INTO participants (id) VALUES (:'p1'), (:'p2');
INSERT INTO sessions (id) VALUES (:'s1'), (:'s2'), (:'s3');
INSERT INTO session_memberships (session_id, participant_id, role, state)
SELECT s, p, 'owner', 'active' FROM unnest(ARRAY[:'s1', :'s2', :'s3']::uuid[]) s,
                                    unnest(ARRAY[:'p1', :'p2']::uuid[]) p;

SELECT throws_ok(format('INSERT INTO participant_tokens (participant_id, token_sha256) VALUES (%L, sha256(%L))',
                        gen_random_uuid(), 'x'),
                 '23503', NULL, 'a token of an unknown participant is refused (FK)');
SELECT throws_ok(format('INSERT INTO session_memberships (session_id, participant_id, role, state) VALUES (%L, %L, %L, %L)',
                        gen_random_uuid(), :'p1', 'owner', 'active'),
                 '23503', NULL, 'a membership of an unknown session is refused (FK)');
SELECT throws_ok(format('INSERT INTO session_memberships (session_id, participant_id, role, state) VALUES (%L, %L, %L, %L)',
                        :'s1', gen_random_uuid(), 'owner', 'active'),
                 '23503', NULL, 'a membership of an unknown participant is refused (FK)');
-- An attachment's owner must be a member of its session (memberships are never deleted).
INSERT INTO sessions (id) VALUES (gen_random_uuid()) RETURNING id AS s_nomember \gset
SELECT throws_ok(format('INSERT INTO runtime_node_attachments (session_id, participant_id, node_id, client_version) VALUES (%L, %L, %L, %L)',
                        :'s_nomember', :'p1', :'n1', '1.0'),
                 '23503', NULL, 'an attachment of a non-member is refused (FK to memberships)');

-- CHECKed enumerations -------------------------------------------------------------------------
SELECT lives_ok(format('INSERT INTO sessions (state) VALUES (%L)', st), format('sessions.state accepts %s', st))
  FROM unnest(ARRAY['provisioning', 'active', 'archived', 'closed']) st;
SELECT throws_ok(format('INSERT INTO sessions (state) VALUES (%L)', st), '23514', NULL,
                 format('sessions.state rejects %L', st))
  FROM unnest(ARRAY['open', 'ACTIVE', '', 'deleted']) st;
SELECT throws_ok('INSERT INTO sessions (state) VALUES (NULL)', '23502', NULL,
                 'sessions.state is NOT NULL');

CREATE TEMP TABLE roles_ok AS
SELECT r, s, gen_random_uuid() AS p
  FROM unnest(ARRAY['owner', 'collaborator', 'runtime_contributor', 'viewer']) r,
       unnest(ARRAY['pending', 'active', 'suspended', 'revoked']) s;
INSERT INTO participants (id) SELECT p FROM roles_ok;
SELECT lives_ok(format('INSERT INTO session_memberships (session_id, participant_id, role, state) VALUES (%L, %L, %L, %L)',
                       :'s2', p, r, s),
                format('memberships accept role %s, state %s', r, s))
  FROM roles_ok;
SELECT throws_ok(format('INSERT INTO session_memberships (session_id, participant_id, role, state) VALUES (%L, %L, %L, %L)',
                        :'s3', (SELECT p FROM roles_ok LIMIT 1), r, s),
                 '23514', NULL, format('memberships reject role %L, state %L', r, s))
  FROM (VALUES ('admin', 'active'), ('Owner', 'active'), ('owner', 'invited'),
               ('viewer', 'ACTIVE'), ('', 'active')) AS x(r, s);
SELECT throws_ok(format('INSERT INTO session_memberships (session_id, participant_id, role, state) VALUES (%L, %L, %L, %L)',
                        :'s1', :'p1', 'viewer', 'active'),
                 '23505', NULL, 'one membership per (session, participant)');

SELECT lives_ok(format('INSERT INTO runtime_node_attachments (session_id, participant_id, node_id, client_version, state) VALUES (%L, %L, %L, %L, %L)',
                       :'s3', :'p1', 'pgtap-11-' || gen_random_uuid(), '1.0', st),
                format('attachments.state accepts %s', st))
  FROM unnest(ARRAY['registering', 'online', 'degraded', 'offline', 'revoked']) st;
SELECT throws_ok(format('INSERT INTO runtime_node_attachments (session_id, participant_id, node_id, client_version, state) VALUES (%L, %L, %L, %L, %L)',
                        :'s3', :'p1', 'pgtap-11-' || gen_random_uuid(), '1.0', st),
                 '23514', NULL, format('attachments.state rejects %L', st))
  FROM unnest(ARRAY['active', 'ONLINE', 'detached', '']) st;
SELECT throws_ok(format('INSERT INTO runtime_node_attachments (session_id, participant_id, node_id, client_version, capabilities) VALUES (%L, %L, %L, %L, %L)',
                        :'s3', :'p1', 'pgtap-11-' || gen_random_uuid(), '1.0', c),
                 '23514', NULL, format('capabilities must be an object, not %s', c))
  FROM unnest(ARRAY['[]', '1', '"x"', 'null']) c;
SELECT throws_ok(format('INSERT INTO runtime_node_attachments (session_id, participant_id, node_id, client_version) VALUES (%L, %L, %L, %L)',
                        :'s3', :'p1', 'pgtap-11-' || gen_random_uuid(), '1.0.0'),
                 '23514', NULL, 'attachments refuse a malformed client version');

SELECT lives_ok(format('INSERT INTO runtime_node_presence (node_id, last_heartbeat_at, health_state) VALUES (%L, now(), %L)',
                       'pgtap-11-' || gen_random_uuid(), h),
                format('presence.health_state accepts %s', h))
  FROM unnest(ARRAY['online', 'degraded', 'offline']) h;
SELECT throws_ok(format('INSERT INTO runtime_node_presence (node_id, last_heartbeat_at, health_state) VALUES (%L, now(), %L)',
                        'pgtap-11-' || gen_random_uuid(), h),
                 '23514', NULL, format('presence.health_state rejects %L', h))
  FROM unnest(ARRAY['registering', 'revoked', 'unknown', 'Online']) h;
SELECT throws_ok(format('INSERT INTO runtime_node_presence (node_id, last_heartbeat_at, health_state) VALUES (%L, NULL, %L)',
                        'pgtap-11-' || gen_random_uuid(), 'online'),
                 '23502', NULL, 'presence.last_heartbeat_at is NOT NULL');

-- The two unique indexes on attachments --------------------------------------------------------
SELECT has_index('control_plane', 'runtime_node_attachments', 'runtime_node_attachments_one_active',
                 'the one-active-attachment index exists');
SELECT index_is_unique('control_plane', 'runtime_node_attachments',
                       'runtime_node_attachments_one_active', 'and is unique');
SELECT is((SELECT pg_get_expr(i.indpred, i.indrelid)
             FROM pg_index i
            WHERE i.indexrelid = 'control_plane.runtime_node_attachments_one_active'::regclass),
          'slot_is_active(state)', 'it is partial, on the one active-slot predicate');
SELECT is(ARRAY(SELECT st FROM unnest(ARRAY['registering', 'online', 'degraded', 'offline', 'revoked']) st
                 WHERE control_plane.slot_is_active(st)),
          ARRAY['registering', 'online', 'degraded'],
          'active slots: registering/online/degraded, never offline or revoked');
SELECT is((SELECT array_agg(a.attname::text ORDER BY k.ord)
             FROM pg_index i
             CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord)
             JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
            WHERE i.indexrelid = 'control_plane.runtime_node_attachments_one_active'::regclass),
          ARRAY['node_id'], 'on node_id alone');
SELECT ok(EXISTS (SELECT FROM pg_index i
                   WHERE i.indrelid = 'control_plane.runtime_node_attachments'::regclass
                     AND i.indisunique AND i.indpred IS NULL
                     AND (SELECT array_agg(a.attname::text ORDER BY a.attname::text)
                            FROM pg_attribute a
                           WHERE a.attrelid = i.indrelid AND a.attnum = ANY (i.indkey))
                         = ARRAY['node_id', 'session_id']),
          'unique (node_id, session_id): the attach upsert''s conflict target');

-- n1 registering in s1.
INSERT INTO runtime_node_attachments (session_id, participant_id, node_id, client_version)
VALUES (:'s1', :'p1', :'n1', '1.0') RETURNING id AS a1 \gset
SELECT throws_ok(format('INSERT INTO runtime_node_attachments (session_id, participant_id, node_id, client_version, state) VALUES (%L, %L, %L, %L, %L)',
                        :'s2', :'p1', :'n1', '1.0', st),
                 '23505', NULL, format('a second active (%s) row in another session is rejected', st))
  FROM unnest(ARRAY['registering', 'online', 'degraded']) st;
SELECT throws_ok(format('INSERT INTO runtime_node_attachments (session_id, participant_id, node_id, client_version, state) VALUES (%L, %L, %L, %L, %L)',
                        :'s2', :'p2', :'n1', '1.0', 'online'),
                 '23505', NULL, 'even for another owner');
SELECT lives_ok(format('INSERT INTO runtime_node_attachments (session_id, participant_id, node_id, client_version, state) VALUES (%L, %L, %L, %L, %L)',
                       :'s2', :'p1', :'n1', '1.0', 'offline'),
                'an offline row in another session is not');
SELECT lives_ok(format('INSERT INTO runtime_node_attachments (session_id, participant_id, node_id, client_version, state) VALUES (%L, %L, %L, %L, %L)',
                       :'s3', :'p2', :'n1', '1.0', 'revoked'),
                'a revoked row in another session is not');
SELECT throws_ok(format('UPDATE runtime_node_attachments SET state = %L WHERE node_id = %L AND session_id = %L',
                        'registering', :'n1', :'s2'),
                 '23505', NULL, 'reactivating the offline row while another is active is rejected');
SELECT throws_ok(format('INSERT INTO runtime_node_attachments (session_id, participant_id, node_id, client_version, state) VALUES (%L, %L, %L, %L, %L)',
                        :'s1', :'p1', :'n1', '1.0', 'offline'),
                 '23505', NULL, 'a second row for the same (node, session) is rejected, whatever its state');
-- Once the first goes offline, the other session's row may become active.
UPDATE runtime_node_attachments SET state = 'offline' WHERE id = :'a1';
SELECT lives_ok(format('UPDATE runtime_node_attachments SET state = %L WHERE node_id = %L AND session_id = %L',
                       'registering', :'n1', :'s2'),
                'after the active row goes offline another session''s row may become active');
SELECT is((SELECT count(*)::int FROM runtime_node_attachments
            WHERE node_id = :'n1' AND state IN ('registering', 'online', 'degraded')),
          1, 'exactly one active attachment of the node');

-- The node_id domain ---------------------------------------------------------------------------
SELECT has_domain('control_plane', 'node_id', 'node_id is a domain');
SELECT lives_ok(format('SELECT %L::control_plane.node_id', v), format('node_id accepts %s', d))
  FROM (VALUES ('a', 'one character'),
               (repeat('x', 256), '256 characters'),
               (repeat('é', 256), '256 two-byte characters (characters, not bytes)'),
               ('laptop 1/β:☃', 'spaces, slashes and non-ASCII'),
               (chr(160) || 'x', 'U+00A0 (not a control character)')) AS t(v, d);
SELECT throws_ok(format('SELECT %L::control_plane.node_id', v), '23514', NULL,
                 format('node_id rejects %s', d))
  FROM (VALUES ('', 'the empty string'),
               (repeat('x', 257), '257 characters'),
               (repeat('é', 257), '257 two-byte characters'),
               (E'a\nb', 'a newline'),
               (E'a\tb', 'a tab'),
               (chr(1) || 'a', 'U+0001'),
               ('a' || chr(31), 'U+001F'),
               ('a' || chr(127), 'U+007F (DEL)'),
               ('a' || chr(128), 'U+0080'),
               ('a' || chr(159), 'U+009F')) AS t(v, d);

-- Presence: the hottest table stays HOT ------------------------------------------------------
SELECT cmp_ok((SELECT substring(o FROM 'fillfactor=(\d+)')::int
                 FROM pg_class c CROSS JOIN LATERAL unnest(c.reloptions) o
                WHERE c.oid = 'control_plane.runtime_node_presence'::regclass
                  AND o LIKE 'fillfactor=%'),
              '<', 100, 'presence has a fillfactor below 100');
SELECT is((SELECT count(*)::int
             FROM pg_index i
             JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attname = 'last_heartbeat_at'
            WHERE i.indrelid = 'control_plane.runtime_node_presence'::regclass
              AND (a.attnum = ANY (i.indkey)
                   OR pg_get_expr(i.indexprs, i.indrelid) ~ 'last_heartbeat_at'
                   OR pg_get_expr(i.indpred, i.indrelid) ~ 'last_heartbeat_at')),
          0, 'no index touches last_heartbeat_at (heartbeat updates stay HOT)');

-- Settings: one CHECKed row ------------------------------------------------------------------
SELECT is((SELECT count(*)::int FROM settings), 1, 'settings has exactly one row');
SELECT is((SELECT count(*)::int FROM sweep_state), 1, 'sweep_state has exactly one row');
SELECT throws_ok('INSERT INTO settings DEFAULT VALUES', '23505', NULL,
                 'a second settings row is refused');
SELECT throws_ok('INSERT INTO settings (singleton) VALUES (false)', '23514', NULL,
                 'the singleton key cannot be side-stepped');
SELECT throws_ok('INSERT INTO sweep_state DEFAULT VALUES', '23505', NULL,
                 'a second sweep_state row is refused');
SELECT has_column('control_plane', 'settings', c, format('settings.%s', c))
  FROM unnest(ARRAY['heartbeat_interval', 'degraded_after', 'offline_after', 'sweep_interval',
                    'gap_grace', 'stall_min_nodes']) c;
-- Fresh defaults (the live row may have been tuned by a DBA; the defaults are what contract §7 says).
SELECT col_default_is('control_plane', 'settings', c, d, format('settings.%s defaults to %s', c, d))
  FROM (VALUES ('heartbeat_interval', '15 seconds'),
               ('degraded_after', '30 seconds'),
               ('offline_after', '60 seconds'),
               ('sweep_interval', '5 seconds'),
               ('gap_grace', '15 seconds'),
               ('stall_min_nodes', '10')) AS x(c, d);
SELECT throws_ok(format('UPDATE settings SET %s', s), '23514', NULL, format('settings refuse %s', s))
  FROM unnest(ARRAY[
    'degraded_after = offline_after',
    'degraded_after = offline_after + interval ''1 second''',
    'heartbeat_interval = degraded_after',
    'heartbeat_interval = interval ''0''',
    'sweep_interval = interval ''0''',
    'gap_grace = sweep_interval - interval ''1 second''',
    'stall_min_nodes = 0']) s;
SELECT lives_ok('UPDATE settings SET degraded_after = interval ''45 seconds'', offline_after = interval ''90 seconds''',
                'a consistent tuning is accepted (rolled back)');

-- The immutability trigger -------------------------------------------------------------------
INSERT INTO runtime_node_attachments (session_id, participant_id, node_id, client_version)
VALUES (:'s1', :'p1', :'n2', '1.0') RETURNING id AS a2 \gset
SELECT has_trigger('control_plane', 'runtime_node_attachments',
                   'runtime_node_attachments_guard_immutable', 'the guard trigger exists');
SELECT throws_ok(format('UPDATE runtime_node_attachments SET %s WHERE id = %L', s, :'a2'),
                 '23514', NULL, format('immutable: %s', d))
  FROM (VALUES (format('participant_id = %L', :'p2'), 'the owner'),
               ('attached_at = attached_at - interval ''1 hour''', 'attached_at'),
               (format('session_id = %L', :'s2'), 'the session'),
               (format('node_id = %L', 'pgtap-11-' || gen_random_uuid()), 'the node id')) AS x(s, d);
SELECT lives_ok(format('UPDATE runtime_node_attachments SET state = %L, capabilities = %L, client_version = %L WHERE id = %L',
                       'online', '{"a": 1}', '2.0', :'a2'),
                'state, capabilities and client version may change');
UPDATE runtime_node_attachments SET state = 'revoked' WHERE id = :'a2';
SELECT throws_ok(format('UPDATE runtime_node_attachments SET state = %L WHERE id = %L', st, :'a2'),
                 '23514', NULL, format('revoked is terminal: not back to %s', st))
  FROM unnest(ARRAY['registering', 'online', 'degraded', 'offline']) st;
SELECT lives_ok(format('UPDATE runtime_node_attachments SET updated_at = now() WHERE id = %L', :'a2'),
                'a revoked row may still be touched without leaving revoked');

SELECT * FROM finish();
ROLLBACK;
