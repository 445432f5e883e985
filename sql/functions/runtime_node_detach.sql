-- contract §6.5: the owner takes the node's active slot offline. Idempotent; revoked is never left.
CREATE OR REPLACE FUNCTION control_plane.runtime_node_detach(
    p_token_sha256 bytea,
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
    v_id uuid;
    v_session uuid;
    v_owner uuid;
    v_state text;
    v_health text;
BEGIN
    PERFORM check_reason(p_reason, 'reason');  -- CP400
    v_caller := caller_participant(p_token_sha256);  -- CP401
    -- Each extra round needs a concurrent change of this very slot; three is plenty.
    FOR i IN 1..3 LOOP
        SELECT a.id, a.session_id, a.participant_id INTO v_id, v_session, v_owner
          FROM runtime_node_attachments a
         WHERE a.node_id = p_node_id AND slot_is_active(a.state);
        IF NOT FOUND THEN
            RETURN;  -- nothing active: a no-op
        END IF;
        IF v_owner <> v_caller THEN
            -- Not the owner: an active member of that session may see the node (403); anyone
            -- else may not, and gets the same no-op as for an unknown node.
            PERFORM 1 FROM session_memberships m
             WHERE m.session_id = v_session AND m.participant_id = v_caller AND m.state = 'active'
               FOR SHARE;
            IF FOUND THEN
                RAISE EXCEPTION 'permission denied' USING ERRCODE = 'CP403';
            END IF;
            RETURN;
        END IF;
        -- The owner may always detach, even with an inactive membership (else the node id would
        -- be pinned forever). FOR UPDATE conflicts with a heartbeat's KEY SHARE: a beat in
        -- flight commits first and is then overwritten below; a later beat is refused.
        SELECT a.state INTO v_state FROM runtime_node_attachments a
         WHERE a.id = v_id AND slot_is_active(a.state)
           FOR UPDATE;
        IF FOUND THEN
            UPDATE runtime_node_attachments SET state = 'offline', updated_at = now()
             WHERE id = v_id;
            -- Update only: a node that never beat gets no presence row. Locked first to know
            -- the health it leaves (the event's previous health).
            SELECT p.health_state INTO v_health FROM runtime_node_presence p
             WHERE p.node_id = p_node_id FOR UPDATE;
            UPDATE runtime_node_presence SET health_state = 'offline'
             WHERE node_id = p_node_id AND health_state <> 'offline';
            -- One detached event carries both axes (last step: takes the event lock).
            PERFORM runtime_node_events_append(ARRAY[ROW(
                p_node_id, v_id, v_session, 'detached', true, v_state, true, v_health,
                'daemon', v_caller, p_reason, NULL)::runtime_node_event_draft]);
            RETURN;
        END IF;
    END LOOP;
END
$fn$;
COMMENT ON FUNCTION control_plane.runtime_node_detach(bytea, text, text) IS
    'Detach (contract §6.5, §9). p_reason NULL or 1-512 characters, not blank (else CP400). '
    'Unknown token → CP401. Finds the node''s active attachment (registering, online, degraded); '
    'none → no-op. The owner (even with an inactive membership) takes it offline and sets an '
    'existing presence row offline (never inserts one, leaves last_heartbeat_at alone), and '
    'writes one detached event (actor daemon, both axes before/after, the reason). An active '
    'member of that session who is not the owner → CP403 ''permission denied''. Anyone else → '
    'the same no-op as an unknown node. A no-op or refusal writes no event. Never flips revoked, '
    'never touches memberships. Locks session_memberships FOR SHARE → the attachment FOR UPDATE '
    '(serializing with heartbeats'' KEY SHARE) → presence → the event lock.';
REVOKE ALL ON FUNCTION control_plane.runtime_node_detach(bytea, text, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION control_plane.runtime_node_detach(bytea, text, text)
    TO control_plane_api;
