-- The admin's side of the runtime-node surface: revoke (contract §6.7) and the roster of any
-- session (contract §11). Executable by control_plane_admin alone, so a leaked API-role
-- credential cannot act as the admin.
CREATE OR REPLACE FUNCTION control_plane.admin_revoke_runtime_node(
    p_session_id uuid,
    p_node_id text,
    p_reason text DEFAULT NULL
)
    RETURNS void
    LANGUAGE plpgsql
    VOLATILE SECURITY DEFINER
    SET search_path = control_plane, pg_catalog, pg_temp
AS $fn$
BEGIN
    PERFORM check_reason(p_reason, 'reason');  -- CP400
    PERFORM runtime_node_revoke_slot(p_session_id, p_node_id, NULL, p_reason);
END
$fn$;
COMMENT ON FUNCTION control_plane.admin_revoke_runtime_node(uuid, text, text) IS
    'Admin: revoke (contract §6.7, §9) of a node''s attachment in a session, whoever owns it. '
    'p_reason NULL or 1-512 characters, not blank (else CP400). The non-revoked attachment '
    'becomes revoked (terminal); if it was active, an existing presence row goes offline; one '
    'revoked event with actor admin and the reason; already revoked → no-op; no attachment of '
    'that node in that session (also an unknown session) → CP404 (runtimenode.not_found). Locks '
    'the attachment FOR UPDATE → presence → the event lock.';
GRANT EXECUTE ON FUNCTION control_plane.admin_revoke_runtime_node(uuid, text, text)
    TO control_plane_admin;

CREATE OR REPLACE FUNCTION control_plane.admin_session_roster_v2(p_session_id uuid)
    RETURNS text
    LANGUAGE plpgsql
    STABLE SECURITY DEFINER
    SET search_path = control_plane, pg_catalog, pg_temp
    SET plan_cache_mode = force_generic_plan  -- re-planned on every call otherwise (docs/performance.md)
AS $fn$
BEGIN
    PERFORM 1 FROM sessions WHERE id = p_session_id;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'session not found' USING ERRCODE = 'CPN04';
    END IF;
    RETURN runtime_node_roster_of(p_session_id);
END
$fn$;
COMMENT ON FUNCTION control_plane.admin_session_roster_v2(uuid) IS
    'Admin: the roster of any session (contract §11), the same JSON document (text) as '
    'runtime_node_roster_v2: {revision, nodes: [...]} — every attachment in all five states, '
    'ordered by attached_at, node_id. '
    'Unknown session → CPN04 (not_found). Writes nothing, takes no lock.';
REVOKE ALL ON FUNCTION control_plane.admin_session_roster_v2(uuid) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION control_plane.admin_session_roster_v2(uuid) TO control_plane_admin;

-- Deprecated in 0.3.0: the 0.2.0 result type (jsonb), for SQL callers. The app calls _v2.
CREATE OR REPLACE FUNCTION control_plane.admin_session_roster(p_session_id uuid)
    RETURNS jsonb
    LANGUAGE plpgsql
    STABLE SECURITY DEFINER
    SET search_path = control_plane, pg_catalog, pg_temp
AS $fn$
BEGIN
    RETURN admin_session_roster_v2(p_session_id)::jsonb;
END
$fn$;
COMMENT ON FUNCTION control_plane.admin_session_roster(uuid) IS
    'Deprecated (0.3.0; dropped in a later release): admin_session_roster_v2 as jsonb (the 0.2.0 '
    'result type). Same rules and refusals.';
REVOKE ALL ON FUNCTION control_plane.admin_session_roster(uuid) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION control_plane.admin_session_roster(uuid) TO control_plane_admin;
