-- runtime_node_roster (contract §6.6): every attachment in all five states, ordered by attached_at
-- then node_id, presence fields (null when the node never beat), readOnly against the current
-- floor, any active member may read, uniform 403, writes nothing.
BEGIN;
CREATE EXTENSION IF NOT EXISTS pgtap;
SET search_path = control_plane, public, pg_catalog;
\ir _lifecycle_fixtures.psql

SELECT plan(34);

DO $$
BEGIN
    PERFORM pg_temp.mk(x) FROM unnest(ARRAY['ann', 'bob', 'vic', 'out', 'pam', 'sue', 'rex']) x;
    PERFORM pg_temp.mks('s1');
    PERFORM pg_temp.mks('s2');
    PERFORM pg_temp.mks('empty');
    PERFORM pg_temp.member('s1', 'ann', 'runtime_contributor');
    PERFORM pg_temp.member('s2', 'ann', 'runtime_contributor');
    PERFORM pg_temp.member('s1', 'bob', 'collaborator');
    PERFORM pg_temp.member('s1', 'vic', 'viewer');
    PERFORM pg_temp.member('empty', 'vic', 'viewer');
    PERFORM pg_temp.member('s1', 'pam', 'owner', 'pending');
    PERFORM pg_temp.member('s1', 'sue', 'owner', 'suspended');
    PERFORM pg_temp.member('s1', 'rex', 'owner', 'revoked');
    PERFORM pg_temp.member('s2', 'out', 'owner');
    -- Same attached_at (one transaction) → ordered by node id: e-reg < f-onl < g-deg < h-off < i-rvk
    PERFORM pg_temp.attach('ann', 's1', 'e-reg', '1.0', '{"k": "reg"}');
    PERFORM pg_temp.attach('bob', 's1', 'f-onl', '2.0');
    PERFORM pg_temp.declare('bob', 'f-onl', '{"k": "onl"}');
    PERFORM pg_temp.attach('ann', 's1', 'g-deg', '3.0');
    PERFORM pg_temp.caps('ann', 'g-deg', '{"k": "deg"}', 'degraded');
    PERFORM pg_temp.attach('ann', 's1', 'h-off');
    PERFORM pg_temp.beat('ann', 'h-off', 'online');
    PERFORM pg_temp.detach('ann', 'h-off');
    PERFORM pg_temp.attach('ann', 's1', 'i-rvk');
    PERFORM pg_temp.admin_revoke('s1', 'i-rvk');
    PERFORM pg_temp.beat('bob', 'f-onl', 'online');
    PERFORM pg_temp.beat('ann', 'g-deg', 'degraded');
    -- An older slot sorts first although its node id sorts last.
    INSERT INTO runtime_node_attachments (session_id, participant_id, node_id, client_version,
                                          state, attached_at)
    VALUES (pg_temp.s('s1'), pg_temp.p('ann'), pg_temp.n('z-old'), '1.0', 'offline',
            now() - interval '1 day');
    -- Offline here, active in s2 (beating there).
    PERFORM pg_temp.attach('ann', 's1', 'j-away');
    PERFORM pg_temp.beat('ann', 'j-away', 'online');
    PERFORM pg_temp.detach('ann', 'j-away');
    PERFORM pg_temp.attach('ann', 's2', 'j-away');
    PERFORM pg_temp.beat('ann', 'j-away', 'degraded');
END $$;

CREATE TEMP TABLE r AS SELECT control_plane.runtime_node_roster_v2(pg_temp.d('vic'), pg_temp.s('s1'))::jsonb AS r;  -- json on the wire
CREATE TEMP TABLE nodes AS
SELECT ord, e FROM r, jsonb_array_elements(r -> 'nodes') WITH ORDINALITY AS x (e, ord);

SELECT is((SELECT array_agg(k ORDER BY k) FROM r, jsonb_object_keys(r) k), ARRAY['nodes', 'revision'],
          'the roster is {revision, nodes: [...]}');
SELECT is((SELECT array_agg(e ->> 'nodeId' ORDER BY ord) FROM nodes),
          ARRAY[pg_temp.n('z-old'), pg_temp.n('e-reg'), pg_temp.n('f-onl'), pg_temp.n('g-deg'),
                pg_temp.n('h-off'), pg_temp.n('i-rvk'), pg_temp.n('j-away')],
          'every slot of the session, ordered by attachedAt, then nodeId');
SELECT is((SELECT array_agg(e ->> 'state' ORDER BY ord) FROM nodes),
          ARRAY['offline', 'registering', 'online', 'degraded', 'offline', 'revoked', 'offline'],
          'all five slot states are listed');
