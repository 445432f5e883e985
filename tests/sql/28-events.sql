-- runtime_node_events (contract §9, §10): every event-writing rule — one event per changing
-- operation, each kind, each actor, both axes before/after, reasons stored, capabilities on
-- attached/declared/capabilities_updated, no event on refusals and no-ops, presence events under
-- the session of the active attachment; the read functions (shape, cursor, limit, 403, 410), the
-- roster's revision, retention and its job, advertised timing, privileges.
BEGIN;
CREATE EXTENSION IF NOT EXISTS pgtap;
SET search_path = control_plane, public, pg_catalog;
\ir _lifecycle_fixtures.psql

SELECT plan(150);

-- The fixture's events, newest last, and the newest one of a node.
CREATE FUNCTION pg_temp.evs() RETURNS SETOF control_plane.runtime_node_events
    LANGUAGE sql STABLE
AS $$ SELECT e.* FROM control_plane.runtime_node_events e
       WHERE e.node_id LIKE '%-' || (SELECT v FROM fx_suffix) ORDER BY e.id $$;
CREATE FUNCTION pg_temp.n_events() RETURNS bigint
    LANGUAGE sql STABLE
    RETURN (SELECT count(*) FROM control_plane.runtime_node_events e
             WHERE e.node_id LIKE '%-' || (SELECT v FROM fx_suffix));
CREATE FUNCTION pg_temp.last(p_node text) RETURNS control_plane.runtime_node_events
    LANGUAGE sql STABLE
    RETURN (SELECT e FROM control_plane.runtime_node_events e
             WHERE e.node_id = pg_temp.n(p_node) ORDER BY e.id DESC LIMIT 1);
-- (kind, previous_state, state, previous_health_state, health_state, actor) of an event.
CREATE FUNCTION pg_temp.axes(e control_plane.runtime_node_events) RETURNS text[]
    LANGUAGE sql IMMUTABLE
    RETURN ARRAY[e.kind, e.previous_state, e.state, e.previous_health_state, e.health_state,
                 e.actor];

DO $$
BEGIN
    PERFORM pg_temp.mk(x) FROM unnest(ARRAY['ann', 'bob', 'vic', 'own', 'out', 'pam']) x;
    PERFORM pg_temp.mks('s1');
    PERFORM pg_temp.mks('s2');
    PERFORM pg_temp.mks('quiet');
    PERFORM pg_temp.member('s1', 'ann', 'runtime_contributor');
    PERFORM pg_temp.member('s2', 'ann', 'runtime_contributor');
    PERFORM pg_temp.member('s1', 'bob', 'collaborator');
    PERFORM pg_temp.member('s1', 'vic', 'viewer');
    PERFORM pg_temp.member('s1', 'own', 'owner');
    PERFORM pg_temp.member('s1', 'pam', 'collaborator', 'pending');
    PERFORM pg_temp.member('s2', 'out', 'owner');
    PERFORM pg_temp.member('quiet', 'vic', 'viewer');
END $$;

-- attached ------------------------------------------------------------------------------------
SELECT pg_temp.attach('ann', 's1', 'n1', '1.0', '{"cpu": 1}') \g /dev/null
SELECT is(pg_temp.n_events(), 1::bigint, 'a new attach writes one event');
SELECT is(pg_temp.axes(pg_temp.last('n1')),
          ARRAY['attached', NULL, 'registering', NULL, NULL, 'daemon'],
          'attached: no previous state, registering, no presence yet, actor daemon');
SELECT is((pg_temp.last('n1')).actor_participant_id, pg_temp.p('ann'), 'actor_participant_id is the owner');
SELECT is((pg_temp.last('n1')).capabilities, '{"cpu": 1}'::jsonb, 'attached carries the capabilities');
SELECT is((pg_temp.last('n1')).session_id, pg_temp.s('s1'), 'under the session');
SELECT is((pg_temp.last('n1')).attachment_id, (pg_temp.slot('s1', 'n1')).id, 'with the attachment id');
SELECT is((pg_temp.last('n1')).at, now(), 'at is the database clock (transaction time)');
SELECT is((pg_temp.last('n1')).reason, NULL, 'no reason');

SELECT pg_temp.fp() AS fp0 \gset
SELECT pg_temp.attach('ann', 's1', 'n1', '1.0', '{"cpu": 1}') \g /dev/null
SELECT is(pg_temp.n_events(), 1::bigint,
          're-attaching a registering slot with the same map and version writes no event');
SELECT pg_temp.attach('ann', 's1', 'n1', '1.1', '{"cpu": 1}') \g /dev/null
SELECT is(pg_temp.axes(pg_temp.last('n1')),
          ARRAY['attached', 'registering', 'registering', NULL, NULL, 'daemon'],
          're-handshake with a new client version: attached, registering → registering');
SELECT is(pg_temp.n_events(), 2::bigint, 'one more event');

-- Refused attaches write nothing (fp covers the events table).
SELECT pg_temp.fp() AS fp1 \gset
SELECT throws_ok($$SELECT pg_temp.attach('ann', 's2', 'n1')$$, 'CPC01', NULL,
                 'attach conflict (active in another session)');
SELECT throws_ok($$SELECT pg_temp.attach('bob', 's1', 'n1')$$, 'CPC01', NULL,
                 'attach conflict (another owner)');
SELECT throws_ok($$SELECT pg_temp.attach('vic', 's1', 'n9')$$, 'CP403', 'permission denied',
                 'viewer may not attach');
