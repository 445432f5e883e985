-- Least privilege (contract §8): the API login role may EXECUTE the API functions and nothing else.
-- It has no table privilege, owns nothing, is no superuser and cannot become the owner.
-- (tests/db/test_privileges.py proves the same by actually logging in as the role.)
BEGIN;
CREATE EXTENSION IF NOT EXISTS pgtap;
SET search_path = public, pg_catalog;

SELECT plan(40);

-- The role itself -------------------------------------------------------------------------------
SELECT has_role('control_plane_api', 'the API login role exists');
SELECT has_role('control_plane_owner', 'the owner role exists');
SELECT isnt_superuser('control_plane_api', 'the API role is not a superuser');
SELECT isnt_superuser('control_plane_owner', 'the owner role is not a superuser');
SELECT is((SELECT rolcanlogin FROM pg_roles WHERE rolname = 'control_plane_api'), true,
          'the API role can log in (the app connects as it, never SET ROLE from a superuser)');
SELECT is((SELECT rolcanlogin FROM pg_roles WHERE rolname = 'control_plane_owner'), false,
          'the owner role cannot log in');
SELECT is((SELECT ARRAY[rolcreaterole, rolcreatedb, rolreplication, rolbypassrls]
             FROM pg_roles WHERE rolname = 'control_plane_api'),
          ARRAY[false, false, false, false],
          'the API role has no CREATEROLE, CREATEDB, REPLICATION or BYPASSRLS');
SELECT is(pg_has_role('control_plane_api', 'control_plane_owner', 'MEMBER'), false,
          'the API role is not a member of the owner role (no SET ROLE control_plane_owner)');
SELECT is(ARRAY(SELECT b.rolname::text FROM pg_auth_members m
                  JOIN pg_roles b ON b.oid = m.roleid
                 WHERE m.member = 'control_plane_api'::regrole ORDER BY 1),
          ARRAY[]::text[], 'the API role is a member of no role at all');

-- Owns nothing ----------------------------------------------------------------------------------
SELECT is((SELECT count(*)::int FROM pg_class WHERE relowner = 'control_plane_api'::regrole), 0,
          'the API role owns no relation');
SELECT is((SELECT count(*)::int FROM pg_proc WHERE proowner = 'control_plane_api'::regrole), 0,
          'the API role owns no function');
SELECT is((SELECT count(*)::int FROM pg_namespace WHERE nspowner = 'control_plane_api'::regrole), 0,
          'the API role owns no schema');
SELECT is((SELECT count(*)::int FROM pg_type WHERE typowner = 'control_plane_api'::regrole), 0,
          'the API role owns no type or domain');
SELECT is((SELECT count(*)::int FROM pg_database WHERE datdba = 'control_plane_api'::regrole), 0,
          'the API role owns no database');

-- Schemas ---------------------------------------------------------------------------------------
SELECT schema_privs_are('control_plane', 'control_plane_api', ARRAY['USAGE'],
                        'the API role may only use (not create in) schema control_plane');
SELECT is(has_schema_privilege('control_plane_api', 'public', 'CREATE'), false,
          'the API role cannot create objects in public');
SELECT schema_privs_are('control_plane', 'public', ARRAY[]::text[],
                        'PUBLIC has no privilege on schema control_plane');

-- Tables: nothing at all ----------------------------------------------------------------------
SELECT table_privs_are('control_plane', t, 'control_plane_api', ARRAY[]::text[],
                       format('the API role has no privilege on control_plane.%s', t))
  FROM unnest(ARRAY['participants', 'participant_tokens', 'sessions', 'session_memberships',
                    'runtime_node_attachments', 'runtime_node_presence', 'settings',
                    'sweep_state']) t;
-- Whatever tables exist now or later: no table, column or sequence privilege.
SELECT is(ARRAY(SELECT format('%s:%s', c.relname, p)
                  FROM pg_class c
                 CROSS JOIN unnest(ARRAY['SELECT', 'INSERT', 'UPDATE', 'DELETE', 'TRUNCATE',
                                         'REFERENCES', 'TRIGGER']) p
                 WHERE c.relnamespace = 'control_plane'::regnamespace
                   AND c.relkind IN ('r', 'p', 'v', 'm', 'f')
                   AND (has_table_privilege('control_plane_api', c.oid, p)
                        OR (p IN ('SELECT', 'INSERT', 'UPDATE', 'REFERENCES')
                            AND has_any_column_privilege('control_plane_api', c.oid, p)))
                 ORDER BY 1),
          ARRAY[]::text[], 'the API role has no table or column privilege in control_plane');
