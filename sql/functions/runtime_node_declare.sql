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
    UPDATE runtime_node_attachments
       SET capabilities = p_capabilities, state = 'online', updated_at = now()
     WHERE id = v_slot.o_attachment_id
    RETURNING * INTO v_row;
    RETURN jsonb_build_object('nodeId', v_row.node_id, 'state', v_row.state,
                              'updatedAt', v_row.updated_at);
END
$fn$;
COMMENT ON FUNCTION control_plane.runtime_node_declare(bytea, text, jsonb) IS
    'Capability declaration (contract §6.2), the only way a slot becomes online; returns {nodeId, '
    'state, updatedAt}. Capabilities must be a non-empty object (CP400). The caller must own the '
    'node''s active attachment (registering, online, degraded) and still be an active member of '
    'its session, else CP403 ''permission denied''. A client version below the session''s current '
    'floor → CPC04 (version.floor_exceeded) and nothing changes. Otherwise capabilities are '
    'replaced and the slot goes online (from online it only refreshes capabilities). Writes only '
    'the attachment row.';
REVOKE ALL ON FUNCTION control_plane.runtime_node_declare(bytea, text, jsonb) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION control_plane.runtime_node_declare(bytea, text, jsonb)
    TO control_plane_api;