SELECT is(pg_temp.fp(), :'fp1', 'refused attaches write no event');

-- declared ------------------------------------------------------------------------------------
SELECT pg_temp.declare('ann', 'n1', '{"cpu": 2}') \g /dev/null
SELECT is(pg_temp.axes(pg_temp.last('n1')),
          ARRAY['declared', 'registering', 'online', NULL, NULL, 'daemon'], 'declared: registering → online');
SELECT is((pg_temp.last('n1')).capabilities, '{"cpu": 2}'::jsonb, 'declared carries the capabilities');
SELECT pg_temp.fp() AS fp2 \gset
SELECT pg_temp.declare('ann', 'n1', '{"cpu": 2}') \g /dev/null
SELECT is(pg_temp.n_events(), 3::bigint, 'declaring the same map again while online: no event');
SELECT pg_temp.declare('ann', 'n1', '{"cpu": 3}') \g /dev/null
SELECT is(pg_temp.axes(pg_temp.last('n1')),
          ARRAY['declared', 'online', 'online', NULL, NULL, 'daemon'], 'a new map while online: declared');

-- health_changed by heartbeats ----------------------------------------------------------------
SELECT pg_temp.beat('ann', 'n1', 'online') \g /dev/null
SELECT is(pg_temp.axes(pg_temp.last('n1')),
          ARRAY['health_changed', 'online', 'online', NULL, 'online', 'daemon'],
          'the first beat: health_changed, no previous health, slot axis unchanged');
SELECT is((pg_temp.last('n1')).capabilities, NULL, 'health_changed carries no capabilities');
SELECT pg_temp.n_events() AS n_steady \gset
SELECT pg_temp.beat('ann', 'n1', 'online') \g /dev/null
SELECT pg_temp.beat('ann', 'n1', 'online') \g /dev/null
SELECT is(pg_temp.n_events(), :'n_steady'::bigint, 'steady beats write no event');
SELECT pg_temp.beat('ann', 'n1', 'degraded') \g /dev/null
SELECT is(pg_temp.axes(pg_temp.last('n1')),
          ARRAY['health_changed', 'online', 'online', 'online', 'degraded', 'daemon'],
          'a new self-report: health_changed online → degraded');
SELECT pg_temp.beat('ann', 'n1', 'degraded') \g /dev/null
SELECT is(pg_temp.n_events(), :'n_steady'::bigint + 1, 'then steady again');
-- A batch with the node twice: the last item wins, one event.
SELECT control_plane.runtime_node_heartbeat_batch(
           ARRAY[pg_temp.d('ann'), pg_temp.d('ann')], ARRAY[pg_temp.n('n1'), pg_temp.n('n1')],
           ARRAY['degraded', 'online']) \g /dev/null
SELECT is(pg_temp.n_events(), :'n_steady'::bigint + 2, 'a node twice in one batch: one event');
SELECT is(pg_temp.axes(pg_temp.last('n1')),
          ARRAY['health_changed', 'online', 'online', 'degraded', 'online', 'daemon'],
          'the last item of the batch wins');
SELECT pg_temp.fp() AS fp3 \gset
SELECT throws_ok($$SELECT pg_temp.beat('bob', 'n1', 'degraded')$$, 'CP403', 'permission denied',
                 'a beat by someone else is refused');
SELECT is(pg_temp.fp(), :'fp3', 'a refused beat writes no event');

-- capabilities_updated / state_changed ----------------------------------------------------------
SELECT pg_temp.caps('ann', 'n1', '{"cpu": 4}') \g /dev/null
SELECT is(pg_temp.axes(pg_temp.last('n1')),
          ARRAY['capabilities_updated', 'online', 'online', 'online', 'online', 'daemon'],
          'a new map: capabilities_updated (presence carried unchanged on both sides)');
SELECT is((pg_temp.last('n1')).capabilities, '{"cpu": 4}'::jsonb, 'with the new map');
SELECT control_plane.runtime_node_update_capabilities(pg_temp.d('ann'), pg_temp.n('n1'),
           '{"cpu": 4}', 'degraded', 'disk almost full') \g /dev/null
SELECT is(pg_temp.axes(pg_temp.last('n1')),
          ARRAY['state_changed', 'online', 'degraded', 'online', 'online', 'daemon'],
          'only the state moved: state_changed online → degraded');
SELECT is((pg_temp.last('n1')).reason, 'disk almost full', 'healthChanges.reason is stored');
SELECT is((pg_temp.last('n1')).capabilities, NULL, 'state_changed carries no capabilities');
SELECT pg_temp.n_events() AS n_caps \gset
SELECT pg_temp.caps('ann', 'n1', '{"cpu": 4}') \g /dev/null
SELECT pg_temp.caps('ann', 'n1', '{"cpu": 4}', 'degraded') \g /dev/null
SELECT is(pg_temp.n_events(), :'n_caps'::bigint, 'same map, same (or no) state: no event');
SELECT control_plane.runtime_node_update_capabilities(pg_temp.d('ann'), pg_temp.n('n1'),
           '{"cpu": 5}', 'online', 'recovered') \g /dev/null
SELECT is(pg_temp.axes(pg_temp.last('n1')),
          ARRAY['capabilities_updated', 'degraded', 'online', 'online', 'online', 'daemon'],
          'map and state: one capabilities_updated event, degraded → online');
