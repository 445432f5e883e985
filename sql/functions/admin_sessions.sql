CREATE OR REPLACE FUNCTION control_plane.admin_create_session(
    p_min_client_version control_plane.client_version DEFAULT NULL,
    p_state text DEFAULT 'active'
)
    RETURNS jsonb
    LANGUAGE plpgsql
    VOLATILE SECURITY DEFINER
    SET search_path = control_plane, pg_catalog, pg_temp
AS $fn$
DECLARE
    v_row sessions;
BEGIN
    IF p_state IS NULL OR p_state NOT IN ('provisioning', 'active', 'archived', 'closed') THEN
        RAISE EXCEPTION 'state must be one of provisioning, active, archived, closed'
            USING ERRCODE = 'CP400';
    END IF;
    INSERT INTO sessions (state, min_client_version)
    VALUES (p_state, p_min_client_version)
    RETURNING * INTO v_row;
    RETURN jsonb_build_object('sessionId', v_row.id, 'state', v_row.state,
                              'minClientVersion', v_row.min_client_version);
END
$fn$;
COMMENT ON FUNCTION control_plane.admin_create_session(control_plane.client_version, text) IS
    'Admin: creates a session (default state active, optional version floor) and returns '
    '{sessionId, state, minClientVersion}.';
GRANT EXECUTE ON FUNCTION control_plane.admin_create_session(control_plane.client_version, text)
    TO control_plane_api;

CREATE OR REPLACE FUNCTION control_plane.admin_put_membership(
    p_session_id uuid,
    p_participant_id uuid,
    p_role text,
    p_state text
)
    RETURNS jsonb
    LANGUAGE plpgsql
    VOLATILE SECURITY DEFINER
    SET search_path = control_plane, pg_catalog, pg_temp
AS $fn$
DECLARE
    v_row session_memberships;
BEGIN
    IF p_role IS NULL OR p_role NOT IN ('owner', 'collaborator', 'runtime_contributor', 'viewer') THEN
        RAISE EXCEPTION 'role must be one of owner, collaborator, runtime_contributor, viewer'
            USING ERRCODE = 'CP400';
    END IF;
    IF p_state IS NULL OR p_state NOT IN ('pending', 'active', 'suspended', 'revoked') THEN
        RAISE EXCEPTION 'state must be one of pending, active, suspended, revoked'
            USING ERRCODE = 'CP400';
    END IF;
    -- Lock order: sessions → session_memberships.
    PERFORM 1 FROM sessions WHERE id = p_session_id FOR SHARE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'session not found' USING ERRCODE = 'CPN04';
    END IF;
    PERFORM 1 FROM participants WHERE id = p_participant_id FOR KEY SHARE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'participant not found' USING ERRCODE = 'CPN04';
    END IF;
    INSERT INTO session_memberships AS m (session_id, participant_id, role, state, joined_at)
    VALUES (p_session_id, p_participant_id, p_role, p_state,
            CASE WHEN p_state = 'active' THEN now() END)
    ON CONFLICT (session_id, participant_id) DO UPDATE
       SET role = EXCLUDED.role,
           state = EXCLUDED.state,
           -- joined_at records the first activation and is never rewritten.
           joined_at = coalesce(m.joined_at, EXCLUDED.joined_at),
           updated_at = now()
    RETURNING * INTO v_row;
    RETURN jsonb_build_object('sessionId', v_row.session_id, 'participantId', v_row.participant_id,
                              'role', v_row.role, 'state', v_row.state,
                              'joinedAt', v_row.joined_at);
END
$fn$;
COMMENT ON FUNCTION control_plane.admin_put_membership(uuid, uuid, text, text) IS
    'Admin: creates or updates a participant''s membership of a session (any session state) and '
    'returns {sessionId, participantId, role, state, joinedAt}. joinedAt is set on the first '
    'activation and never rewritten. Unknown session or participant → CPN04 (not_found).';
GRANT EXECUTE ON FUNCTION control_plane.admin_put_membership(uuid, uuid, text, text)
    TO control_plane_api;

CREATE OR REPLACE FUNCTION control_plane.admin_raise_floor(
    p_session_id uuid,
    p_min_client_version control_plane.client_version
)
    RETURNS jsonb
    LANGUAGE plpgsql
    VOLATILE SECURITY DEFINER
    SET search_path = control_plane, pg_catalog, pg_temp
AS $fn$
DECLARE
    v_current control_plane.client_version;
BEGIN
    -- FOR UPDATE: writes that read the floor FOR SHARE serialize with the raise, so no write is
    -- ever accepted below the floor in force when it commits.
    SELECT min_client_version INTO v_current FROM sessions WHERE id = p_session_id FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'session not found' USING ERRCODE = 'CPN04';
    END IF;
    IF p_min_client_version IS NULL
       OR (v_current IS NOT NULL AND version_compare(p_min_client_version, v_current) < 0) THEN
        RAISE EXCEPTION 'the client version floor may only be raised'
            USING ERRCODE = 'CPC06';
    END IF;
    IF v_current IS NULL OR version_compare(p_min_client_version, v_current) > 0 THEN
        UPDATE sessions SET min_client_version = p_min_client_version, updated_at = now()
         WHERE id = p_session_id;
        v_current := p_min_client_version;
    END IF;
    RETURN jsonb_build_object('sessionId', p_session_id, 'minClientVersion', v_current);
END
$fn$;
COMMENT ON FUNCTION control_plane.admin_raise_floor(uuid, control_plane.client_version) IS
    'Admin: raises a session''s minimum client version. The same value is a no-op; lowering or '
    'clearing it → CPC06 (session.floor_lowering_forbidden). Takes the session row FOR UPDATE so '
    'it serializes with every version-sensitive write, and applies at once to every node.';
GRANT EXECUTE ON FUNCTION control_plane.admin_raise_floor(uuid, control_plane.client_version)
    TO control_plane_api;
