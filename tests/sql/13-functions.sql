-- Every function of schema control_plane: the documented API signatures exist, and every
-- function a DBA can find carries a COMMENT, pins its search_path and belongs to the owner role.
BEGIN;
CREATE EXTENSION IF NOT EXISTS pgtap;
-- Without control_plane on the path, domain types display schema-qualified, as written below.
SET search_path = public, pg_catalog;

SELECT plan(70);

-- The SQL API of docs/design.md, with its exact signatures and result types.
CREATE TEMP TABLE api_functions (name text, args text[], returns text) ON COMMIT DROP;
INSERT INTO api_functions VALUES
    ('admin_create_participant', ARRAY['text'], 'jsonb'),
    ('admin_issue_token', ARRAY['uuid', 'text', 'integer'], 'jsonb'),
    ('admin_revoke_token', ARRAY['uuid'], 'void'),
    ('admin_create_session', ARRAY['control_plane.client_version', 'text'], 'jsonb'),
    ('admin_put_membership', ARRAY['uuid', 'uuid', 'text', 'text'], 'jsonb'),
    ('admin_raise_floor', ARRAY['uuid', 'control_plane.client_version'], 'jsonb'),
    ('runtime_node_attach',
     ARRAY['bytea', 'uuid', 'uuid', 'text', 'control_plane.client_version', 'jsonb'], 'jsonb'),
    ('runtime_node_declare', ARRAY['bytea', 'text', 'jsonb'], 'jsonb'),
    ('runtime_node_update_capabilities', ARRAY['bytea', 'text', 'jsonb', 'text', 'text'], 'jsonb'),
    ('runtime_node_heartbeat', ARRAY['bytea', 'text', 'text'], 'void'),
    ('runtime_node_heartbeat_batch', ARRAY['bytea[]', 'text[]', 'text[]'], 'text[]'),
    ('runtime_node_detach', ARRAY['bytea', 'text', 'text'], 'void'),
    ('runtime_node_roster_v2', ARRAY['bytea', 'uuid'], 'text'),
    ('runtime_node_roster', ARRAY['bytea', 'uuid'], 'json'),
    ('runtime_node_revoke', ARRAY['bytea', 'uuid', 'text', 'text'], 'void'),
    ('runtime_node_events_read_v2', ARRAY['bytea', 'uuid', 'bigint', 'integer'], 'text'),
    ('runtime_node_events_read_batch_v2', ARRAY['bytea[]', 'uuid', 'bigint', 'integer'], 'record'),
    ('runtime_node_events_authorize_v2', ARRAY['bytea[]', 'uuid[]'], 'text[]'),
    ('runtime_node_events_read', ARRAY['bytea', 'uuid', 'bigint', 'integer'], 'jsonb'),
    ('admin_session_events_v2', ARRAY['uuid', 'bigint', 'integer'], 'text'),
    ('admin_session_events', ARRAY['uuid', 'bigint', 'integer'], 'jsonb'),
    ('admin_revoke_runtime_node', ARRAY['uuid', 'text', 'text'], 'void'),
    ('admin_session_roster_v2', ARRAY['uuid'], 'text'),
    ('admin_session_roster', ARRAY['uuid'], 'jsonb'),
    ('admin_list_participants', ARRAY['integer', 'uuid'], 'jsonb'),
    ('admin_get_participant', ARRAY['uuid'], 'jsonb'),
    ('admin_list_sessions', ARRAY['text', 'integer', 'uuid'], 'jsonb'),
    ('admin_get_session', ARRAY['uuid'], 'jsonb'),
    ('admin_set_session_state', ARRAY['uuid', 'text'], 'jsonb'),
    ('ops_status', ARRAY[]::text[], 'jsonb');

SELECT has_function('control_plane', name, args, format('API function %s(%s)', name, array_to_string(args, ', ')))
  FROM api_functions ORDER BY name;
SELECT function_returns('control_plane', name, args, returns, format('%s returns %s', name, returns))
  FROM api_functions ORDER BY name;

