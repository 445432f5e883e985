-- The roster as it was before the cost work (commit 84acb5b), kept in schema bench so that
-- bench/roster_cpu.py measures before and after in the same run: jsonb built per row, the read-only
-- verdict through version_below_floor with its SET search_path (never inlined), presence
-- hash-joined with a NOT EXISTS per row. Dropped again by the caller; never in control_plane.
SET client_min_messages = warning;
CREATE SCHEMA IF NOT EXISTS bench;
-- Numeric MAJOR.MINOR comparison with arbitrary precision: never textual ('10.0' > '9.0').
CREATE OR REPLACE FUNCTION bench.version_compare_v1(a text, b text)
    RETURNS integer
    LANGUAGE sql
    IMMUTABLE STRICT PARALLEL SAFE
    SET search_path = control_plane, pg_catalog, pg_temp
RETURN CASE
    WHEN split_part(a, '.', 1)::numeric <> split_part(b, '.', 1)::numeric
        THEN sign(split_part(a, '.', 1)::numeric - split_part(b, '.', 1)::numeric)::integer
    ELSE sign(split_part(a, '.', 2)::numeric - split_part(b, '.', 2)::numeric)::integer
END;

-- The read-only verdict of contract §4, derived, never stored.
CREATE OR REPLACE FUNCTION bench.version_below_floor_v1(p_version text, p_floor text)
    RETURNS boolean
    LANGUAGE sql
    IMMUTABLE PARALLEL SAFE
    SET search_path = control_plane, pg_catalog, pg_temp
RETURN p_floor IS NOT NULL AND bench.version_compare_v1(p_version, p_floor) < 0;
-- contract §6.6: every attachment of a session, for any active member. Reads only, takes no lock.
CREATE OR REPLACE FUNCTION bench.runtime_node_roster_v1(p_token_sha256 bytea, p_session_id uuid)
    RETURNS jsonb
    LANGUAGE plpgsql
    STABLE SECURITY DEFINER
    SET search_path = control_plane, pg_catalog, pg_temp
AS $fn$
DECLARE
    v_caller uuid;
BEGIN
    v_caller := caller_participant(p_token_sha256);  -- CP401
    IF NOT EXISTS (SELECT 1 FROM session_memberships m
                    WHERE m.session_id = p_session_id AND m.participant_id = v_caller
                      AND m.state = 'active') THEN
        RAISE EXCEPTION 'permission denied' USING ERRCODE = 'CP403';
    END IF;
    RETURN jsonb_build_object('nodes', coalesce((
        SELECT jsonb_agg(jsonb_build_object(
                   'attachmentId', a.id,
                   'nodeId', a.node_id,
                   'participantId', a.participant_id,
                   'state', a.state,
                   'healthState', p.health_state,
                   'lastHeartbeatAt', p.last_heartbeat_at,
                   'readOnly', bench.version_below_floor_v1(a.client_version, s.min_client_version),
                   'capabilities', a.capabilities,
                   'clientVersion', a.client_version,
                   'attachedAt', a.attached_at)
                   ORDER BY a.attached_at, a.node_id)
          FROM runtime_node_attachments a
          JOIN sessions s ON s.id = a.session_id
          -- Presence is per node. An inactive slot shows it only while the node is active
          -- nowhere, so one session's roster never reveals the node's life in another session.
          LEFT JOIN runtime_node_presence p
            ON p.node_id = a.node_id
           AND (a.state IN ('registering', 'online', 'degraded')
                OR NOT EXISTS (SELECT 1 FROM runtime_node_attachments o
                                WHERE o.node_id = a.node_id
                                  AND o.state IN ('registering', 'online', 'degraded')))
         WHERE a.session_id = p_session_id), '[]'::jsonb));
END
$fn$;
