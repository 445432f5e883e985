-- contract §6.3: full replacement of the capability map, optionally with a self-reported health
-- change of the slot (online|degraded; registering → online is a declaration's job).
CREATE OR REPLACE FUNCTION control_plane.runtime_node_update_capabilities(
    p_token_sha256 bytea,
    p_node_id text,
    p_capabilities jsonb,
    p_health_state text DEFAULT NULL,
    p_reason text DEFAULT NULL
)
    RETURNS jsonb
    LANGUAGE plpgsql
    VOLATILE SECURITY DEFINER
    SET search_path = control_plane, pg_catalog, pg_temp
AS $fn$
DECLARE
    v_slot record;
    v_old_caps jsonb;
    v_caps_changed boolean;
    v_row runtime_node_attachments;
BEGIN
    IF jsonb_typeof(p_capabilities) IS DISTINCT FROM 'object' THEN
        RAISE EXCEPTION 'capabilities must be a JSON object' USING ERRCODE = 'CP400';
    END IF;
    IF p_health_state IS NOT NULL AND p_health_state NOT IN ('online', 'degraded') THEN
        RAISE EXCEPTION 'healthChanges.state must be online or degraded' USING ERRCODE = 'CP400';
    END IF;
    PERFORM check_reason(p_reason, 'healthChanges.reason');  -- stored in the event

    v_slot := runtime_node_lock_owned(caller_participant(p_token_sha256), p_node_id);  -- 401/403
    -- The floor gate comes before the state rule (contract §6.3).
    IF version_below_floor(v_slot.o_client_version, v_slot.o_floor) THEN
        RAISE EXCEPTION 'client version % is below the session''s minimum client version %',
                        v_slot.o_client_version, v_slot.o_floor
            USING ERRCODE = 'CPC04';
    END IF;
    IF v_slot.o_state = 'registering' AND p_health_state = 'online' THEN
        RAISE EXCEPTION 'only a capability declaration brings a registering node online'
            USING ERRCODE = 'CPC03';
    END IF;
    -- Exact: the slot is locked (runtime_node_lock_owned), this statement sees its last version.
    SELECT a.capabilities INTO v_old_caps FROM runtime_node_attachments a
     WHERE a.id = v_slot.o_attachment_id;
    UPDATE runtime_node_attachments
       SET capabilities = p_capabilities,
           state = coalesce(p_health_state, state),
           updated_at = now()
     WHERE id = v_slot.o_attachment_id
    RETURNING * INTO v_row;
    -- capabilities_updated when the map changed (with or without a state change), state_changed
    -- when only the state moved, nothing when neither did.
    v_caps_changed := v_old_caps IS DISTINCT FROM v_row.capabilities;
    IF v_caps_changed OR v_row.state <> v_slot.o_state THEN
        PERFORM runtime_node_events_append(ARRAY[ROW(
            v_row.node_id, v_row.id, v_row.session_id,
            CASE WHEN v_caps_changed THEN 'capabilities_updated' ELSE 'state_changed' END,
            true, v_slot.o_state, false, NULL, 'daemon', v_row.participant_id, p_reason,
            CASE WHEN v_caps_changed THEN v_row.capabilities END)::runtime_node_event_draft]);
    END IF;
    RETURN jsonb_build_object('nodeId', v_row.node_id, 'state', v_row.state,
                              'updatedAt', v_row.updated_at) || advertised_timing();
END
$fn$;
COMMENT ON FUNCTION control_plane.runtime_node_update_capabilities(bytea, text, jsonb, text, text) IS
    'Capability update (contract §6.3); returns {nodeId, state, updatedAt, '
    'heartbeatIntervalSeconds, degradedAfterSeconds, offlineAfterSeconds} with the 5-value slot '
    'state and the timing from settings now (contract §10). p_health_state is NULL, online or '
    'degraded (else CP400); p_reason NULL or 1-512 characters, not blank (else CP400). '
    'Order: the caller must own the node''s active attachment and still be an active member of '
    'its session, else CP403 ''permission denied'' → client version below the current floor → '
    'CPC04 (version.floor_exceeded) → registering with online requested → CPC03 '
    '(capabilityupdate_conflict; only a declaration brings a node online) → capabilities fully '
    'replaced (a missing key is a removal), state = p_health_state when given, else unchanged. '
    'Writes the attachment row and one event (contract §9, actor daemon, reason p_reason): '
    'capabilities_updated (with the new map) when the map changed, state_changed when only the '
    'state did, none when neither did. A refusal changes nothing.';
REVOKE ALL ON FUNCTION control_plane.runtime_node_update_capabilities(
    bytea, text, jsonb, text, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION control_plane.runtime_node_update_capabilities(
    bytea, text, jsonb, text, text) TO control_plane_api;