SELECT is((pg_temp.last('n1')).reason, 'recovered', 'with its reason');
-- Refusals: registering + online (CPC03), floor (CPC04), someone else (CP403), bad reason.
SELECT pg_temp.attach('ann', 's1', 'r1') \g /dev/null
UPDATE sessions SET min_client_version = '2.0' WHERE id = pg_temp.s('s2');
SELECT pg_temp.attach('ann', 's2', 'old', '1.0') \g /dev/null
SELECT pg_temp.fp() AS fp4 \gset
SELECT throws_ok($$SELECT pg_temp.caps('ann', 'r1', '{"x": 1}', 'online')$$, 'CPC03', NULL,
                 'registering → online by capability update is refused');
SELECT throws_ok($$SELECT pg_temp.caps('ann', 'old', '{"x": 1}')$$, 'CPC04', NULL,
                 'below the floor: capability update refused');
SELECT throws_ok($$SELECT pg_temp.declare('ann', 'old', '{"x": 1}')$$, 'CPC04', NULL,
                 'below the floor: declaration refused');
SELECT throws_ok($$SELECT pg_temp.caps('bob', 'n1', '{"x": 1}')$$, 'CP403', 'permission denied',
                 'someone else''s node');
SELECT throws_ok(format($$SELECT control_plane.runtime_node_update_capabilities(%L, %L, '{}', 'degraded', '  ')$$,
                        pg_temp.d('ann'), pg_temp.n('n1')), 'CP400', NULL, 'a blank reason');
SELECT is(pg_temp.fp(), :'fp4', 'refused capability updates and declarations write no event');

-- health_changed by the sweep, and recovery -----------------------------------------------------
-- Isolation as in 40-sweep-rules: other presence rows hidden, no stall hold, no gap.
DELETE FROM runtime_node_presence WHERE node_id NOT LIKE '%-' || (SELECT v FROM fx_suffix);
UPDATE settings SET stall_min_nodes = 1000000;
UPDATE sweep_state SET last_finished_at = now() - interval '5 seconds', mode = 'normal',
                       resumed_at = NULL, stall_since = NULL;
-- ghost: a presence row without any active attachment (demoted, but no session to record it in).
INSERT INTO runtime_node_presence (node_id, last_heartbeat_at, health_state)
VALUES (pg_temp.n('ghost'), now() - interval '45 seconds', 'online');
SELECT pg_temp.beat('ann', 'r1', 'online') \g /dev/null
UPDATE runtime_node_presence SET last_heartbeat_at = now() - interval '45 seconds'
 WHERE node_id IN (pg_temp.n('n1'), pg_temp.n('r1'));
SELECT pg_temp.n_events() AS n_sweep \gset
SELECT set_eq($$SELECT node_id, health_state FROM control_plane.runtime_node_sweep(now())$$,
              format($$VALUES (%L, 'degraded'), (%L, 'degraded'), (%L, 'degraded')$$,
                     pg_temp.n('n1'), pg_temp.n('r1'), pg_temp.n('ghost')),
              'the sweep demotes three nodes');
SELECT is(pg_temp.n_events(), :'n_sweep'::bigint + 2, 'two events: the ghost has no active attachment');
SELECT is(pg_temp.axes(pg_temp.last('n1')),
          ARRAY['health_changed', 'online', 'online', 'online', 'degraded', 'sweep'],
          'sweep: health_changed online → degraded, slot axis carried');
SELECT is((pg_temp.last('n1')).actor_participant_id, NULL, 'the sweep has no participant');
SELECT is(pg_temp.axes(pg_temp.last('r1')),
          ARRAY['health_changed', 'registering', 'registering', 'online', 'degraded', 'sweep'],
          'a registering slot''s node is demoted too');
SELECT ok(((pg_temp.last('n1')).id < (pg_temp.last('r1')).id)
              = (pg_temp.n('n1') < pg_temp.n('r1')),
          'one sweep''s events of a session ascend in node order');
UPDATE runtime_node_presence SET last_heartbeat_at = now() - interval '90 seconds'
 WHERE node_id = pg_temp.n('n1');
SELECT is((SELECT count(*) FROM control_plane.runtime_node_sweep(now())), 1::bigint,
          'older than offline_after: demoted again');
SELECT is(pg_temp.axes(pg_temp.last('n1')),
          ARRAY['health_changed', 'online', 'online', 'degraded', 'offline', 'sweep'],
          'sweep: degraded → offline');
SELECT pg_temp.n_events() AS n_idem \gset
SELECT is((SELECT count(*) FROM control_plane.runtime_node_sweep(now())), 0::bigint,
          'a sweep with nothing to do');
SELECT is(pg_temp.n_events(), :'n_idem'::bigint, 'writes no event');
SELECT pg_temp.beat('ann', 'n1', 'online') \g /dev/null
SELECT is(pg_temp.axes(pg_temp.last('n1')),
          ARRAY['health_changed', 'online', 'online', 'offline', 'online', 'daemon'],
          'recovery from a sweep demotion: health_changed offline → online');

-- detached --------------------------------------------------------------------------------------
SELECT pg_temp.fp() AS fp5 \gset
SELECT throws_ok($$SELECT pg_temp.detach('bob', 'n1')$$, 'CP403', 'permission denied',
                 'a member who is not the owner may not detach');
SELECT lives_ok($$SELECT pg_temp.detach('out', 'n1')$$, 'a stranger: a no-op');
SELECT is(pg_temp.fp(), :'fp5', 'neither writes an event');
SELECT control_plane.runtime_node_detach(pg_temp.d('ann'), pg_temp.n('n1'), 'maintenance') \g /dev/null
SELECT is(pg_temp.axes(pg_temp.last('n1')),
          ARRAY['detached', 'online', 'offline', 'online', 'offline', 'daemon'],
          'detached: one event with both axes taken offline');