SELECT is((SELECT array_agg(DISTINCT k ORDER BY k) FROM nodes, jsonb_object_keys(e) k),
          ARRAY['attachedAt', 'attachmentId', 'capabilities', 'clientVersion', 'healthState',
                'lastHeartbeatAt', 'nodeId', 'participantId', 'readOnly', 'state'],
          'each entry has exactly the ten camelCase keys');
SELECT is((SELECT count(*) FROM nodes WHERE (SELECT count(*) FROM jsonb_object_keys(e)) = 10),
          7::bigint, 'on every entry');

-- Values of one entry against its row.
SELECT is((SELECT e FROM nodes WHERE e ->> 'nodeId' = pg_temp.n('f-onl')),
          jsonb_build_object('attachmentId', (pg_temp.slot('s1', 'f-onl')).id,
                             'nodeId', pg_temp.n('f-onl'),
                             'participantId', pg_temp.p('bob'),
                             'state', 'online',
                             'healthState', 'online',
                             'lastHeartbeatAt', now(),
                             'readOnly', false,
                             'capabilities', '{"k": "onl"}'::jsonb,
                             'clientVersion', '2.0',
                             'attachedAt', (pg_temp.slot('s1', 'f-onl')).attached_at),
          'an online, beating node: every field');
SELECT is((SELECT e -> 'healthState' FROM nodes WHERE e ->> 'nodeId' = pg_temp.n('e-reg')),
          'null'::jsonb, 'never beat → healthState null');
SELECT is((SELECT e -> 'lastHeartbeatAt' FROM nodes WHERE e ->> 'nodeId' = pg_temp.n('e-reg')),
          'null'::jsonb, 'never beat → lastHeartbeatAt null');
SELECT is((SELECT e ->> 'healthState' FROM nodes WHERE e ->> 'nodeId' = pg_temp.n('g-deg')),
          'degraded', 'the reported degraded health');
SELECT is((SELECT e ->> 'healthState' FROM nodes WHERE e ->> 'nodeId' = pg_temp.n('h-off')),
          'offline', 'a detached node shows its presence offline');
SELECT is((SELECT e -> 'healthState' FROM nodes WHERE e ->> 'nodeId' = pg_temp.n('j-away')),
          'null'::jsonb,
          'an offline slot whose node is active in another session shows no presence from there');
SELECT is((SELECT e -> 'lastHeartbeatAt' FROM nodes WHERE e ->> 'nodeId' = pg_temp.n('j-away')),
          'null'::jsonb, 'nor its last heartbeat');
SELECT is((SELECT e -> 'capabilities' FROM nodes WHERE e ->> 'nodeId' = pg_temp.n('e-reg')),
          '{"k": "reg"}'::jsonb, 'capabilities as stored');
SELECT is((SELECT array_agg(e -> 'readOnly' ORDER BY ord) FROM nodes),
          array_fill('false'::jsonb, ARRAY[7]), 'no floor: every entry is read-write');

-- readOnly against the current floor ----------------------------------------------------------
SELECT admin_raise_floor(pg_temp.s('s1'), '2.0') \g /dev/null
SELECT is((SELECT array_agg((e ->> 'nodeId') || '=' || (e ->> 'readOnly') ORDER BY ord)
             FROM jsonb_array_elements(control_plane.runtime_node_roster_v2(pg_temp.d('ann'), pg_temp.s('s1'))::jsonb -> 'nodes')
                  WITH ORDINALITY AS x (e, ord)
            WHERE e ->> 'nodeId' IN (pg_temp.n('e-reg'), pg_temp.n('f-onl'), pg_temp.n('g-deg'))),
          ARRAY[pg_temp.n('e-reg') || '=true', pg_temp.n('f-onl') || '=false',
                pg_temp.n('g-deg') || '=false'],
          'after raising the floor to 2.0: 1.0 is read-only, 2.0 and 3.0 are not');
SELECT pg_temp.fp() AS fp_before \gset

-- Who may read ---------------------------------------------------------------------------------
SELECT is(jsonb_array_length(control_plane.runtime_node_roster_v2(pg_temp.d(who), pg_temp.s('s1'))::jsonb -> 'nodes'),
          7, format('an active %s reads the roster', why))
  FROM (VALUES ('ann', 'runtime_contributor'), ('bob', 'collaborator'), ('vic', 'viewer')) v (who, why);
SELECT is(control_plane.runtime_node_roster_v2(pg_temp.d('vic'), pg_temp.s('empty'))::jsonb -> 'nodes', '[]'::jsonb,
          'a session without nodes: an empty list');
