-- The admin read API (contract §11) as a DBA calls it in psql: keyset pages of participants and
-- sessions, one participant with its token metadata, one session with its members, the roster
-- of any session.
--
-- The database is shared with other suites, so the rows listed here are placed in the far future
-- (created_at in year 3000) and every walk starts from one of this file's own rows: the pages
-- then hold exactly this file's rows, whatever else the tables contain.
BEGIN;
CREATE EXTENSION IF NOT EXISTS pgtap;
SET search_path = control_plane, public, pg_catalog;

SELECT plan(47);

-- Walk every page after p_after (limit p_limit): the ids in order and the page sizes.
CREATE FUNCTION pg_temp.walk_participants(p_after uuid, p_limit integer,
                                          OUT ids uuid[], OUT sizes integer[])
    LANGUAGE plpgsql AS $$
DECLARE
    v_page jsonb;
    v_after uuid := p_after;
BEGIN
    ids := '{}';
    sizes := '{}';
    LOOP
        v_page := control_plane.admin_list_participants(p_limit, v_after);
        ids := ids || ARRAY(SELECT (i ->> 'participantId')::uuid
                              FROM jsonb_array_elements(v_page -> 'items') i);
        sizes := sizes || jsonb_array_length(v_page -> 'items');
        EXIT WHEN jsonb_typeof(v_page -> 'next') = 'null';
        v_after := (v_page ->> 'next')::uuid;
        IF cardinality(sizes) > 1000 THEN
            RAISE EXCEPTION 'the walk does not end';
        END IF;
    END LOOP;
END $$;

CREATE FUNCTION pg_temp.walk_sessions(p_state text, p_after uuid, p_limit integer,
                                      OUT ids uuid[], OUT sizes integer[])
    LANGUAGE plpgsql AS $$
DECLARE
    v_page jsonb;
    v_after uuid := p_after;
BEGIN
    ids := '{}';
    sizes := '{}';
    LOOP
        v_page := control_plane.admin_list_sessions(p_state, p_limit, v_after);
        ids := ids || ARRAY(SELECT (i ->> 'sessionId')::uuid
                              FROM jsonb_array_elements(v_page -> 'items') i);
        sizes := sizes || jsonb_array_length(v_page -> 'items');
        EXIT WHEN jsonb_typeof(v_page -> 'next') = 'null';
        v_after := (v_page ->> 'next')::uuid;
        IF cardinality(sizes) > 1000 THEN
            RAISE EXCEPTION 'the walk does not end';
        END IF;
    END LOOP;
END $$;

-- Participants: an anchor, then 7 more, one second apart, in the far future ----------------------
CREATE TEMP TABLE fx_p (n integer PRIMARY KEY, id uuid NOT NULL);
INSERT INTO fx_p
SELECT n, (admin_create_participant('reads ' || n) ->> 'participantId')::uuid
  FROM generate_series(0, 7) n;
UPDATE participants p SET created_at = timestamptz '3000-01-01 00:00:00+00' + make_interval(secs => f.n)
  FROM fx_p f WHERE p.id = f.id;
SELECT id AS anchor FROM fx_p WHERE n = 0 \gset

SELECT is(admin_list_participants(2, :'anchor'),
          jsonb_build_object(
              'items', (SELECT jsonb_agg(jsonb_build_object(
                                   'participantId', p.id, 'displayName', p.display_name,
                                   'createdAt', p.created_at) ORDER BY f.n)
                          FROM fx_p f JOIN participants p ON p.id = f.id WHERE f.n IN (1, 2)),
              'next', (SELECT id FROM fx_p WHERE n = 2)),
          'a page: {items: [{participantId, displayName, createdAt}], next = the last item''s id}');
SELECT is((pg_temp.walk_participants(:'anchor', 2)).ids,
          ARRAY(SELECT id FROM fx_p WHERE n > 0 ORDER BY n),
          'walking the pages lists every row after the cursor once, in creation order');
SELECT is((pg_temp.walk_participants(:'anchor', 2)).sizes, ARRAY[2, 2, 2, 1],
          'full pages, then the rest, with next = null on the last page');
SELECT is((pg_temp.walk_participants(:'anchor', 7)).sizes, ARRAY[7],
          'a last page that is exactly full has next = null (no empty page to fetch)');
SELECT is((pg_temp.walk_participants(:'anchor', 1)).ids,
          ARRAY(SELECT id FROM fx_p WHERE n > 0 ORDER BY n), 'limit 1 walks the same rows');
SELECT is(admin_list_participants(5, (SELECT id FROM fx_p WHERE n = 7)),
          '{"items": [], "next": null}'::jsonb, 'after the last row: an empty page, next null');

