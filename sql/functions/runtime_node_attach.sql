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
    v_old runtime_node_attachments;
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
    -- The (node_id, session_id) row is locked before it is written, so the event knows what the
    -- attach replaced. A row inserted concurrently by someone else makes the INSERT's ON CONFLICT
    -- DO NOTHING return nothing: look again (each round needs a concurrent insert of this very
    -- slot; three are plenty).
    FOR i IN 1..3 LOOP
        SELECT * INTO v_old FROM runtime_node_attachments a
         WHERE a.node_id = p_node_id AND a.session_id = p_session_id
           FOR NO KEY UPDATE;
        IF FOUND THEN
            -- Revoked wins (terminal, whoever asks), otherwise it belongs to another participant.
            IF v_old.state = 'revoked' THEN
                RAISE EXCEPTION 'runtime node "%" may not be attached to this session again',
                                p_node_id
                    USING ERRCODE = 'CPC02';
            END IF;
            IF v_old.participant_id <> v_caller THEN
                RAISE EXCEPTION 'runtime node "%" is already attached', p_node_id
                    USING ERRCODE = 'CPC01';
            END IF;
        END IF;
        BEGIN
            IF v_old.id IS NOT NULL THEN
                UPDATE runtime_node_attachments a
                   SET state = 'registering', capabilities = p_capabilities,
                       client_version = p_client_version, updated_at = now()
                 WHERE a.id = v_old.id
                RETURNING a.* INTO v_row;
            ELSE
                INSERT INTO runtime_node_attachments AS a
                       (session_id, participant_id, node_id, capabilities, client_version)
                VALUES (p_session_id, v_caller, p_node_id, p_capabilities, p_client_version)
                ON CONFLICT (node_id, session_id) DO NOTHING
                RETURNING a.* INTO v_row;
            END IF;
        EXCEPTION WHEN unique_violation THEN
            GET STACKED DIAGNOSTICS v_constraint = CONSTRAINT_NAME;
            IF v_constraint = 'runtime_node_attachments_one_active' THEN
                -- Active in another session (from the INSERT or the reactivating UPDATE).
                RAISE EXCEPTION 'runtime node "%" is already attached', p_node_id
                    USING ERRCODE = 'CPC01';
            END IF;
            RAISE;
        END;
        EXIT WHEN v_row.id IS NOT NULL;
    END LOOP;
    IF v_row.id IS NULL THEN
        RAISE EXCEPTION 'runtime node "%" is already attached', p_node_id USING ERRCODE = 'CPC01';
    END IF;

    -- A re-handshake that changes nothing (registering, same map, same version) writes no event.
    IF v_old.id IS NULL OR v_old.state <> 'registering'
       OR v_old.capabilities IS DISTINCT FROM v_row.capabilities
       OR v_old.client_version IS DISTINCT FROM v_row.client_version THEN
        PERFORM runtime_node_events_append(ARRAY[ROW(
            v_row.node_id, v_row.id, v_row.session_id, 'attached', true, v_old.state, false, NULL,
            'daemon', v_caller, NULL, v_row.capabilities)::runtime_node_event_draft]);
    END IF;

    RETURN jsonb_build_object(
        'attachmentId', v_row.id,
        'sessionId', v_row.session_id,
        'nodeId', v_row.node_id,
        'participantId', v_row.participant_id,
        'state', v_row.state,
        'readOnly', version_below_floor(v_row.client_version, v_floor),
        'clientVersion', v_row.client_version,
        'attachedAt', v_row.attached_at) || advertised_timing();
END
$fn$;
COMMENT ON FUNCTION control_plane.runtime_node_attach(
    bytea, uuid, uuid, text, control_plane.client_version, jsonb) IS
    'Attach a runtime node to a session (contract §6.1); returns {attachmentId, sessionId, nodeId, '
    'participantId, state, readOnly, clientVersion, attachedAt, heartbeatIntervalSeconds, '
    'degradedAfterSeconds, offlineAfterSeconds} (timing from settings now, contract §10). Order: participantId must be the '
    'caller, who must be an active owner/collaborator/runtime_contributor of the session, else '
    'CP403 (one constant message, also for an unknown session) → session state active, else CPC05 '
    '→ floor verdict (below the floor is admitted with readOnly = true) → the (node_id, '
    'session_id) row, locked, is inserted or updated: new row → registering; same owner, row offline or active → '
    'registering with capabilities and client version replaced, id and attached_at kept; row '
    'revoked → CPC02; row of another owner → CPC01; node active in another session (the partial '
    'unique index, from the INSERT or the reactivating UPDATE) → CPC01 naming only the node id. '
    'Writes one attached event (contract §9; actor daemon, the capabilities, previous state null '
    'for a new slot) unless a registering slot is re-attached with the same map and version. '
    'A refusal changes nothing. Never writes sessions, session_memberships or presence. Locks: '
    'sessions FOR SHARE → session_memberships FOR SHARE → runtime_node_attachments → the event '
    'lock.';
REVOKE ALL ON FUNCTION control_plane.runtime_node_attach(
    bytea, uuid, uuid, text, control_plane.client_version, jsonb) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION control_plane.runtime_node_attach(
    bytea, uuid, uuid, text, control_plane.client_version, jsonb) TO control_plane_api;
