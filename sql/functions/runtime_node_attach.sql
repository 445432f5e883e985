-- contract §6.1: a runtime node joins a live session. One upsert on (node_id, session_id); the
-- partial unique index runtime_node_attachments_one_active alone keeps a node active in at most
-- one session (no read-then-write). Lock order: sessions → session_memberships → attachments.
CREATE OR REPLACE FUNCTION control_plane.runtime_node_attach(
    p_token_sha256 bytea,
    p_session_id uuid,
    p_participant_id uuid,
    p_node_id text,
    p_client_version control_plane.client_version,
    p_capabilities jsonb
)
    RETURNS jsonb
    LANGUAGE plpgsql
    VOLATILE SECURITY DEFINER
    SET search_path = control_plane, pg_catalog, pg_temp
AS $fn$
DECLARE
    v_caller uuid;
    v_session_state text;
    v_floor client_version;
    v_row runtime_node_attachments;
    v_constraint text;
BEGIN
    -- Input shape (the caller's own fields; the HTTP schema already guarantees these). The
    -- node_id domain is the one definition of a valid node id (its CHECK → 23514 → 400).
    IF p_node_id IS NULL THEN
        RAISE EXCEPTION 'nodeId is required' USING ERRCODE = 'CP400';
    END IF;
    PERFORM p_node_id::node_id;
    IF p_client_version IS NULL THEN
        RAISE EXCEPTION 'clientVersion is required' USING ERRCODE = 'CP400';
    END IF;
    IF jsonb_typeof(p_capabilities) IS DISTINCT FROM 'object' THEN
        RAISE EXCEPTION 'capabilities must be a JSON object' USING ERRCODE = 'CP400';
    END IF;

    v_caller := caller_participant(p_token_sha256);  -- CP401

    -- One uniform 403 for: someone else's participantId, unknown session, no membership,
    -- inactive membership, viewer role.
    IF p_participant_id IS DISTINCT FROM v_caller THEN
        RAISE EXCEPTION 'permission denied' USING ERRCODE = 'CP403';
    END IF;
    SELECT s.state, s.min_client_version INTO v_session_state, v_floor
      FROM sessions s WHERE s.id = p_session_id FOR SHARE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'permission denied' USING ERRCODE = 'CP403';
    END IF;
    PERFORM 1 FROM session_memberships m
     WHERE m.session_id = p_session_id AND m.participant_id = v_caller
       AND m.state = 'active' AND m.role IN ('owner', 'collaborator', 'runtime_contributor')
       FOR SHARE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'permission denied' USING ERRCODE = 'CP403';
    END IF;

    IF v_session_state <> 'active' THEN
        RAISE EXCEPTION 'the session is not active' USING ERRCODE = 'CPC05';
    END IF;

    -- The floor verdict (below the floor is admitted read-only) is derived in the result below.
    BEGIN
        INSERT INTO runtime_node_attachments AS a
               (session_id, participant_id, node_id, capabilities, client_version)
        VALUES (p_session_id, v_caller, p_node_id, p_capabilities, p_client_version)
        ON CONFLICT (node_id, session_id) DO UPDATE
           SET state = 'registering',
               capabilities = EXCLUDED.capabilities,
               client_version = EXCLUDED.client_version,
               updated_at = now()
         WHERE a.participant_id = EXCLUDED.participant_id AND a.state <> 'revoked'
        RETURNING a.* INTO v_row;
    EXCEPTION WHEN unique_violation THEN
        GET STACKED DIAGNOSTICS v_constraint = CONSTRAINT_NAME;
        IF v_constraint = 'runtime_node_attachments_one_active' THEN
            -- Active in another session (from the INSERT or the reactivating UPDATE).
            RAISE EXCEPTION 'runtime node "%" is already attached', p_node_id
                USING ERRCODE = 'CPC01';
        END IF;
        RAISE;
    END;

    IF v_row.id IS NULL THEN
        -- The conflicting row exists and is locked by ON CONFLICT: revoked wins (terminal,
        -- whoever asks), otherwise it belongs to another participant.
        IF EXISTS (SELECT 1 FROM runtime_node_attachments a
                    WHERE a.node_id = p_node_id AND a.session_id = p_session_id
                      AND a.state = 'revoked') THEN
            RAISE EXCEPTION 'runtime node "%" may not be attached to this session again', p_node_id
                USING ERRCODE = 'CPC02';
        END IF;
        RAISE EXCEPTION 'runtime node "%" is already attached', p_node_id
            USING ERRCODE = 'CPC01';
    END IF;

    RETURN jsonb_build_object(
        'attachmentId', v_row.id,
        'sessionId', v_row.session_id,
        'nodeId', v_row.node_id,
        'participantId', v_row.participant_id,
        'state', v_row.state,
        'readOnly', version_below_floor(v_row.client_version, v_floor),
        'clientVersion', v_row.client_version,
        'attachedAt', v_row.attached_at);
END
$fn$;
COMMENT ON FUNCTION control_plane.runtime_node_attach(
    bytea, uuid, uuid, text, control_plane.client_version, jsonb) IS
    'Attach a runtime node to a session (contract §6.1); returns {attachmentId, sessionId, nodeId, '
    'participantId, state, readOnly, clientVersion, attachedAt}. Order: participantId must be the '
    'caller, who must be an active owner/collaborator/runtime_contributor of the session, else '
    'CP403 (one constant message, also for an unknown session) → session state active, else CPC05 '
    '→ floor verdict (below the floor is admitted with readOnly = true) → one upsert on '
    '(node_id, session_id): new row → registering; same owner, row offline or active → '
    'registering with capabilities and client version replaced, id and attached_at kept; row '
    'revoked → CPC02; row of another owner → CPC01; node active in another session (the partial '
    'unique index, from the INSERT or the reactivating UPDATE) → CPC01 naming only the node id. '
    'A refusal changes nothing. Never writes sessions, session_memberships or presence. Locks: '
    'sessions FOR SHARE → session_memberships FOR SHARE → runtime_node_attachments.';
REVOKE ALL ON FUNCTION control_plane.runtime_node_attach(
    bytea, uuid, uuid, text, control_plane.client_version, jsonb) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION control_plane.runtime_node_attach(
    bytea, uuid, uuid, text, control_plane.client_version, jsonb) TO control_plane_api;