-- Ties on created_at are broken by id.
UPDATE participants p SET created_at = timestamptz '3000-01-01 00:00:03+00'
  FROM fx_p f WHERE p.id = f.id AND f.n IN (3, 4, 5);
SELECT is((pg_temp.walk_participants(:'anchor', 2)).ids,
          ARRAY(SELECT f.id FROM fx_p f JOIN participants p ON p.id = f.id WHERE f.n > 0
                 ORDER BY p.created_at, p.id),
          'rows created at the same instant are ordered by id, and a page boundary among them '
          'loses none');

-- Stable under concurrent inserts: rows created between two pages appear after the cursor once
-- (or, created "in the past", not at all) and never repeat or hide a row that existed throughout.
SELECT admin_list_participants(3, :'anchor') AS page1 \gset
INSERT INTO fx_p
SELECT 100 + n, (admin_create_participant('late ' || n) ->> 'participantId')::uuid
  FROM generate_series(0, 2) n;
UPDATE participants p SET created_at = CASE f.n WHEN 100 THEN timestamptz '2999-01-01 00:00:00+00'
                                                ELSE timestamptz '3000-01-01 00:00:00+00'
                                                     + make_interval(secs => f.n) END
  FROM fx_p f WHERE p.id = f.id AND f.n >= 100;
SELECT is(ARRAY(SELECT (i ->> 'participantId')::uuid FROM jsonb_array_elements(:'page1'::jsonb -> 'items') i)
          || (pg_temp.walk_participants((:'page1'::jsonb ->> 'next')::uuid, 3)).ids,
          ARRAY(SELECT f.id FROM fx_p f JOIN participants p ON p.id = f.id
                 WHERE f.n BETWEEN 1 AND 99 OR f.n > 100 ORDER BY p.created_at, p.id),
          'continuing from a cursor after inserts: every old row once, new rows after the cursor '
          'once, a row created before the cursor not at all');

-- The page size rule, and bad cursors.
INSERT INTO participants (display_name, created_at)
SELECT 'bulk', timestamptz '3001-01-01 00:00:00+00' + make_interval(secs => n)
  FROM generate_series(1, 1001) n;
SELECT id AS anchor_bulk FROM participants WHERE created_at = '3001-01-01 00:00:01+00' \gset
SELECT is(jsonb_array_length(admin_list_participants(NULL, :'anchor_bulk') -> 'items'), 100,
          'the default page size is 100');
SELECT isnt(jsonb_typeof(admin_list_participants(NULL, :'anchor_bulk') -> 'next'), 'null',
            'with a next cursor when more rows follow');
SELECT is(jsonb_array_length(admin_list_participants(1000, :'anchor_bulk') -> 'items'), 1000,
          'limit 1000 (the maximum) is a page of 1000');
SELECT throws_ok(format('SELECT control_plane.admin_list_participants(%s)', l), 'CP400',
                 'limit must be an integer from 1 to 1000', format('limit %s → CP400', l))
  FROM unnest(ARRAY[0, -1, 1001, 2147483647]) l;
SELECT throws_ok(format('SELECT control_plane.admin_list_participants(10, %L)', gen_random_uuid()),
                 'CP400', 'after must be the id of a listed participant',
                 'an after that is no participant''s id → CP400');

-- One participant with its token metadata ---------------------------------------------------------
SELECT id AS p1 FROM fx_p WHERE n = 1 \gset
SELECT admin_issue_token(:'p1', 'laptop') ->> 'tokenId' AS t_a \gset
SELECT admin_issue_token(:'p1', NULL, 3600) ->> 'tokenId' AS t_b \gset
SELECT admin_issue_token(:'p1') AS issued_c \gset
SELECT :'issued_c'::jsonb ->> 'tokenId' AS t_c, :'issued_c'::jsonb ->> 'token' AS secret_c \gset
SELECT admin_revoke_token(:'t_c') \g /dev/null
UPDATE participant_tokens SET created_at = now() - interval '1 hour' WHERE id = :'t_a';
SELECT admin_get_participant(:'p1') AS detail \gset
SELECT is(:'detail'::jsonb - 'tokens',
          (SELECT jsonb_build_object('participantId', id, 'displayName', display_name,
                                     'createdAt', created_at)
             FROM participants WHERE id = :'p1'),
          'participant detail: participantId, displayName, createdAt');
SELECT is(:'detail'::jsonb -> 'tokens',
          (SELECT jsonb_agg(jsonb_build_object('tokenId', id, 'label', label,
                                               'createdAt', created_at, 'expiresAt', expires_at,
                                               'revokedAt', revoked_at) ORDER BY created_at, id)
             FROM participant_tokens WHERE participant_id = :'p1'),
          'tokens: {tokenId, label, createdAt, expiresAt, revokedAt}, oldest first');
SELECT is(jsonb_array_length(:'detail'::jsonb -> 'tokens'), 3,
          'every token is listed, revoked ones too');
