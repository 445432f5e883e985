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
    TO control_plane_admin;

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
    TO control_plane_admin;

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
    TO control_plane_admin;

-- contract §11: sessions in creation order, optionally of one state, one keyset page at a time.
CREATE OR REPLACE FUNCTION control_plane.admin_list_sessions(
    p_state text DEFAULT NULL,
    p_limit integer DEFAULT 100,
    p_after uuid DEFAULT NULL
)
    RETURNS jsonb
    LANGUAGE plpgsql
    STABLE SECURITY DEFINER
    SET search_path = control_plane, pg_catalog, pg_temp
AS $fn$
DECLARE
    v_limit integer := page_limit(p_limit);  -- CP400
    -- Before every row: the first page.
    v_after_at timestamptz := '-infinity'::timestamptz;
    v_after_id uuid := '00000000-0000-0000-0000-000000000000'::uuid;
    v_ids uuid[];
BEGIN
    IF p_state IS NOT NULL AND p_state NOT IN ('provisioning', 'active', 'archived', 'closed') THEN
        RAISE EXCEPTION 'state must be one of provisioning, active, archived, closed'
            USING ERRCODE = 'CP400';
    END IF;
    IF p_after IS NOT NULL THEN
        -- Whatever its state now: a session that changed state between two pages is still a
        -- valid cursor.
        SELECT created_at, id INTO v_after_at, v_after_id FROM sessions WHERE id = p_after;
        IF NOT FOUND THEN
            RAISE EXCEPTION 'after must be the id of a listed session' USING ERRCODE = 'CP400';
        END IF;
    END IF;
    -- Two statements rather than `p_state IS NULL OR …`, so each walks its own index in order.
    -- One row more than the page says whether there is a next page.
    IF p_state IS NULL THEN
        v_ids := ARRAY(SELECT s.id FROM sessions s
                        WHERE (s.created_at, s.id) > (v_after_at, v_after_id)
                        ORDER BY s.created_at, s.id
                        LIMIT v_limit + 1);
    ELSE
        v_ids := ARRAY(SELECT s.id FROM sessions s
                        WHERE s.state = p_state
                          AND (s.created_at, s.id) > (v_after_at, v_after_id)
                        ORDER BY s.created_at, s.id
                        LIMIT v_limit + 1);
    END IF;
    RETURN jsonb_build_object(
        'items', coalesce((
            SELECT jsonb_agg(jsonb_build_object('sessionId', s.id,
                                                'state', s.state,
                                                'minClientVersion', s.min_client_version,
                                                'createdAt', s.created_at,
                                                'updatedAt', s.updated_at) ORDER BY u.n)
              FROM unnest(v_ids[1:v_limit]) WITH ORDINALITY u (id, n)
              JOIN sessions s ON s.id = u.id), '[]'::jsonb),
        'next', CASE WHEN cardinality(v_ids) > v_limit THEN v_ids[v_limit] END);
END
$fn$;
COMMENT ON FUNCTION control_plane.admin_list_sessions(text, integer, uuid) IS
    'Admin: one page of sessions ordered by (created_at, id), of state p_state when given: '
    '{items: [{sessionId, state, minClientVersion, createdAt, updatedAt}], next}. p_state one of '
    'provisioning, active, archived, closed (else CP400); p_limit 1..1000 (NULL → 100), else '
    'CP400. next is the id to pass as p_after for the following page, null on the last page; '
    'p_after that is no session''s id → CP400. Keyset, so a walk never repeats or skips a session '
    'that existed (in that state) throughout it. Reads one snapshot, takes no lock.';
GRANT EXECUTE ON FUNCTION control_plane.admin_list_sessions(text, integer, uuid)
    TO control_plane_admin;

-- contract §11: one session with its floor and members.
CREATE OR REPLACE FUNCTION control_plane.admin_get_session(p_session_id uuid)
    RETURNS jsonb
    LANGUAGE plpgsql
    STABLE SECURITY DEFINER
    SET search_path = control_plane, pg_catalog, pg_temp
AS $fn$
DECLARE
    v_row sessions;
BEGIN
    SELECT * INTO v_row FROM sessions WHERE id = p_session_id;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'session not found' USING ERRCODE = 'CPN04';
    END IF;
    RETURN jsonb_build_object(
        'sessionId', v_row.id,
        'state', v_row.state,
        'minClientVersion', v_row.min_client_version,
        'createdAt', v_row.created_at,
        'updatedAt', v_row.updated_at,
        'members', coalesce((
            SELECT jsonb_agg(jsonb_build_object('participantId', m.participant_id,
                                                'displayName', p.display_name,
                                                'role', m.role,
                                                'state', m.state,
                                                'joinedAt', m.joined_at,
                                                'updatedAt', m.updated_at)
                             ORDER BY m.joined_at NULLS LAST, m.participant_id)
              FROM session_memberships m
              JOIN participants p ON p.id = m.participant_id
             WHERE m.session_id = v_row.id), '[]'::jsonb));
END
$fn$;
COMMENT ON FUNCTION control_plane.admin_get_session(uuid) IS
    'Admin: {sessionId, state, minClientVersion, createdAt, updatedAt, members: [{participantId, '
    'displayName, role, state, joinedAt, updatedAt}]} — every membership in any state, in joining '
    'order (never-activated ones last). Unknown session → CPN04 (not_found).';
GRANT EXECUTE ON FUNCTION control_plane.admin_get_session(uuid) TO control_plane_admin;

-- contract §11: the session lifecycle moves forward only.
CREATE OR REPLACE FUNCTION control_plane.admin_set_session_state(p_session_id uuid, p_state text)
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
    -- FOR UPDATE: an attach reads the session FOR SHARE, so it commits entirely before or after
    -- the change and checks the state in force when it commits.
    SELECT * INTO v_row FROM sessions WHERE id = p_session_id FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'session not found' USING ERRCODE = 'CPN04';
    END IF;
    IF v_row.state <> p_state THEN
        -- Backwards → CPC07, raised by the trigger sessions_guard_state_forward (the one home
        -- of the order, which binds DBAs' UPDATEs too).
        UPDATE sessions SET state = p_state, updated_at = now()
         WHERE id = p_session_id
        RETURNING * INTO v_row;
    END IF;
    RETURN jsonb_build_object('sessionId', v_row.id, 'state', v_row.state,
                              'minClientVersion', v_row.min_client_version);
END
$fn$;
COMMENT ON FUNCTION control_plane.admin_set_session_state(uuid, text) IS
    'Admin: moves a session along provisioning → active → archived → closed (skipping states is '
    'allowed) and returns {sessionId, state, minClientVersion}. The same state is a no-op (row '
    'not rewritten); backwards → CPC07 (session.state_transition_forbidden); unknown session → '
    'CPN04. Only attach looks at the state: existing attachments are left as they are. Takes the '
    'session row FOR UPDATE.';
GRANT EXECUTE ON FUNCTION control_plane.admin_set_session_state(uuid, text) TO control_plane_admin;