SELECT is((pg_temp.last('n1')).reason, 'maintenance', 'the detach reason is stored');
SELECT pg_temp.fp() AS fp6 \gset
SELECT pg_temp.detach('ann', 'n1') \g /dev/null
SELECT is(pg_temp.fp(), :'fp6', 'detaching again: no-op, no event');
SELECT throws_ok(format($$SELECT control_plane.runtime_node_detach(%L, %L, '')$$,
                        pg_temp.d('ann'), pg_temp.n('r1')), 'CP400', NULL, 'an empty detach reason');
SELECT is(pg_temp.fp(), :'fp6', 'a refused detach writes no event');
SELECT pg_temp.attach('ann', 's1', 'quiet1') \g /dev/null
SELECT pg_temp.detach('ann', 'quiet1') \g /dev/null
SELECT is(pg_temp.axes(pg_temp.last('quiet1')),
          ARRAY['detached', 'registering', 'offline', NULL, NULL, 'daemon'],
          'a node that never beat: detached with no presence on either side');

-- revoked: owner, daemon, admin ------------------------------------------------------------------
SELECT pg_temp.fp() AS fp7 \gset
SELECT throws_ok($$SELECT pg_temp.revoke('bob', 's1', 'r1')$$, 'CP403', 'permission denied',
                 'a collaborator may not revoke');
SELECT throws_ok($$SELECT pg_temp.revoke('own', 's1', 'nope')$$, 'CP404', NULL, 'no such node');
SELECT is(pg_temp.fp(), :'fp7', 'refused revokes write no event');
SELECT control_plane.runtime_node_revoke(pg_temp.d('own'), pg_temp.s('s1'), pg_temp.n('r1'),
                                         'compromised') \g /dev/null
SELECT is(pg_temp.axes(pg_temp.last('r1')),
          ARRAY['revoked', 'registering', 'revoked', 'degraded', 'offline', 'owner'],
          'a session owner revokes another''s node: actor owner, presence taken offline');
SELECT is((pg_temp.last('r1')).actor_participant_id, pg_temp.p('own'), 'the owner is the actor');
SELECT is((pg_temp.last('r1')).reason, 'compromised', 'the revoke reason is stored');
SELECT pg_temp.fp() AS fp8 \gset
SELECT pg_temp.revoke('own', 's1', 'r1') \g /dev/null
SELECT is(pg_temp.fp(), :'fp8', 'revoking again: no-op, no event');
SELECT pg_temp.admin_revoke('s1', 'n1') \g /dev/null
SELECT is(pg_temp.axes(pg_temp.last('n1')),
          ARRAY['revoked', 'offline', 'revoked', 'offline', 'offline', 'admin'],
          'admin revokes an offline slot: actor admin');
SELECT is((pg_temp.last('n1')).actor_participant_id, NULL, 'the admin has no participant');
SELECT pg_temp.attach('own', 's1', 'mine') \g /dev/null
SELECT pg_temp.revoke('own', 's1', 'mine') \g /dev/null
SELECT is((pg_temp.last('mine')).actor, 'daemon', 'an owner revoking their own node acts as its daemon');
-- Presence is per node: an inactive slot's event never shows the node's life in another session.
SELECT pg_temp.attach('ann', 's1', 'mover') \g /dev/null
SELECT pg_temp.detach('ann', 'mover') \g /dev/null
SELECT pg_temp.attach('ann', 's2', 'mover', '2.0') \g /dev/null
SELECT pg_temp.beat('ann', 'mover', 'online') \g /dev/null
SELECT is((SELECT e.session_id FROM runtime_node_events e WHERE e.node_id = pg_temp.n('mover')
            AND e.kind = 'health_changed'), pg_temp.s('s2'),
          'a presence change is recorded under the session of the active attachment');
SELECT pg_temp.revoke('own', 's1', 'mover') \g /dev/null
SELECT is(pg_temp.axes(pg_temp.last('mover')),
          ARRAY['revoked', 'offline', 'revoked', NULL, NULL, 'owner'],
          'revoking the inactive slot of a node active elsewhere: no presence in its event');
SELECT is(pg_temp.health('mover'), 'online', 'and the node''s presence is untouched');

-- Every event satisfies the table's rules ---------------------------------------------------------
SELECT is((SELECT count(*) FROM pg_temp.evs() e
            WHERE (e.capabilities IS NOT NULL) <> (e.kind IN ('attached', 'declared', 'capabilities_updated'))),
          0::bigint, 'capabilities exactly on attached, declared, capabilities_updated');
SELECT is((SELECT array_agg(DISTINCT e.kind ORDER BY e.kind) FROM pg_temp.evs() e),
          ARRAY['attached', 'capabilities_updated', 'declared', 'detached', 'health_changed',
                'revoked', 'state_changed'], 'this file saw every kind');
SELECT is((SELECT array_agg(DISTINCT e.actor ORDER BY e.actor) FROM pg_temp.evs() e),
          ARRAY['admin', 'daemon', 'owner', 'sweep'], 'and every actor');
SELECT throws_ok($$INSERT INTO runtime_node_events (session_id, node_id, attachment_id, kind, state, previous_state, actor)
                   VALUES (gen_random_uuid(), 'x', gen_random_uuid(), 'detached', 'offline', 'online', 'daemon')$$,
                 '23514', NULL, 'a daemon/owner event needs its participant');
