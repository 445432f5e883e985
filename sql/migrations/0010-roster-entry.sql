-- The roster's per-attachment JSON, rendered when the attachment is written instead of on every
-- read (docs/performance.md, "Roster"). Rosters are read far more often than attachments change
-- (attach, declaration, capability update, detach, revoke: the sweep and steady heartbeats write
-- presence only), and rendering uuids, capabilities and timestamps to JSON was most of a
-- roster's server CPU. The trigger function is defined here, not in sql/functions: it shapes
-- stored data, so changing the format means a migration that re-renders every row.
--
-- The rosters are now served as text (a JSON document) by runtime_node_roster_v2 and
-- admin_session_roster_v2: json's input check re-parses the whole document (~0.26 ms for 100
-- nodes), more than assembling it. The 0.2.0 names keep their result types for one release
-- (CHANGELOG). The internal runtime_node_roster_of changes its result type, which CREATE OR
-- REPLACE cannot do: it is dropped here and sql/functions/runtime_node_roster.sql recreates it
-- right after.
-- depends: 0009-roster-of-returns-json

SET ROLE control_plane_owner;

-- Stored renderings must not depend on the TimeZone of whoever wrote the row, and a SET
-- timezone clause would cost a configuration change per call and stop inlining: the instant
-- is rendered in UTC explicitly (to_json of the UTC wall time, the offset appended), the exact
-- text to_json(timestamptz) gives under TimeZone UTC.
CREATE FUNCTION control_plane.json_timestamp_utc(p_at timestamptz)
    RETURNS text
    LANGUAGE sql
    -- STABLE, not IMMUTABLE: to_json is STABLE, and an IMMUTABLE function calling a STABLE one
    -- is never inlined. (Its result does not depend on any setting.)
    STABLE PARALLEL SAFE
RETURN pg_catalog.left(pg_catalog.to_json(pg_catalog.timezone('UTC', p_at))::pg_catalog.text, -1)
       OPERATOR(pg_catalog.||) '+00:00"';
COMMENT ON FUNCTION control_plane.json_timestamp_utc(timestamptz) IS
    'Internal: a timestamptz as a JSON string in UTC ("2026-12-02T00:55:30.06461+00:00"), '
    'whatever the session TimeZone; NULL for NULL. A SQL-standard body without SET, so the '
    'planner inlines it.';
REVOKE ALL ON FUNCTION control_plane.json_timestamp_utc(timestamptz) FROM PUBLIC;

CREATE FUNCTION control_plane.runtime_node_attachments_roster_entry()
    RETURNS trigger
    LANGUAGE plpgsql
    SET search_path = control_plane, pg_catalog, pg_temp
AS $fn$
BEGIN
    -- An object without its closing brace: the roster appends the fields it derives at read
    -- time (healthState, lastHeartbeatAt, readOnly) and closes it.
    NEW.roster_entry := '{"attachmentId":' || to_json(NEW.id)
        || ',"nodeId":' || to_json(NEW.node_id::text)
        || ',"participantId":' || to_json(NEW.participant_id)
        || ',"state":' || to_json(NEW.state)
        || ',"capabilities":' || NEW.capabilities::text
        || ',"clientVersion":' || to_json(NEW.client_version::text)
        || ',"attachedAt":' || json_timestamp_utc(NEW.attached_at);
    RETURN NEW;
END
$fn$;
COMMENT ON FUNCTION control_plane.runtime_node_attachments_roster_entry() IS
    'Trigger (BEFORE INSERT OR UPDATE): renders the attachment''s stored roster fields as the '
    'start of a JSON object into roster_entry — attachmentId, nodeId, participantId, state, '
    'capabilities, clientVersion, attachedAt (UTC) — so a roster read appends only what it '
    'derives (healthState, lastHeartbeatAt, readOnly). Applies to DBAs'' UPDATEs too.';

ALTER TABLE control_plane.runtime_node_attachments ADD COLUMN roster_entry text;
COMMENT ON COLUMN control_plane.runtime_node_attachments.roster_entry IS
    'Derived, maintained by the trigger runtime_node_attachments_roster_entry: the roster''s JSON '
    'for this attachment without its read-time fields and closing brace. Never written directly.';
CREATE TRIGGER runtime_node_attachments_roster_entry
    BEFORE INSERT OR UPDATE ON control_plane.runtime_node_attachments
    FOR EACH ROW EXECUTE FUNCTION control_plane.runtime_node_attachments_roster_entry();
UPDATE control_plane.runtime_node_attachments SET roster_entry = NULL;  -- the trigger renders it
ALTER TABLE control_plane.runtime_node_attachments ALTER COLUMN roster_entry SET NOT NULL;

DROP FUNCTION IF EXISTS control_plane.runtime_node_roster_of(uuid);

-- slot_is_active was STRICT, and PostgreSQL inlines a STRICT SQL function only when it can
-- prove its body strict, which it cannot for `= ANY (ARRAY[...])`: every per-row use was a
-- function call. The result for a NULL state is NULL either way, so the index built on it is
-- unchanged.
ALTER FUNCTION control_plane.slot_is_active(text) CALLED ON NULL INPUT;

RESET ROLE;
