-- Shared authorization of declaration and capability update (contract §5): the caller owns the
-- node's active attachment and is still an active member of that session. The attachment names
-- its session, but the lock order is sessions → memberships → attachments, so: find the slot
-- without a lock, lock session and membership, then lock the slot and re-check it (a detach or
-- revoke may have won the race; then look again).
CREATE OR REPLACE FUNCTION control_plane.runtime_node_lock_owned(
    p_caller uuid,
    p_node_id text,
    OUT o_attachment_id uuid,
    OUT o_state text,
    OUT o_client_version control_plane.client_version,
    OUT o_floor control_plane.client_version
)
    LANGUAGE plpgsql
    VOLATILE
    SET search_path = control_plane, pg_catalog, pg_temp
AS $fn$
DECLARE
    v_session uuid;
BEGIN
    -- Each extra round needs a concurrent change of this very slot; three is plenty.
    FOR i IN 1..3 LOOP
        SELECT a.id, a.session_id INTO o_attachment_id, v_session
          FROM runtime_node_attachments a
         WHERE a.node_id = p_node_id AND a.participant_id = p_caller
           AND slot_is_active(a.state);
        EXIT WHEN NOT FOUND;
        SELECT s.min_client_version INTO o_floor FROM sessions s WHERE s.id = v_session FOR SHARE;
        PERFORM 1 FROM session_memberships m
         WHERE m.session_id = v_session AND m.participant_id = p_caller AND m.state = 'active'
           FOR SHARE;
        EXIT WHEN NOT FOUND;
        -- NO KEY UPDATE: serializes with other slot writers, not with heartbeats (KEY SHARE).
        SELECT a.state, a.client_version INTO o_state, o_client_version
          FROM runtime_node_attachments a
         WHERE a.id = o_attachment_id AND a.participant_id = p_caller
           AND slot_is_active(a.state)
           FOR NO KEY UPDATE;
        IF FOUND THEN
            RETURN;
        END IF;
    END LOOP;
    RAISE EXCEPTION 'permission denied' USING ERRCODE = 'CP403';
END
$fn$;
COMMENT ON FUNCTION control_plane.runtime_node_lock_owned(uuid, text) IS
    'Internal (not granted): authorizes a write to a node''s slot. Returns the node''s active '
    'attachment (id, state, client version) and its session''s current floor when p_caller owns '
    'it and is an active member (any role) of that session; otherwise CP403 ''permission '
    'denied''. Locks sessions FOR SHARE → session_memberships FOR SHARE → the attachment FOR NO '
    'KEY UPDATE, so a concurrent floor raise, membership change, detach or revoke serializes '
    'with the caller''s write.';
-- Functions are EXECUTE-able by PUBLIC when created; this one is internal.
REVOKE ALL ON FUNCTION control_plane.runtime_node_lock_owned(uuid, text) FROM PUBLIC;