SELECT is(ARRAY(SELECT c.relname::text FROM pg_class c
                 WHERE c.relnamespace = 'control_plane'::regnamespace AND c.relkind = 'S'
                   AND (has_sequence_privilege('control_plane_api', c.oid, 'USAGE')
                        OR has_sequence_privilege('control_plane_api', c.oid, 'SELECT')
                        OR has_sequence_privilege('control_plane_api', c.oid, 'UPDATE'))),
          ARRAY[]::text[], 'the API role has no sequence privilege');
SELECT is(has_table_privilege('control_plane_api', 'public._yoyo_migration', 'SELECT'), false,
          'the API role cannot read yoyo''s bookkeeping either (ops_status reads it as owner)');

-- Functions: exactly the API ----------------------------------------------------------------
SELECT is(ARRAY(SELECT p.proname::text FROM pg_proc p
                 WHERE p.pronamespace = 'control_plane'::regnamespace
                   AND has_function_privilege('control_plane_api', p.oid, 'EXECUTE')
                 ORDER BY 1),
          ARRAY['ops_metrics', 'ops_status',
                'runtime_node_attach', 'runtime_node_declare', 'runtime_node_detach',
                'runtime_node_events_authorize_v2',
                'runtime_node_events_read', 'runtime_node_events_read_batch_v2',
                'runtime_node_events_read_v2',
                'runtime_node_heartbeat_batch', 'runtime_node_revoke', 'runtime_node_roster',
                'runtime_node_roster_v2', 'runtime_node_update_capabilities'],
          'the API role may EXECUTE exactly the API functions of docs/design.md');
SELECT is(ARRAY(SELECT p.oid::regprocedure::text FROM pg_proc p
                 WHERE p.pronamespace = 'control_plane'::regnamespace
                   AND (p.proacl IS NULL  -- NULL = the built-in default: EXECUTE for PUBLIC
                        OR aclcontains(p.proacl, makeaclitem(0, p.proowner, 'EXECUTE', false)))
                 ORDER BY 1),
          ARRAY[]::text[], 'PUBLIC may EXECUTE no function of control_plane');
SELECT is(has_function_privilege('control_plane_api', f, 'EXECUTE'), false,
          format('internal %s is not executable by the API role', f))
  FROM unnest(ARRAY['control_plane.caller_participant(bytea)',
                    'control_plane.runtime_node_heartbeat(bytea, text, text)',
                    'control_plane.slot_is_active(text)',
                    'control_plane.version_compare(text, text)',
                    'control_plane.version_below_floor(text, text)',
                    'control_plane.runtime_node_attachments_guard_immutable()']) f;
SELECT is(ARRAY(SELECT p.oid::regprocedure::text FROM pg_proc p
                 WHERE p.pronamespace = 'control_plane'::regnamespace
                   AND p.proname LIKE 'runtime_node_sweep%'
                   AND has_function_privilege('control_plane_api', p.oid, 'EXECUTE')),
          ARRAY[]::text[], 'the sweep (function and loop procedure, when present) is not granted');
SELECT function_privs_are('control_plane', 'admin_raise_floor',
                          ARRAY['uuid', 'control_plane.client_version'], 'control_plane_api',
                          ARRAY[]::text[], 'the API role may not EXECUTE admin_raise_floor (the admin role''s)');

-- The role's session settings (docs/design.md) ------------------------------------------------
SELECT ok((SELECT bool_or(lower(c) = 'timezone=utc')
             FROM pg_db_role_setting s CROSS JOIN unnest(s.setconfig) c
            WHERE s.setrole = 'control_plane_api'::regrole AND s.setdatabase = 0),
          'the API role runs with timezone UTC (RFC 3339 timestamps with +00:00)');
SELECT ok((SELECT bool_or(c LIKE 'statement_timeout=%')
             FROM pg_db_role_setting s CROSS JOIN unnest(s.setconfig) c
            WHERE s.setrole = 'control_plane_api'::regrole AND s.setdatabase = 0),
          'the API role has a statement_timeout');

SELECT * FROM finish();
ROLLBACK;
