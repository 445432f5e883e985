-- contract §6.6: every attachment of a session, for any active member. Reads only, takes no lock.
-- The roster itself is runtime_node_roster_of; runtime_node_roster (a member's token, the API
-- role) and admin_session_roster (the admin role, contract §11) decide who may read it.
CREATE OR REPLACE FUNCTION control_plane.runtime_node_roster_of(p_session_id uuid)
    RETURNS jsonb
    LANGUAGE plpgsql
    STABLE
    SET search_path = control_plane, pg_catalog, pg_temp
AS $fn$
BEGIN
    -- revision: read in the same snapshot as the nodes (a STABLE function's statements share
    -- the calling query's snapshot), so the list includes exactly the events up to it.
    RETURN jsonb_build_object('revision', runtime_node_events_revision(), 'nodes', coalesce((
        SELECT jsonb_agg(jsonb_build_object(
                   'attachmentId', a.id,
                   'nodeId', a.node_id,
                   'participantId', a.participant_id,
                   'state', a.state,
                   'healthState', p.health_state,
                   'lastHeartbeatAt', p.last_heartbeat_at,
                   'readOnly', version_below_floor(a.client_version, s.min_client_version),
                   'capabilities', a.capabilities,
                   'clientVersion', a.client_version,
                   'attachedAt', a.attached_at)
                   ORDER BY a.attached_at, a.node_id)
          FROM runtime_node_attachments a
          JOIN sessions s ON s.id = a.session_id
          -- Presence is per node. An inactive slot shows it only while the node is active
          -- nowhere, so one session's roster never reveals the node's life in another session.
          LEFT JOIN runtime_node_presence p
            ON p.node_id = a.node_id
           AND (slot_is_active(a.state)
                OR NOT EXISTS (SELECT 1 FROM runtime_node_attachments o
                                WHERE o.node_id = a.node_id
                                  AND slot_is_active(o.state)))
         WHERE a.session_id = p_session_id), '[]'::jsonb));
END
$fn$;
COMMENT ON FUNCTION control_plane.runtime_node_roster_of(uuid) IS
    'Internal: the roster of a session (contract §6.6, §9), for callers that already decided the '
    'caller may read it: {revision, nodes: [{attachmentId, nodeId, participantId, state, '
    'healthState, lastHeartbeatAt, readOnly, capabilities, clientVersion, attachedAt}]} — every '
    'attachment in all five states, ordered by attached_at, node_id; revision read in the same '
    'snapshot. Not granted to any role.';

CREATE OR REPLACE FUNCTION control_plane.runtime_node_roster(p_token_sha256 bytea, p_session_id uuid)
    RETURNS jsonb
    LANGUAGE plpgsql
    STABLE SECURITY DEFINER
    SET search_path = control_plane, pg_catalog, pg_temp
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
COMMENT ON FUNCTION control_plane.runtime_node_roster(bytea, uuid) IS
    'Roster (contract §6.6, §9): {revision, nodes: [{attachmentId, nodeId, participantId, state, '
    'healthState, lastHeartbeatAt, readOnly, capabilities, clientVersion, attachedAt}]}. '
    'revision is the event id up to which the listed state includes every event, read in the '
    'same snapshot (list, then follow the feed after revision: nothing missed or applied twice). '
    'nodes is every attachment of the session in all five states, ordered by attached_at, '
    'node_id. Caller: any active member (any role), else CP403 ''permission denied'' (also for '
    'an unknown session); unknown token → CP401. readOnly is derived against the session''s '
    'current floor. healthState and lastHeartbeatAt are null when the node never beat; for an '
    'offline or revoked slot they are shown only while the node is active in no session '
    '(presence is per node). Writes nothing, takes no lock.';
REVOKE ALL ON FUNCTION control_plane.runtime_node_roster(bytea, uuid) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION control_plane.runtime_node_roster(bytea, uuid) TO control_plane_api;