SELECT throws_ok($$INSERT INTO runtime_node_events (session_id, node_id, attachment_id, kind, state, previous_state, actor, capabilities)
                   VALUES (gen_random_uuid(), 'x', gen_random_uuid(), 'detached', 'offline', 'online', 'sweep', '{}')$$,
                 '23514', NULL, 'capabilities only on the kinds that carry them');

-- Reading: runtime_node_events_read ----------------------------------------------------------------
CREATE TEMP TABLE page AS
SELECT control_plane.runtime_node_events_read_v2(pg_temp.d('vic'), pg_temp.s('s1'), NULL, 1000)::jsonb AS r;
SELECT is((SELECT array_agg(k ORDER BY k) FROM page, jsonb_object_keys(r) k), ARRAY['events', 'next'],
          'a page is {events, next}');
SELECT is((SELECT array_agg(k ORDER BY k) FROM page, jsonb_object_keys(r -> 'events' -> 0) k),
          ARRAY['actor', 'actorParticipantId', 'at', 'attachmentId', 'capabilities', 'healthState',
                'id', 'kind', 'nodeId', 'previousHealthState', 'previousState', 'reason',
                'sessionId', 'state'], 'each event has the fourteen camelCase keys');
SELECT is((SELECT array_agg((e ->> 'id')::bigint ORDER BY o) FROM page,
                  jsonb_array_elements(r -> 'events') WITH ORDINALITY x (e, o)),
          (SELECT array_agg(e.id ORDER BY e.id) FROM runtime_node_events e WHERE e.session_id = pg_temp.s('s1')),
          'a viewer reads every event of the session, in id order');
SELECT is((SELECT r -> 'events' -> 0 FROM page),
          (SELECT jsonb_build_object('id', e.id, 'at', e.at, 'sessionId', e.session_id,
                      'nodeId', e.node_id, 'attachmentId', e.attachment_id, 'kind', e.kind,
                      'state', e.state, 'previousState', null, 'healthState', null,
                      'previousHealthState', null, 'actor', 'daemon',
                      'actorParticipantId', e.actor_participant_id, 'reason', null,
                      'capabilities', e.capabilities)
             FROM runtime_node_events e WHERE e.session_id = pg_temp.s('s1') ORDER BY e.id LIMIT 1),
          'absent values are JSON null');
SELECT ok((SELECT (r ->> 'next')::bigint FROM page) >= (SELECT max(e.id) FROM runtime_node_events e WHERE e.session_id = pg_temp.s('s1')),
          'next is at least the last event returned');
SELECT (SELECT (e ->> 'id')::bigint FROM page, jsonb_array_elements(r -> 'events') WITH ORDINALITY x (e, o) WHERE o = 3) AS third \gset
CREATE TEMP TABLE page2 AS
SELECT control_plane.runtime_node_events_read_v2(pg_temp.d('ann'), pg_temp.s('s1'), :third, 2)::jsonb AS r;
SELECT is((SELECT jsonb_array_length(r -> 'events') FROM page2), 2, 'limit caps the page');
SELECT is((SELECT (r -> 'events' -> 0 ->> 'id')::bigint FROM page2),
          (SELECT min(e.id) FROM runtime_node_events e WHERE e.session_id = pg_temp.s('s1') AND e.id > :third),
          'after is exclusive');
SELECT is((SELECT (r ->> 'next')::bigint FROM page2), (SELECT (r -> 'events' -> 1 ->> 'id')::bigint FROM page2),
          'a full page: next is its last id');
SELECT is(control_plane.runtime_node_events_read_v2(pg_temp.d('ann'), pg_temp.s('s2'), NULL, 1000)::jsonb -> 'events' -> 0 ->> 'sessionId',
          pg_temp.s('s2')::text, 'only the asked session''s events');
SELECT is((SELECT count(*) FROM jsonb_array_elements(control_plane.runtime_node_events_read_v2(
               pg_temp.d('ann'), pg_temp.s('s2'), NULL, 1000)::jsonb -> 'events') e
            WHERE e ->> 'sessionId' <> pg_temp.s('s2')::text), 0::bigint, 'never another session''s');
SELECT is(control_plane.runtime_node_events_read_v2(pg_temp.d('vic'), pg_temp.s('quiet'), NULL, 10)::jsonb,
          jsonb_build_object('events', '[]'::jsonb, 'next', runtime_node_events_revision()),
          'a session without events: empty, next is the current revision');
SELECT is(control_plane.runtime_node_events_read_v2(pg_temp.d('vic'), pg_temp.s('quiet'), 10000000000, 10)::jsonb -> 'next',
          '10000000000'::jsonb, 'a cursor ahead of everything stays where it is');
SELECT pg_temp.fp() AS fp9 \gset
SELECT throws_ok(format($$SELECT control_plane.runtime_node_events_read_v2(%L, %L, NULL, 10)$$, pg_temp.d(who), sid),
                 'CP403', 'permission denied', format('403: %s', why))
  FROM (VALUES ('out', pg_temp.s('s1'), 'not a member'),
               ('pam', pg_temp.s('s1'), 'pending membership'),
               ('ann', gen_random_uuid(), 'unknown session')) v (who, sid, why);
SELECT throws_ok(format($$SELECT control_plane.runtime_node_events_read_v2(%L, %L, NULL, 10)$$,
                        sha256('nobody'::bytea), pg_temp.s('s1')), 'CP401', NULL, '401: unknown token');
