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
    v_row runtime_node_attachments;
BEGIN
    IF jsonb_typeof(p_capabilities) IS DISTINCT FROM 'object' THEN
        RAISE EXCEPTION 'capabilities must be a JSON object' USING ERRCODE = 'CP400';
    END IF;
    IF p_health_state IS NOT NULL AND p_health_state NOT IN ('online', 'degraded') THEN
        RAISE EXCEPTION 'healthChanges.state must be online or degraded' USING ERRCODE = 'CP400';
    END IF;
    -- The reason is accepted and not stored; it is still validated like every other input.
    IF p_reason IS NOT NULL AND (char_length(p_reason) NOT BETWEEN 1 AND 512
                                 OR p_reason !~ '[^[:space:]]') THEN
        RAISE EXCEPTION 'healthChanges.reason must be 1 to 512 characters, not blank'
            USING ERRCODE = 'CP400';
    END IF;

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
    UPDATE runtime_node_attachments
       SET capabilities = p_capabilities,
           state = coalesce(p_health_state, state),
           updated_at = now()
     WHERE id = v_slot.o_attachment_id
    RETURNING * INTO v_row;
    RETURN jsonb_build_object('nodeId', v_row.node_id, 'state', v_row.state,
                              'updatedAt', v_row.updated_at);
END
$fn$;
COMMENT ON FUNCTION control_plane.runtime_node_update_capabilities(bytea, text, jsonb, text, text) IS
    'Capability update (contract §6.3); returns {nodeId, state, updatedAt} with the 5-value slot state. '
    'p_health_state is NULL, online or degraded (else CP400); p_reason is validated, not stored. '
    'Order: the caller must own the node''s active attachment and still be an active member of '
    'its session, else CP403 ''permission denied'' → client version below the current floor → '
    'CPC04 (version.floor_exceeded) → registering with online requested → CPC03 '
    '(capabilityupdate_conflict; only a declaration brings a node online) → capabilities fully '
    'replaced (a missing key is a removal), state = p_health_state when given, else unchanged. '
    'Writes only the attachment row; a refusal changes nothing.';
REVOKE ALL ON FUNCTION control_plane.runtime_node_update_capabilities(
    bytea, text, jsonb, text, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION control_plane.runtime_node_update_capabilities(
    bytea, text, jsonb, text, text) TO control_plane_api;
