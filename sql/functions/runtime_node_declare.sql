-- contract §6.2: the daemon declares the capabilities it validated; the only way to online.
CREATE OR REPLACE FUNCTION control_plane.runtime_node_declare(
    p_token_sha256 bytea,
    p_node_id text,
    p_capabilities jsonb
)
    RETURNS jsonb
    LANGUAGE plpgsql
    VOLATILE SECURITY DEFINER
    SET search_path = control_plane, pg_catalog, pg_temp
AS $fn$
DECLARE
    v_slot record;
    v_old_caps jsonb;
    v_row runtime_node_attachments;
BEGIN
    IF jsonb_typeof(p_capabilities) IS DISTINCT FROM 'object' OR p_capabilities = '{}' THEN
        RAISE EXCEPTION 'capabilities must be a non-empty JSON object' USING ERRCODE = 'CP400';
    END IF;
    v_slot := runtime_node_lock_owned(caller_participant(p_token_sha256), p_node_id);  -- 401/403
    IF version_below_floor(v_slot.o_client_version, v_slot.o_floor) THEN
        RAISE EXCEPTION 'client version % is below the session''s minimum client version %',
                        v_slot.o_client_version, v_slot.o_floor
            USING ERRCODE = 'CPC04';
    END IF;
    -- Exact: the slot is locked (runtime_node_lock_owned), this statement sees its last version.
    SELECT a.capabilities INTO v_old_caps FROM runtime_node_attachments a
     WHERE a.id = v_slot.o_attachment_id;
    UPDATE runtime_node_attachments
       SET capabilities = p_capabilities, state = 'online', updated_at = now()
     WHERE id = v_slot.o_attachment_id
    RETURNING * INTO v_row;
    -- A declaration that changes nothing (online, same map) is a no-op for the history.
    IF v_slot.o_state <> 'online' OR v_old_caps IS DISTINCT FROM p_capabilities THEN
        PERFORM runtime_node_events_append(ARRAY[ROW(
            v_row.node_id, v_row.id, v_row.session_id, 'declared', true, v_slot.o_state,
            false, NULL, 'daemon', v_row.participant_id, NULL,
            v_row.capabilities)::runtime_node_event_draft]);
    END IF;
    RETURN jsonb_build_object('nodeId', v_row.node_id, 'state', v_row.state,
                              'updatedAt', v_row.updated_at) || advertised_timing();
END
$fn$;
COMMENT ON FUNCTION control_plane.runtime_node_declare(bytea, text, jsonb) IS
    'Capability declaration (contract §6.2), the only way a slot becomes online; returns {nodeId, '
    'state, updatedAt, heartbeatIntervalSeconds, degradedAfterSeconds, offlineAfterSeconds} '
    '(timing from settings now, contract §10). Capabilities must be a non-empty object (CP400). The caller must own the '
    'node''s active attachment (registering, online, degraded) and still be an active member of '
    'its session, else CP403 ''permission denied''. A client version below the session''s current '
    'floor → CPC04 (version.floor_exceeded) and nothing changes. Otherwise capabilities are '
    'replaced and the slot goes online (from online it only refreshes capabilities). Writes the attachment row '
    'and, unless it was already online with the same map, one declared event (contract §9; '
    'actor daemon, the new capabilities).';
REVOKE ALL ON FUNCTION control_plane.runtime_node_declare(bytea, text, jsonb) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION control_plane.runtime_node_declare(bytea, text, jsonb)
    TO control_plane_api;