SELECT throws_ok(format($$SELECT control_plane.runtime_node_events_read_v2(%L, %L, NULL, %s)$$,
                        pg_temp.d('ann'), pg_temp.s('s1'), lim), 'CP400', NULL, format('limit %s → 400', lim))
  FROM unnest(ARRAY['0', '1001', 'NULL']) lim;
SELECT throws_ok(format($$SELECT control_plane.runtime_node_events_read_v2(%L, %L, -1, 10)$$,
                        pg_temp.d('ann'), pg_temp.s('s1')), 'CP400', NULL, 'a negative cursor → 400');
-- The horizon, not 0: a reused test database may already have purged events.
SELECT purged_through AS horizon FROM control_plane.runtime_node_event_retention \gset
SELECT lives_ok(format($$SELECT control_plane.runtime_node_events_read_v2(%L, %L, %s, 1000)$$,
                       pg_temp.d('ann'), pg_temp.s('s1'), :'horizon'),
                'limit 1000 and a cursor at the retention horizon are fine');
SELECT is(pg_temp.fp(), :'fp9', 'reading writes nothing');

-- runtime_node_events_read_batch_v2: the callers of one page, each authorized with its own token --
CREATE TEMP TABLE batch AS
SELECT * FROM control_plane.runtime_node_events_read_batch_v2(
    ARRAY[pg_temp.d('vic'), pg_temp.d('out'), sha256('nobody'::bytea), pg_temp.d('pam'), pg_temp.d('ann')],
    pg_temp.s('s1'), NULL, 1000);
SELECT is((SELECT sqlstates FROM batch), ARRAY[NULL, 'CP403', 'CP401', 'CP403', NULL]::text[],
          'batch: one verdict per caller, in order (NULL: may read)');
SELECT is((SELECT page FROM batch),
          control_plane.runtime_node_events_read_v2(pg_temp.d('vic'), pg_temp.s('s1'), NULL, 1000),
          'batch: the page of a single read, byte for byte');
SELECT is((SELECT page FROM control_plane.runtime_node_events_read_batch_v2(
               ARRAY[pg_temp.d('ann')], pg_temp.s('s1'), :third, 2)),
          control_plane.runtime_node_events_read_v2(pg_temp.d('ann'), pg_temp.s('s1'), :third, 2),
          'batch: after and limit as a single read');
SELECT is((SELECT row(b.sqlstates, b.page)::text FROM control_plane.runtime_node_events_read_batch_v2(
               ARRAY[pg_temp.d('out'), sha256('nobody'::bytea)], pg_temp.s('s1'), NULL, 10) b),
          row(ARRAY['CP403', 'CP401']::text[], NULL::text)::text,
          'batch: when nobody may read, no page');
SELECT is((SELECT row(b.sqlstates, b.page)::text FROM control_plane.runtime_node_events_read_batch_v2(
               ARRAY[pg_temp.d('ann')], gen_random_uuid(), NULL, 10) b),
          row(ARRAY['CP403']::text[], NULL::text)::text, 'batch: an unknown session is a 403');
SELECT is((SELECT row(b.sqlstates, b.page)::text FROM control_plane.runtime_node_events_read_batch_v2(
               ARRAY[]::bytea[], pg_temp.s('s1'), NULL, 10) b),
          row(ARRAY[]::text[], NULL::text)::text, 'batch: no caller, no verdict and no page');
SELECT throws_ok(format($$SELECT * FROM control_plane.runtime_node_events_read_batch_v2(ARRAY[%L::bytea], %L, NULL, %s)$$,
                        pg_temp.d('ann'), pg_temp.s('s1'), lim), 'CP400', NULL, format('batch: limit %s → 400', lim))
  FROM unnest(ARRAY['0', '1001', 'NULL']) lim;
SELECT throws_ok(format($$SELECT * FROM control_plane.runtime_node_events_read_batch_v2(ARRAY[%L::bytea], %L, -1, 10)$$,
                        pg_temp.d('ann'), pg_temp.s('s1')), 'CP400', NULL, 'batch: a negative cursor → 400');
SELECT throws_ok(format($$SELECT * FROM control_plane.runtime_node_events_read_batch_v2(NULL, %L, NULL, 10)$$,
                        pg_temp.s('s1')), 'CP400', NULL, 'batch: no array → 400');

-- runtime_node_events_authorize_v2: the same refusals pair by pair, any sessions -------------------
SELECT is(control_plane.runtime_node_events_authorize_v2(
              ARRAY[pg_temp.d('vic'), pg_temp.d('ann'), pg_temp.d('out'), sha256('nobody'::bytea),
                    pg_temp.d('pam'), pg_temp.d('ann'), pg_temp.d('ann')],
              ARRAY[pg_temp.s('s1'), pg_temp.s('s2'), pg_temp.s('s1'), pg_temp.s('s1'),
                    pg_temp.s('s1'), gen_random_uuid(), pg_temp.s('s1')]),
          ARRAY[NULL, NULL, 'CP403', 'CP401', 'CP403', 'CP403', NULL]::text[],
          'authorize: one verdict per (token, session), in order');
SELECT is(control_plane.runtime_node_events_authorize_v2(ARRAY[]::bytea[], ARRAY[]::uuid[]),
          ARRAY[]::text[], 'authorize: nothing asked, nothing answered');
SELECT throws_ok(format($$SELECT control_plane.runtime_node_events_authorize_v2(ARRAY[%L::bytea], ARRAY[]::uuid[])$$,
                        pg_temp.d('ann')), 'CP400', NULL, 'authorize: arrays of different lengths → 400');
