-- contract §6.7: a session owner (or the admin) revokes a node's slot in that session, for good.
-- The rule lives in runtime_node_revoke_slot; runtime_node_revoke (a session owner's token, the
-- API role) and admin_revoke_runtime_node (the admin role) decide who may call it.
CREATE OR REPLACE FUNCTION control_plane.runtime_node_revoke_slot(
    p_session_id uuid,
    p_node_id text,
    p_actor_participant_id uuid,
    p_reason text
)
    RETURNS void
    LANGUAGE plpgsql
    VOLATILE
    SET search_path = control_plane, pg_catalog, pg_temp
AS $fn$
DECLARE
    v_id uuid;
    v_owner uuid;
    v_state text;
    v_health text;
    v_active boolean;
BEGIN
    -- FOR UPDATE conflicts with a heartbeat's KEY SHARE (see runtime_node_heartbeat_batch).
    SELECT a.id, a.state, a.participant_id INTO v_id, v_state, v_owner
      FROM runtime_node_attachments a
     WHERE a.node_id = p_node_id AND a.session_id = p_session_id
       FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'runtime node not found in this session' USING ERRCODE = 'CP404';
    END IF;
    IF v_state = 'revoked' THEN
        RETURN;  -- terminal already: a no-op (no event)
    END IF;
    UPDATE runtime_node_attachments SET state = 'revoked', updated_at = now() WHERE id = v_id;
    -- Presence is the node's, not the slot's: only an active slot owns it.
    v_active := slot_is_active(v_state);
    IF v_active THEN
        SELECT p.health_state INTO v_health FROM runtime_node_presence p
         WHERE p.node_id = p_node_id FOR UPDATE;
        UPDATE runtime_node_presence SET health_state = 'offline'
         WHERE node_id = p_node_id AND health_state <> 'offline';
    END IF;
    -- Actor: admin (no participant); the node's own owner (daemon); or a session owner acting
    -- on another's node.
    PERFORM runtime_node_events_append(ARRAY[ROW(
        p_node_id, v_id, p_session_id, 'revoked', true, v_state, v_active, v_health,
        CASE WHEN p_actor_participant_id IS NULL THEN 'admin'
             WHEN p_actor_participant_id = v_owner THEN 'daemon' ELSE 'owner' END,
        p_actor_participant_id,
        p_reason, NULL)::runtime_node_event_draft]);
END
$fn$;
COMMENT ON FUNCTION control_plane.runtime_node_revoke_slot(uuid, text, uuid, text) IS
    'Internal: the revoke rule (contract §6.7, §9), for callers that already decided the caller '
    'may revoke; p_actor_participant_id NULL = the admin. The node''s non-revoked attachment in '
    'that session becomes revoked (terminal: never left, re-attach refused); if it was active, an '
    'existing presence row goes offline; one revoked event (actor admin, daemon when the session '
    'owner revokes their own node, else owner; the reason). Already revoked → no-op, no event. '
    'No attachment of that node in that session → CP404 (runtimenode.not_found). Locks the '
    'attachment FOR UPDATE → presence → the event lock. Not granted to any role.';

CREATE OR REPLACE FUNCTION control_plane.runtime_node_revoke(
    p_token_sha256 bytea,
    p_session_id uuid,
    p_node_id text,
    p_reason text DEFAULT NULL
)
    RETURNS void
    LANGUAGE plpgsql
    VOLATILE SECURITY DEFINER
    SET search_path = control_plane, pg_catalog, pg_temp
AS $fn$
DECLARE
    v_caller uuid;
BEGIN
    PERFORM check_reason(p_reason, 'reason');  -- CP400
    v_caller := caller_participant(p_token_sha256);  -- CP401
    -- Unknown session ≡ not a member ≡ inactive ≡ not an owner: one 403.
    PERFORM 1 FROM session_memberships m
     WHERE m.session_id = p_session_id AND m.participant_id = v_caller
       AND m.state = 'active' AND m.role = 'owner'
       FOR SHARE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'permission denied' USING ERRCODE = 'CP403';
    END IF;
    PERFORM runtime_node_revoke_slot(p_session_id, p_node_id, v_caller, p_reason);
END
$fn$;
COMMENT ON FUNCTION control_plane.runtime_node_revoke(bytea, uuid, text, text) IS
    'Revoke (contract §6.7, §9) by a session owner. p_reason NULL or 1-512 characters, not blank '
    '(else CP400). The token''s participant must be an active member with role owner of the '
    'session, else CP403 ''permission denied'' (also for an unknown session); unknown token → '
    'CP401. Then runtime_node_revoke_slot: the node''s non-revoked attachment in that session '
    'becomes revoked (terminal); if it was active, an existing presence row goes offline; one '
    'revoked event (actor daemon for the owner''s own node, else owner; the reason); already '
    'revoked → no-op; no such attachment → CP404 (runtimenode.not_found). The admin''s revoke is '
    'admin_revoke_runtime_node. Locks session_memberships FOR SHARE → the attachment FOR UPDATE → '
    'presence → the event lock.';
REVOKE ALL ON FUNCTION control_plane.runtime_node_revoke(bytea, uuid, text, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION control_plane.runtime_node_revoke(bytea, uuid, text, text)
    TO control_plane_api;