SELECT has_function('control_plane', 'caller_participant', ARRAY['bytea'],
                    'internal caller_participant(bytea)');
SELECT function_returns('control_plane', 'caller_participant', ARRAY['bytea'], 'uuid',
                        'caller_participant returns uuid');

-- Whole-schema properties, as one test each with the offenders listed on failure -------------
SELECT is(ARRAY(SELECT p.oid::regprocedure::text FROM pg_proc p
                 WHERE p.pronamespace = 'control_plane'::regnamespace
                   AND coalesce(btrim(obj_description(p.oid, 'pg_proc')), '') = ''
                 ORDER BY 1),
          ARRAY[]::text[], 'every function and procedure has a COMMENT a DBA can read');

SELECT is(ARRAY(SELECT p.oid::regprocedure::text FROM pg_proc p
                 WHERE p.pronamespace = 'control_plane'::regnamespace
                   -- A procedure that COMMITs may not carry a SET clause (PostgreSQL forbids
                   -- it): runtime_node_sweep_loop schema-qualifies every name instead.
                   AND p.prokind <> 'p'
                   -- A SQL-standard body (slot_is_active, the version helpers) is bound at
                   -- creation: no search_path applies, and a SET clause would stop the planner
                   -- from inlining it.
                   AND p.prosqlbody IS NULL
                   AND NOT coalesce(p.proconfig @> ARRAY['search_path=control_plane, pg_catalog, pg_temp'], false)
                 ORDER BY 1),
          ARRAY[]::text[],
          'every function pins search_path = control_plane, pg_catalog, pg_temp (proconfig)');
SELECT is(ARRAY(SELECT p.oid::regprocedure::text FROM pg_proc p
                 WHERE p.pronamespace = 'control_plane'::regnamespace AND p.prosqlbody IS NOT NULL
                   AND p.proconfig IS NULL
                 ORDER BY 1),
          ARRAY['control_plane.json_timestamp_utc(timestamp with time zone)',
                'control_plane.runtime_node_event_json(control_plane.runtime_node_events)',
                'control_plane.slot_is_active(text)',
                'control_plane.version_below_floor(text,text)',
                'control_plane.version_compare(text,text)',
                'control_plane.version_key(text)',
                'control_plane.version_key_below(numeric[],numeric[])'],
          'only the inlinable helpers rely on a SQL-standard body instead of a SET');

SELECT is(ARRAY(SELECT p.oid::regprocedure::text FROM pg_proc p
                 WHERE p.pronamespace = 'control_plane'::regnamespace
                   AND p.proowner <> 'control_plane_owner'::regrole
                 ORDER BY 1),
          ARRAY[]::text[], 'every function belongs to control_plane_owner (never a superuser)');

SELECT is(ARRAY(SELECT p.oid::regprocedure::text FROM pg_proc p
                  JOIN api_functions f ON f.name = p.proname
                 WHERE p.pronamespace = 'control_plane'::regnamespace AND NOT p.prosecdef
                 ORDER BY 1),
          ARRAY[]::text[], 'every API function is SECURITY DEFINER');

SELECT is(ARRAY(SELECT p.oid::regprocedure::text FROM pg_proc p
                  JOIN pg_roles r ON r.oid = p.proowner
                 WHERE p.pronamespace = 'control_plane'::regnamespace AND p.prosecdef
                   AND r.rolsuper
                 ORDER BY 1),
          ARRAY[]::text[], 'no SECURITY DEFINER function runs with a superuser''s rights');

SELECT is((SELECT nspowner::regrole::text FROM pg_namespace WHERE nspname = 'control_plane'),
          'control_plane_owner', 'the schema belongs to control_plane_owner');
SELECT is(ARRAY(SELECT c.relname::text FROM pg_class c
                 WHERE c.relnamespace = 'control_plane'::regnamespace
                   AND c.relowner <> 'control_plane_owner'::regrole
                 ORDER BY 1),
          ARRAY[]::text[], 'every table, index and sequence belongs to control_plane_owner');

SELECT * FROM finish();
ROLLBACK;