SELECT throws_ok($$SELECT control_plane.runtime_node_events_authorize_v2(NULL, NULL)$$, 'CP400', NULL,
                 'authorize: no arrays → 400');
SELECT is(pg_temp.fp(), :'fp9', 'batched reads write nothing');

-- admin_session_events ------------------------------------------------------------------------------
SELECT is(control_plane.admin_session_events_v2(pg_temp.s('s1'), NULL, 1000)::jsonb,
          control_plane.runtime_node_events_read_v2(pg_temp.d('vic'), pg_temp.s('s1'), NULL, 1000)::jsonb,
          'the admin reads the same page as a member');
SELECT throws_ok(format($$SELECT control_plane.admin_session_events_v2(%L, NULL, 10)$$, gen_random_uuid()),
                 'CPN04', NULL, 'admin: unknown session → not_found');
SELECT throws_ok(format($$SELECT control_plane.admin_session_events_v2(%L, NULL, 0)$$, pg_temp.s('s1')),
                 'CP400', NULL, 'admin: a bad limit → 400');

-- The 0.2.0 names (deprecated in 0.3.0): the same pages, as jsonb.
SELECT is(control_plane.runtime_node_events_read(pg_temp.d('vic'), pg_temp.s('s1'), NULL, 1000),
          control_plane.runtime_node_events_read_v2(pg_temp.d('vic'), pg_temp.s('s1'), NULL, 1000)::jsonb,
          'the deprecated runtime_node_events_read returns the same page as jsonb');
SELECT is(control_plane.admin_session_events(pg_temp.s('s1'), NULL, 1000),
          control_plane.admin_session_events_v2(pg_temp.s('s1'), NULL, 1000)::jsonb,
          'the deprecated admin_session_events returns the same page as jsonb');

-- The stored rendering (body, written by a trigger; migration 0011) -----------------------------------
-- Events written before migration 0011 have no body: rendered at read time, identically.
CREATE TEMP TABLE stored AS
SELECT control_plane.runtime_node_events_read_v2(pg_temp.d('vic'), pg_temp.s('s1'), NULL, 1000) AS t;
SET LOCAL session_replication_role = replica;  -- no trigger: the NULL stays (as after the upgrade)
UPDATE runtime_node_events SET body = NULL WHERE session_id = pg_temp.s('s1');
SET LOCAL session_replication_role = origin;
SELECT is(control_plane.runtime_node_events_read_v2(pg_temp.d('vic'), pg_temp.s('s1'), NULL, 1000),
          (SELECT t FROM stored), 'events without a stored body read the same, byte for byte');
UPDATE runtime_node_events SET reason = 'edited by a DBA'
 WHERE id = (SELECT min(id) FROM runtime_node_events WHERE session_id = pg_temp.s('s1'));
