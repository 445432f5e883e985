-- contract §6.6: every attachment of a session, for any active member. Reads only, takes no lock.
-- The roster itself is runtime_node_roster_of; runtime_node_roster (a member's token, the API
-- role) and admin_session_roster (the admin role, contract §11) decide who may read it.
--
-- Shaped for cost (docs/performance.md, "Roster"): each attachment's stored fields are already
-- rendered (roster_entry, kept by a trigger when the row is written: migration 0010), so a read
-- appends only what it derives — presence health and the read-only verdict — and joins the
-- entries as text. The floor's version key is computed once per call and each row's verdict is
-- the inlined version_key_below expression (the floor is not parsed again per row); presence is
-- one primary-key probe per slot (LATERAL … LIMIT 1: never a hash of the whole presence
-- table); the "active elsewhere?" probe runs only for inactive slots. The attachments are read in the order of the roster index (session_id,
-- attached_at, node_id) and joined in that order: no sort (the aggregate's ORDER BY sorted the
-- rendered entries, ~10 % of a roster's CPU on PostgreSQL 15; a bitmap scan would need that
-- sort too). The result is text, not json: json's input check would re-parse the whole document.
CREATE OR REPLACE FUNCTION control_plane.runtime_node_roster_of(p_session_id uuid)
    RETURNS text
    LANGUAGE plpgsql
    STABLE
    SET search_path = control_plane, pg_catalog, pg_temp
    SET plan_cache_mode = force_generic_plan  -- re-planned on every call otherwise (docs/performance.md)
    SET enable_bitmapscan = off  -- the ordered index scan, not a bitmap scan and a sort (above)
AS $fn$
DECLARE
    v_floor_key numeric[];
BEGIN
    SELECT version_key(s.min_client_version) INTO v_floor_key
      FROM sessions s WHERE s.id = p_session_id;
    -- revision: read in the same snapshot as the nodes (a STABLE function's statements share
    -- the calling query's snapshot), so the list includes exactly the events up to it.
    RETURN '{"revision":' || runtime_node_events_revision() || ',"nodes":[' || coalesce((
        -- A plain aggregate over an ordered subquery consumes its rows in that order
        -- (tests/sql/25-roster.sql checks it).
        SELECT string_agg(x.entry, ',') FROM (SELECT a.roster_entry
                   -- Presence is per node. An inactive slot shows it only while the node is
                   -- active nowhere, so one session's roster never reveals the node's life in
                   -- another session.
                   || CASE WHEN p.health_state IS NOT NULL
                            AND (slot_is_active(a.state)
                                 OR NOT EXISTS (SELECT 1 FROM runtime_node_attachments o
                                                 WHERE o.node_id = a.node_id
                                                   AND slot_is_active(o.state)))
                           -- health_state is CHECKed to three words: nothing to escape.
                           THEN ',"healthState":"' || p.health_state || '"'
                                || ',"lastHeartbeatAt":' || json_timestamp_utc(p.last_heartbeat_at)
                           ELSE ',"healthState":null,"lastHeartbeatAt":null'
                      END
                   || CASE WHEN version_key_below(version_key(a.client_version), v_floor_key)
                           THEN ',"readOnly":true}' ELSE ',"readOnly":false}'
                      END AS entry
          FROM runtime_node_attachments a
          LEFT JOIN LATERAL (SELECT pp.health_state, pp.last_heartbeat_at
                               FROM runtime_node_presence pp
                              WHERE pp.node_id = a.node_id
                              LIMIT 1) p ON true
         WHERE a.session_id = p_session_id
         ORDER BY a.attached_at, a.node_id) x), '') || ']}';
END
$fn$;
COMMENT ON FUNCTION control_plane.runtime_node_roster_of(uuid) IS
    'Internal: the roster of a session (contract §6.6, §9), for callers that already decided the '
    'caller may read it: a JSON document (text) {revision, nodes: [{attachmentId, nodeId, '
    'participantId, state, capabilities, clientVersion, attachedAt, healthState, '
    'lastHeartbeatAt, readOnly}]} — every attachment in all five states, ordered by attached_at, '
    'node_id; timestamps in UTC; revision read in the same snapshot. Text, not json: json''s '
    'input check would re-parse the document. Not granted to any role.';

CREATE OR REPLACE FUNCTION control_plane.runtime_node_roster_v2(p_token_sha256 bytea, p_session_id uuid)
    RETURNS text
    LANGUAGE plpgsql
    STABLE SECURITY DEFINER
    SET search_path = control_plane, pg_catalog, pg_temp
    SET plan_cache_mode = force_generic_plan  -- re-planned on every call otherwise (docs/performance.md)
AS $fn$
DECLARE
    v_caller uuid;
BEGIN
    v_caller := caller_participant(p_token_sha256);  -- CP401
    IF NOT EXISTS (SELECT 1 FROM session_memberships m
                    WHERE m.session_id = p_session_id AND m.participant_id = v_caller
                      AND m.state = 'active') THEN
        RAISE EXCEPTION 'permission denied' USING ERRCODE = 'CP403';
    END IF;
    RETURN runtime_node_roster_of(p_session_id);
END
$fn$;
COMMENT ON FUNCTION control_plane.runtime_node_roster_v2(bytea, uuid) IS
    'Roster (contract §6.6, §9): a JSON document (text) {revision, nodes: [{attachmentId, '
    'nodeId, participantId, state, capabilities, clientVersion, attachedAt, healthState, '
    'lastHeartbeatAt, readOnly}]}, timestamps in UTC. '
    'revision is the event id up to which the listed state includes every event, read in the '
    'same snapshot (list, then follow the feed after revision: nothing missed or applied twice). '
    'nodes is every attachment of the session in all five states, ordered by attached_at, '
    'node_id. Caller: any active member (any role), else CP403 ''permission denied'' (also for '
    'an unknown session); unknown token → CP401. readOnly is derived against the session''s '
    'current floor. healthState and lastHeartbeatAt are null when the node never beat; for an '
    'offline or revoked slot they are shown only while the node is active in no session '
    '(presence is per node). Writes nothing, takes no lock. Returns text, not json: json''s '
    'input check would re-parse the whole document (cast it, ::json or ::jsonb, to query it).';
REVOKE ALL ON FUNCTION control_plane.runtime_node_roster_v2(bytea, uuid) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION control_plane.runtime_node_roster_v2(bytea, uuid) TO control_plane_api;

-- Deprecated in 0.3.0 (CHANGELOG: the SQL API keeps an old signature for one release): the
-- same document as json, for SQL callers written against 0.2.0. The app calls _v2.
CREATE OR REPLACE FUNCTION control_plane.runtime_node_roster(p_token_sha256 bytea, p_session_id uuid)
    RETURNS json
    LANGUAGE plpgsql
    STABLE SECURITY DEFINER
    SET search_path = control_plane, pg_catalog, pg_temp
AS $fn$
BEGIN
    RETURN runtime_node_roster_v2(p_token_sha256, p_session_id)::json;
END
$fn$;
COMMENT ON FUNCTION control_plane.runtime_node_roster(bytea, uuid) IS
    'Deprecated (0.3.0; dropped in a later release): runtime_node_roster_v2 as json (the 0.2.0 '
    'result type). Same rules and refusals.';
REVOKE ALL ON FUNCTION control_plane.runtime_node_roster(bytea, uuid) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION control_plane.runtime_node_roster(bytea, uuid) TO control_plane_api;
