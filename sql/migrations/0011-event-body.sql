-- Each event's JSON, rendered once when it is written instead of on every read (events never
-- change; a feed read returns the same event to every follower of its session, and building
-- 14-key jsonb objects per read was most of a feed read's server CPU: docs/performance.md,
-- "Change feed"). Pages are now served as text (a JSON document) by runtime_node_events_read_v2
-- and admin_session_events_v2, joined and never parsed again; the 0.2.0 names keep their jsonb
-- result for one release (CHANGELOG). The internal runtime_node_events_page changes its result
-- type, which CREATE OR REPLACE cannot do: it is dropped here and
-- sql/functions/runtime_node_events.sql recreates it right after.
--
-- Rows written before this migration keep body NULL and are rendered at read time by the same
-- function (runtime_node_event_json): no rewrite of a table that may hold a week of events,
-- and the retention purge removes them in time. The renderer is defined here, not in
-- sql/functions: it shapes stored data.
-- depends: 0010-roster-entry

SET ROLE control_plane_owner;

ALTER TABLE control_plane.runtime_node_events ADD COLUMN body text;
COMMENT ON COLUMN control_plane.runtime_node_events.body IS
    'Derived: the event as the feed serves it (JSON object), rendered by '
    'runtime_node_event_json when the row is written (trigger runtime_node_events_body). NULL '
    'for events written before migration 0011; readers render those on the fly.';

CREATE FUNCTION control_plane.runtime_node_event_json(e control_plane.runtime_node_events)
    RETURNS text
    LANGUAGE sql
    STABLE PARALLEL SAFE  -- as json_timestamp_utc: to_json is STABLE
    -- No SET clause: a SQL-standard body is bound at creation (names cannot be redirected) and
    -- is inlined where it is called, so the trigger pays no function call under the event lock.
RETURN '{"id":' || e.id
    || ',"at":' || control_plane.json_timestamp_utc(e.at)
    || ',"sessionId":' || to_json(e.session_id)
    || ',"nodeId":' || to_json(e.node_id::text)
    || ',"attachmentId":' || to_json(e.attachment_id)
    || ',"kind":' || to_json(e.kind)
    || ',"state":' || to_json(e.state)
    || ',"previousState":' || coalesce(to_json(e.previous_state)::text, 'null')
    || ',"healthState":' || coalesce(to_json(e.health_state)::text, 'null')
    || ',"previousHealthState":' || coalesce(to_json(e.previous_health_state)::text, 'null')
    || ',"actor":' || to_json(e.actor)
    || ',"actorParticipantId":' || coalesce(to_json(e.actor_participant_id)::text, 'null')
    || ',"reason":' || coalesce(to_json(e.reason)::text, 'null')
    || ',"capabilities":' || coalesce(e.capabilities::text, 'null')
    || '}';
COMMENT ON FUNCTION control_plane.runtime_node_event_json(control_plane.runtime_node_events) IS
    'Internal: an event as the feed serves it, a JSON object {id, at (UTC), sessionId, nodeId, '
    'attachmentId, kind, state, previousState, healthState, previousHealthState, actor, '
    'actorParticipantId, reason, capabilities}, absent values as null. The one definition of an '
    'event''s JSON: stored in body at insert, and used by readers for rows without a body.';
REVOKE ALL ON FUNCTION control_plane.runtime_node_event_json(control_plane.runtime_node_events)
    FROM PUBLIC;

CREATE FUNCTION control_plane.runtime_node_events_body()
    RETURNS trigger
    LANGUAGE plpgsql
    SET search_path = control_plane, pg_catalog, pg_temp
AS $fn$
BEGIN
    NEW.body := runtime_node_event_json(NEW);  -- NEW.id is already assigned (column defaults)
    RETURN NEW;
END
$fn$;
COMMENT ON FUNCTION control_plane.runtime_node_events_body() IS
    'Trigger (BEFORE INSERT OR UPDATE on runtime_node_events): stores the event''s JSON '
    '(runtime_node_event_json) in body.';
CREATE TRIGGER runtime_node_events_body
    BEFORE INSERT OR UPDATE ON control_plane.runtime_node_events
    FOR EACH ROW EXECUTE FUNCTION control_plane.runtime_node_events_body();

DROP FUNCTION IF EXISTS control_plane.runtime_node_events_page(uuid, bigint, integer);

RESET ROLE;
