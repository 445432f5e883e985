-- contract §6.7: a session owner (or the admin) revokes a node's slot in that session, for good.
CREATE OR REPLACE FUNCTION control_plane.runtime_node_revoke(
    p_token_sha256 bytea,
    p_session_id uuid,
    p_node_id text,
    p_as_admin boolean DEFAULT false
)
    RETURNS void
    LANGUAGE plpgsql
    VOLATILE SECURITY DEFINER
    SET search_path = control_plane, pg_catalog, pg_temp
AS $fn$
DECLARE
    v_caller uuid;
    v_id uuid;
    v_state text;
BEGIN
    IF p_as_admin IS NOT TRUE THEN
        v_caller := caller_participant(p_token_sha256);  -- CP401
        -- Unknown session ≡ not a member ≡ inactive ≡ not an owner: one 403.
        PERFORM 1 FROM session_memberships m
         WHERE m.session_id = p_session_id AND m.participant_id = v_caller
           AND m.state = 'active' AND m.role = 'owner'
           FOR SHARE;
        IF NOT FOUND THEN
            RAISE EXCEPTION 'permission denied' USING ERRCODE = 'CP403';
        END IF;
    END IF;
    -- FOR UPDATE conflicts with a heartbeat's KEY SHARE (see runtime_node_heartbeat_batch).
    SELECT a.id, a.state INTO v_id, v_state
      FROM runtime_node_attachments a
     WHERE a.node_id = p_node_id AND a.session_id = p_session_id
       FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'runtime node not found in this session' USING ERRCODE = 'CP404';
    END IF;
    IF v_state = 'revoked' THEN
        RETURN;  -- terminal already: a no-op
    END IF;
    UPDATE runtime_node_attachments SET state = 'revoked', updated_at = now() WHERE id = v_id;
    -- Presence is the node's, not the slot's: only an active slot owns it.
    IF slot_is_active(v_state) THEN
        UPDATE runtime_node_presence SET health_state = 'offline'
         WHERE node_id = p_node_id AND health_state <> 'offline';
    END IF;
END
$fn$;
COMMENT ON FUNCTION control_plane.runtime_node_revoke(bytea, uuid, text, boolean) IS
    'Revoke (contract §6.7). p_as_admin = true: admin authority (the HTTP tier checked the admin '
    'token; the token digest may be NULL). Otherwise the token''s participant must be an active '
    'member with role owner of the session, else CP403 ''permission denied'' (also for an unknown '
    'session); unknown token → CP401. The node''s non-revoked attachment in that session becomes '
    'revoked (terminal: never left, re-attach refused); if it was active, an existing presence row '
    'goes offline. Already revoked → no-op. No attachment of that node in that session → CP404 '
    '(runtimenode.not_found). Locks session_memberships FOR SHARE → the attachment FOR UPDATE → '
    'presence.';
REVOKE ALL ON FUNCTION control_plane.runtime_node_revoke(bytea, uuid, text, boolean) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION control_plane.runtime_node_revoke(bytea, uuid, text, boolean)
    TO control_plane_api;