SELECT is((SELECT t ->> 'tokenId' FROM jsonb_array_elements(:'detail'::jsonb -> 'tokens') t
            WHERE t ->> 'label' = 'laptop'), :'t_a', 'the labelled token is the oldest');
SELECT ok((SELECT (t ->> 'revokedAt')::timestamptz = now()
             FROM jsonb_array_elements(:'detail'::jsonb -> 'tokens') t WHERE t ->> 'tokenId' = :'t_c'),
          'a revoked token shows revokedAt');
SELECT ok((SELECT (t ->> 'expiresAt')::timestamptz = now() + interval '1 hour'
             FROM jsonb_array_elements(:'detail'::jsonb -> 'tokens') t WHERE t ->> 'tokenId' = :'t_b'),
          'an expiring token shows expiresAt');
SELECT is(position(substr(:'secret_c', 5) IN :'detail') + position(
              encode((SELECT token_sha256 FROM participant_tokens WHERE id = :'t_c'), 'hex') IN :'detail')
          + position(encode((SELECT token_sha256 FROM participant_tokens WHERE id = :'t_c'), 'base64')
                     IN :'detail'),
          0, 'neither a secret nor its digest (hex or base64) appears in the answer');
SELECT is(admin_get_participant((SELECT id FROM fx_p WHERE n = 2)) -> 'tokens', '[]'::jsonb,
          'a participant without tokens has tokens: []');
SELECT throws_ok(format('SELECT control_plane.admin_get_participant(%L)', gen_random_uuid()),
                 'CPN04', 'participant not found', 'unknown participant → CPN04 (not_found)');

-- Sessions: list by state -----------------------------------------------------------------------
CREATE TEMP TABLE fx_s (n integer PRIMARY KEY, id uuid NOT NULL, state text NOT NULL);
INSERT INTO fx_s
SELECT n, (admin_create_session(NULL, st) ->> 'sessionId')::uuid, st
  FROM unnest(ARRAY['active', 'provisioning', 'active', 'archived', 'closed', 'active',
                    'archived', 'active']) WITH ORDINALITY u (st, n);
UPDATE sessions s SET created_at = timestamptz '3000-01-01 00:00:00+00' + make_interval(secs => f.n)
  FROM fx_s f WHERE s.id = f.id;
SELECT id AS s_anchor FROM fx_s WHERE n = 1 \gset

SELECT is(admin_list_sessions(NULL, 1, :'s_anchor'),
          (SELECT jsonb_build_object('items', jsonb_build_array(jsonb_build_object(
                      'sessionId', s.id, 'state', s.state, 'minClientVersion', s.min_client_version,
                      'createdAt', s.created_at, 'updatedAt', s.updated_at)),
                  'next', s.id)
             FROM fx_s f JOIN sessions s ON s.id = f.id WHERE f.n = 2),
          'a page: {items: [{sessionId, state, minClientVersion, createdAt, updatedAt}], next}');
SELECT is((pg_temp.walk_sessions(NULL, :'s_anchor', 3)).ids,
          ARRAY(SELECT id FROM fx_s WHERE n > 1 ORDER BY n), 'all sessions after the cursor, in order');
SELECT is((pg_temp.walk_sessions('active', :'s_anchor', 2)).ids,
          ARRAY(SELECT id FROM fx_s WHERE n > 1 AND state = 'active' ORDER BY n),
          'state = active: only the active ones, from a cursor that is itself active');
SELECT is((pg_temp.walk_sessions('archived', (SELECT id FROM fx_s WHERE n = 2), 1)).ids,
          ARRAY(SELECT id FROM fx_s WHERE n > 2 AND state = 'archived' ORDER BY n),
          'state = archived from a cursor in another state (provisioning)');
SELECT is((pg_temp.walk_sessions('archived', (SELECT id FROM fx_s WHERE n = 2), 1)).sizes,
          ARRAY[1, 1], 'two archived sessions, one page each, the last with next = null');
SELECT is(admin_list_sessions('closed', 10, (SELECT id FROM fx_s WHERE n = 5)),
          '{"items": [], "next": null}'::jsonb, 'nothing of that state after the cursor');
SELECT throws_ok(format('SELECT control_plane.admin_list_sessions(%L)', st), 'CP400',
                 'state must be one of provisioning, active, archived, closed',
                 format('state %L → CP400', st))
  FROM unnest(ARRAY['', 'open', 'ACTIVE']) st;
SELECT throws_ok('SELECT control_plane.admin_list_sessions(NULL, 0)', 'CP400', NULL, 'limit 0 → CP400');
SELECT throws_ok(format('SELECT control_plane.admin_list_sessions(NULL, 10, %L)', gen_random_uuid()),
                 'CP400', 'after must be the id of a listed session', 'unknown cursor → CP400');