SELECT is(control_plane.runtime_node_events_read_v2(pg_temp.d('vic'), pg_temp.s('s1'), NULL, 1)::jsonb
            #>> '{events,0,reason}', 'edited by a DBA', 'an UPDATE re-renders the stored body');

-- The roster's revision --------------------------------------------------------------------------------
SELECT is((control_plane.runtime_node_roster_v2(pg_temp.d('vic'), pg_temp.s('s1'))::json ->> 'revision')::bigint,
          (SELECT max(id) FROM runtime_node_events), 'revision is the highest visible event id');
SELECT (control_plane.runtime_node_roster_v2(pg_temp.d('ann'), pg_temp.s('s2'))::json ->> 'revision')::bigint AS rev \gset
SELECT pg_temp.attach('ann', 's2', 'late', '2.0') \g /dev/null
SELECT is((SELECT array_agg(e ->> 'nodeId') FROM jsonb_array_elements(
               control_plane.runtime_node_events_read_v2(pg_temp.d('ann'), pg_temp.s('s2'), :rev, 100)::jsonb -> 'events') e),
          ARRAY[pg_temp.n('late')], 'following from the revision yields exactly the later change');

-- Retention ----------------------------------------------------------------------------------------------
SELECT is((SELECT event_retention FROM settings), interval '7 days', 'event_retention defaults to 7 days');
SELECT throws_ok($$UPDATE control_plane.settings SET event_retention = '1 minute'$$, '23514', NULL,
                 'event_retention is CHECKed (at least an hour)');
SELECT is((SELECT count(*) FROM cron.job WHERE jobname = 'runtime-node-events-purge'
             AND command = 'SELECT control_plane.runtime_node_events_purge()'), 1::bigint,
          'the migrations created the purge job');
SELECT is(control_plane.runtime_node_events_purge(now()), 0::bigint, 'nothing is 7 days old yet');
SELECT (SELECT min(id) FROM runtime_node_events WHERE session_id = pg_temp.s('s1')) AS first_s1,
       (SELECT max(id) FROM runtime_node_events) AS last_id \gset
-- Make the fixture's first events old (as superuser; the API can never do this).
UPDATE runtime_node_events SET at = now() - interval '8 days'
 WHERE id <= :first_s1 + 1 AND id > (SELECT purged_through FROM runtime_node_event_retention);
UPDATE runtime_node_events SET at = now() WHERE id > :first_s1 + 1;
SELECT is(control_plane.runtime_node_events_purge(now(), 1000000),
          (SELECT count(*) FROM runtime_node_events
            WHERE id <= :first_s1 + 1 AND id > (SELECT purged_through FROM runtime_node_event_retention)),
          'the purge deletes the events older than the retention');
SELECT is((SELECT purged_through FROM runtime_node_event_retention), :first_s1::bigint + 1,
          'and records its horizon');
SELECT is((SELECT min(id) FROM runtime_node_events), :first_s1::bigint + 2, 'newer events are kept');
SELECT throws_ok(format($$SELECT control_plane.runtime_node_events_read_v2(%L, %L, %s, 10)$$,
                        pg_temp.d('ann'), pg_temp.s('s1'), :first_s1),
                 'CPG10', NULL, 'a cursor below the horizon has expired (410)');
SELECT throws_ok(format($$SELECT control_plane.admin_session_events_v2(%L, 0, 10)$$, pg_temp.s('s1')),
                 'CPG10', NULL, 'for the admin too');
SELECT is((SELECT row(b.sqlstates, b.page)::text FROM control_plane.runtime_node_events_read_batch_v2(
               ARRAY[pg_temp.d('ann'), pg_temp.d('out')], pg_temp.s('s1'), :first_s1, 10) b),
          row(ARRAY['CPG10', 'CP403']::text[], NULL::text)::text,
          'batch: the expired cursor is the reader''s verdict, the refused caller keeps its 403');
SELECT is((control_plane.runtime_node_events_read_v2(pg_temp.d('ann'), pg_temp.s('s1'), NULL, 1)::jsonb -> 'events' -> 0 ->> 'id')::bigint,
          :first_s1::bigint + 2, 'after omitted: from the oldest retained event');
SELECT lives_ok(format($$SELECT control_plane.runtime_node_events_read_v2(%L, %L, %s, 10)$$,
                       pg_temp.d('ann'), pg_temp.s('s1'), :first_s1 + 1), 'a cursor at the horizon is fine');
UPDATE runtime_node_events SET at = now() - interval '8 days' WHERE id = :last_id;
SELECT is(control_plane.runtime_node_events_purge(now(), 1000000), 0::bigint,
          'the horizon never passes an event that is not old enough');

-- Advertised timing (contract §10) -------------------------------------------------------------------------
UPDATE settings SET heartbeat_interval = '10 seconds', degraded_after = '25.5 seconds',
                    offline_after = '2 minutes';
SELECT is(pg_temp.attach('ann', 's2', 'timed', '2.0') - ARRAY['attachmentId', 'sessionId', 'nodeId',
              'participantId', 'state', 'readOnly', 'clientVersion', 'attachedAt'],
          '{"heartbeatIntervalSeconds": 10, "degradedAfterSeconds": 25.5, "offlineAfterSeconds": 120}'::jsonb,
          'attach advertises the settings of this moment');
SELECT is(pg_temp.declare('ann', 'timed', '{"t": 1}') -> 'heartbeatIntervalSeconds', '10'::jsonb,
          'declaration advertises them');
SELECT is(pg_temp.caps('ann', 'timed', '{"t": 2}') -> 'offlineAfterSeconds', '120'::jsonb,
          'capability update advertises them');

-- Privileges ---------------------------------------------------------------------------------------------
SELECT ok(has_function_privilege('control_plane_api',
              'control_plane.runtime_node_events_read_v2(bytea,uuid,bigint,integer)', 'EXECUTE'),
          'the API role may read a session''s feed (as a member)');
SELECT ok(has_function_privilege('control_plane_api',
              'control_plane.runtime_node_events_read_batch_v2(bytea[],uuid,bigint,integer)', 'EXECUTE'),
          'the API role may read it for several callers at once');
SELECT ok(has_function_privilege('control_plane_api',
              'control_plane.runtime_node_events_authorize_v2(bytea[],uuid[])', 'EXECUTE'),
          'and re-check many followers at once');
SELECT is(ARRAY(SELECT a.grantee::regrole::text FROM pg_proc p, aclexplode(p.proacl) a
                 WHERE p.oid = 'control_plane.admin_session_events_v2(uuid,bigint,integer)'::regprocedure
                   AND a.grantee <> p.proowner ORDER BY 1),
          ARRAY(SELECT a.grantee::regrole::text FROM pg_proc p, aclexplode(p.proacl) a
                 WHERE p.oid = 'control_plane.admin_raise_floor(uuid,control_plane.client_version)'::regprocedure
                   AND a.grantee <> p.proowner ORDER BY 1),
          'the admin feed is granted exactly like the other admin functions');
SELECT is(ARRAY(SELECT f FROM unnest(ARRAY[
                    'control_plane.runtime_node_events_append(control_plane.runtime_node_event_draft[])',
                    'control_plane.runtime_node_events_purge(timestamptz,integer)',
                    'control_plane.runtime_node_events_page(uuid,bigint,integer)',
                    'control_plane.runtime_node_events_revision()',
                    'control_plane.runtime_node_events_check_page(bigint,integer)',
                    'control_plane.runtime_node_events_cursor_expired(bigint)',
                    'control_plane.token_participant(bytea)',
                    'control_plane.runtime_node_events_lock_key()',
                    'control_plane.advertised_timing()',
                    'control_plane.check_reason(text,text)']) f
                 WHERE has_function_privilege('control_plane_api', f, 'EXECUTE')),
          ARRAY[]::text[], 'the internal feed functions are not granted');
SELECT table_privs_are('control_plane', t, 'control_plane_api', ARRAY[]::text[],
                       format('the API role has no privilege on %s', t))
  FROM unnest(ARRAY['runtime_node_events', 'runtime_node_event_retention']) t;

SELECT * FROM finish();
ROLLBACK;
