-- contract §8, §11: admin authority lives in the database, not in the HTTP tier's trust.
-- control_plane_admin is a second login role that alone may EXECUTE the admin_* functions; the
-- HTTP tier uses it (through a small second pool) for the admin surface only. A leaked
-- control_plane_api credential therefore cannot mint participants, tokens or memberships,
-- change a session or revoke a node as admin.
-- depends: 0001-schema 0005-runtime-node-events

DO $roles$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'control_plane_admin') THEN
        CREATE ROLE control_plane_admin LOGIN NOINHERIT;
    END IF;
END
$roles$;

-- The same fail-fast bounds and clock as the API role (docs/design.md).
ALTER ROLE control_plane_admin SET statement_timeout = '5s';
ALTER ROLE control_plane_admin SET lock_timeout = '3s';
ALTER ROLE control_plane_admin SET idle_in_transaction_session_timeout = '10s';
ALTER ROLE control_plane_admin SET timezone = 'UTC';

GRANT USAGE ON SCHEMA control_plane TO control_plane_admin;

-- Admin revoke was runtime_node_revoke(..., p_as_admin => true), executable by the API role.
-- It is now admin_revoke_runtime_node, executable by the admin role alone; the participant
-- revoke keeps runtime_node_revoke(token, session, node) (sql/functions recreate both).
DROP FUNCTION IF EXISTS control_plane.runtime_node_revoke(bytea, uuid, text, boolean);
DROP FUNCTION IF EXISTS control_plane.runtime_node_revoke(bytea, uuid, text, boolean, text);

-- Keyset pagination of the admin lists: (created_at, id) order, optionally by session state.
CREATE INDEX participants_created_at_id ON control_plane.participants (created_at, id);
CREATE INDEX sessions_created_at_id ON control_plane.sessions (created_at, id);
CREATE INDEX sessions_state_created_at_id ON control_plane.sessions (state, created_at, id);

-- A session's lifecycle only moves forward (contract §11); a trigger so that a DBA's UPDATE
-- obeys the same rule as admin_set_session_state.
SET ROLE control_plane_owner;

CREATE FUNCTION control_plane.sessions_guard_state_forward()
    RETURNS trigger
    LANGUAGE plpgsql
    SET search_path = control_plane, pg_catalog, pg_temp
AS $fn$
DECLARE
    c_order CONSTANT text[] := ARRAY['provisioning', 'active', 'archived', 'closed'];
BEGIN
    IF array_position(c_order, NEW.state) < array_position(c_order, OLD.state) THEN
        RAISE EXCEPTION 'session state may only move forward (provisioning → active → archived '
                        '→ closed): % → % is refused', OLD.state, NEW.state
            USING ERRCODE = 'CPC07';
    END IF;
    RETURN NEW;
END
$fn$;
COMMENT ON FUNCTION control_plane.sessions_guard_state_forward() IS
    'Trigger: refuses an UPDATE that moves a session''s state backwards along provisioning → '
    'active → archived → closed (CPC07, session.state_transition_forbidden). Skipping forward '
    'and keeping the state are allowed. Applies to DBAs too.';
REVOKE ALL ON FUNCTION control_plane.sessions_guard_state_forward() FROM PUBLIC;

CREATE TRIGGER sessions_guard_state_forward
    BEFORE UPDATE OF state ON control_plane.sessions
    FOR EACH ROW EXECUTE FUNCTION control_plane.sessions_guard_state_forward();

RESET ROLE;