SELECT throws_ok(format($$SELECT control_plane.runtime_node_roster_v2(%L, %L)$$, pg_temp.d(who), sid),
                 'CP403', 'permission denied', format('403: %s', why))
  FROM (VALUES ('out', pg_temp.s('s1'), 'not a member'),
               ('pam', pg_temp.s('s1'), 'pending membership'),
               ('sue', pg_temp.s('s1'), 'suspended membership'),
               ('rex', pg_temp.s('s1'), 'revoked membership'),
               ('ann', gen_random_uuid(), 'unknown session')) v (who, sid, why);
SELECT throws_ok(format($$SELECT control_plane.runtime_node_roster_v2(%L, %L)$$,
                        sha256('nobody'::bytea), pg_temp.s('s1')), 'CP401', NULL, '401: unknown token');
SELECT is(pg_temp.fp(), :'fp_before', 'reading the roster wrote nothing');

-- The stored rendering (roster_entry, kept by a trigger) -------------------------------------------
-- A DBA's direct UPDATE re-renders the entry like a function's write does.
UPDATE runtime_node_attachments SET capabilities = '{"k": "by hand"}'
 WHERE node_id = pg_temp.n('e-reg');
SELECT is((SELECT e -> 'capabilities' FROM jsonb_array_elements(
             control_plane.runtime_node_roster_v2(pg_temp.d('vic'), pg_temp.s('s1'))::jsonb -> 'nodes') e
            WHERE e ->> 'nodeId' = pg_temp.n('e-reg')),
          '{"k": "by hand"}'::jsonb, 'an UPDATE outside the API shows in the next roster');
-- Node ids may hold quotes and backslashes: escaped, the document stays valid JSON.
INSERT INTO runtime_node_attachments (session_id, participant_id, node_id, client_version, state)
VALUES (pg_temp.s('empty'), pg_temp.p('vic'), 'say "hi" \ bye', '1.0', 'offline');
SELECT is(control_plane.runtime_node_roster_v2(pg_temp.d('vic'), pg_temp.s('empty'))::jsonb
            #>> '{nodes,0,nodeId}',
          'say "hi" \ bye', 'a node id with quotes and a backslash round-trips');
-- One rendering of time whoever reads: UTC, stored fields and read-time fields alike.
SET LOCAL timezone = 'Asia/Kolkata';
CREATE TEMP TABLE tz AS
SELECT e FROM jsonb_array_elements(
    control_plane.runtime_node_roster_v2(pg_temp.d('vic'), pg_temp.s('s1'))::jsonb -> 'nodes') e
 WHERE e ->> 'nodeId' = pg_temp.n('f-onl');
SELECT ok((SELECT (e ->> 'attachedAt') LIKE '%+00:00' AND (e ->> 'lastHeartbeatAt') LIKE '%+00:00' FROM tz),
          'timestamps are rendered in UTC under another session TimeZone');
SELECT is((SELECT (e ->> 'attachedAt')::timestamptz FROM tz),
          (SELECT attached_at FROM runtime_node_attachments WHERE node_id = pg_temp.n('f-onl')),
          'attachedAt is the stored instant');
SELECT is((SELECT (e ->> 'lastHeartbeatAt')::timestamptz FROM tz),
          (SELECT last_heartbeat_at FROM runtime_node_presence WHERE node_id = pg_temp.n('f-onl')),
          'lastHeartbeatAt is the stored instant');
SELECT is(control_plane.runtime_node_roster(pg_temp.d('vic'), pg_temp.s('s1'))::text,
          control_plane.runtime_node_roster_v2(pg_temp.d('vic'), pg_temp.s('s1')),
          'the deprecated runtime_node_roster is the same document, as json');
SELECT is(json_timestamp_utc(NULL), NULL, 'json_timestamp_utc: NULL stays NULL');
SET LOCAL timezone = 'UTC';
SELECT is(ARRAY(SELECT json_timestamp_utc(t) FROM unnest(ARRAY[now(), '2026-01-01 00:00:00+00',
                  '1999-12-31 23:59:59.999999-05', '2030-06-30 12:00:00.5+14']::timestamptz[]) t),
          ARRAY(SELECT to_json(t)::text FROM unnest(ARRAY[now(), '2026-01-01 00:00:00+00',
                  '1999-12-31 23:59:59.999999-05', '2030-06-30 12:00:00.5+14']::timestamptz[]) t),
          'json_timestamp_utc is exactly to_json(timestamptz) under TimeZone UTC');

SELECT * FROM finish();
ROLLBACK;