SELECT throws_ok(format('SELECT control_plane.admin_list_sessions(NULL, 10, %L)', :'p1'),
                 'CP400', NULL, 'a participant''s id is no session cursor');

-- One session with its members ---------------------------------------------------------------------
SELECT id AS s1 FROM fx_s WHERE n = 1 \gset
SELECT admin_put_membership(:'s1', (SELECT id FROM fx_p WHERE n = 1), 'owner', 'active') \g /dev/null
SELECT admin_put_membership(:'s1', (SELECT id FROM fx_p WHERE n = 2), 'viewer', 'pending') \g /dev/null
SELECT admin_put_membership(:'s1', (SELECT id FROM fx_p WHERE n = 3), 'collaborator', 'active') \g /dev/null
UPDATE session_memberships SET joined_at = now() - interval '1 day'
 WHERE session_id = :'s1' AND participant_id = (SELECT id FROM fx_p WHERE n = 3);
SELECT admin_raise_floor(:'s1', '2.5') \g /dev/null
SELECT admin_get_session(:'s1') AS sdetail \gset
SELECT is(:'sdetail'::jsonb - 'members',
          (SELECT jsonb_build_object('sessionId', id, 'state', state, 'minClientVersion', '2.5',
                                     'createdAt', created_at, 'updatedAt', updated_at)
             FROM sessions WHERE id = :'s1'),
          'session detail: sessionId, state, minClientVersion (the floor), createdAt, updatedAt');
SELECT is(:'sdetail'::jsonb -> 'members',
          (SELECT jsonb_agg(jsonb_build_object('participantId', m.participant_id,
                                               'displayName', p.display_name, 'role', m.role,
                                               'state', m.state, 'joinedAt', m.joined_at,
                                               'updatedAt', m.updated_at)
                            ORDER BY o.n)
             FROM session_memberships m JOIN participants p ON p.id = m.participant_id
             JOIN fx_p f ON f.id = m.participant_id
             JOIN unnest(ARRAY[3, 1, 2]) WITH ORDINALITY o (k, n) ON o.k = f.n
            WHERE m.session_id = :'s1'),
          'members: {participantId, displayName, role, state, joinedAt, updatedAt} in joining order, '
          'never-activated last');
SELECT is(admin_get_session((SELECT id FROM fx_s WHERE n = 2)) -> 'members', '[]'::jsonb,
          'a session without members has members: []');
SELECT throws_ok(format('SELECT control_plane.admin_get_session(%L)', gen_random_uuid()),
                 'CPN04', 'session not found', 'unknown session → CPN04 (not_found)');

-- The roster of any session -------------------------------------------------------------------------
SELECT admin_issue_token((SELECT id FROM fx_p WHERE n = 1)) ->> 'token' AS owner_token \gset
SELECT runtime_node_attach(sha256(convert_to(:'owner_token', 'UTF8')), :'s1',
                           (SELECT id FROM fx_p WHERE n = 1),
                           'reads-' || md5(random()::text), '2.0', '{"cpu": 1}') \g /dev/null
SELECT is(admin_session_roster_v2(:'s1')::jsonb,
          runtime_node_roster_v2(sha256(convert_to(:'owner_token', 'UTF8')), :'s1')::jsonb,
          'the admin roster is the members'' roster (readOnly below the floor included)');
SELECT is(jsonb_array_length(admin_session_roster_v2(:'s1')::jsonb -> 'nodes'), 1, 'with the node');
SELECT is(admin_session_roster(:'s1'), admin_session_roster_v2(:'s1')::jsonb,
          'the deprecated admin_session_roster is the same document, as jsonb');
SELECT is(admin_session_roster_v2((SELECT id FROM fx_s WHERE n = 2))::jsonb -> 'nodes', '[]'::jsonb,
          'a session without nodes: an empty roster');
SELECT throws_ok(format('SELECT control_plane.admin_session_roster_v2(%L)', gen_random_uuid()),
                 'CPN04', 'session not found', 'the admin may know a session does not exist → CPN04');

-- Reads are reads ------------------------------------------------------------------------------------
SELECT is((SELECT array_agg(DISTINCT provolatile::text) FROM pg_proc
            WHERE oid IN ('control_plane.admin_list_participants(integer, uuid)'::regprocedure,
                          'control_plane.admin_get_participant(uuid)'::regprocedure,
                          'control_plane.admin_list_sessions(text, integer, uuid)'::regprocedure,
                          'control_plane.admin_get_session(uuid)'::regprocedure,
                          'control_plane.admin_session_roster_v2(uuid)'::regprocedure)),
          ARRAY['s'], 'every admin read is STABLE: it cannot write');

SELECT * FROM finish();
ROLLBACK;
