-- Admin authority lives in the database (contract §8, §11): control_plane_admin alone may EXECUTE
-- the admin_* functions, and it may EXECUTE nothing else. The API role is refused every one of
-- them — proven here by calling each one as each role, and by the catalog.
-- (tests/db/test_privileges.py proves the same by actually logging in as the roles.)
BEGIN;
CREATE EXTENSION IF NOT EXISTS pgtap;
SET search_path = public, pg_catalog;

SELECT plan(21);

-- The role itself -------------------------------------------------------------------------------
SELECT has_role('control_plane_admin', 'the admin login role exists');
SELECT isnt_superuser('control_plane_admin', 'the admin role is not a superuser');
SELECT is((SELECT ARRAY[rolcanlogin, rolinherit, rolcreaterole, rolcreatedb, rolreplication,
                        rolbypassrls]
             FROM pg_roles WHERE rolname = 'control_plane_admin'),
          ARRAY[true, false, false, false, false, false],
          'the admin role logs in, NOINHERIT, no CREATEROLE/CREATEDB/REPLICATION/BYPASSRLS');
SELECT is(ARRAY(SELECT b.rolname::text FROM pg_auth_members m JOIN pg_roles b ON b.oid = m.roleid
                 WHERE m.member = 'control_plane_admin'::regrole
                    OR m.roleid = 'control_plane_admin'::regrole
                 ORDER BY 1),
          ARRAY[]::text[], 'no role is a member of the admin role, and it is a member of none');
SELECT is((SELECT count(*)::int FROM pg_class WHERE relowner = 'control_plane_admin'::regrole)
          + (SELECT count(*)::int FROM pg_proc WHERE proowner = 'control_plane_admin'::regrole)
          + (SELECT count(*)::int FROM pg_namespace WHERE nspowner = 'control_plane_admin'::regrole)
          + (SELECT count(*)::int FROM pg_type WHERE typowner = 'control_plane_admin'::regrole),
          0, 'the admin role owns nothing');
SELECT schema_privs_are('control_plane', 'control_plane_admin', ARRAY['USAGE'],
                        'the admin role may only use (not create in) schema control_plane');
SELECT is(ARRAY(SELECT format('%s:%s', c.relname, p)
                  FROM pg_class c
                 CROSS JOIN unnest(ARRAY['SELECT', 'INSERT', 'UPDATE', 'DELETE', 'TRUNCATE',
                                         'REFERENCES', 'TRIGGER']) p
                 WHERE c.relnamespace = 'control_plane'::regnamespace
                   AND c.relkind IN ('r', 'p', 'v', 'm', 'f', 'S')
                   AND has_table_privilege('control_plane_admin', c.oid, p)
                 ORDER BY 1),
          ARRAY[]::text[], 'the admin role has no table privilege in control_plane');
SELECT ok((SELECT bool_or(lower(c) = 'timezone=utc') AND bool_or(c LIKE 'statement_timeout=%')
             FROM pg_db_role_setting s CROSS JOIN unnest(s.setconfig) c
            WHERE s.setrole = 'control_plane_admin'::regrole AND s.setdatabase = 0),
          'the admin role runs with timezone UTC and a statement_timeout, like the API role');

-- The catalog: who may EXECUTE what ---------------------------------------------------------------
SELECT is(ARRAY(SELECT p.proname::text FROM pg_proc p
                 WHERE p.pronamespace = 'control_plane'::regnamespace
                   AND has_function_privilege('control_plane_admin', p.oid, 'EXECUTE')
                 ORDER BY 1),
          ARRAY(SELECT p.proname::text FROM pg_proc p
                 WHERE p.pronamespace = 'control_plane'::regnamespace
                   AND p.proname LIKE 'admin\_%'
                 ORDER BY 1),
          'the admin role may EXECUTE exactly the admin_* functions');
SELECT is(ARRAY(SELECT p.oid::regprocedure::text FROM pg_proc p
                 WHERE p.pronamespace = 'control_plane'::regnamespace
                   AND p.proname LIKE 'admin\_%'
                   AND has_function_privilege('control_plane_api', p.oid, 'EXECUTE')
                 ORDER BY 1),
          ARRAY[]::text[], 'the API role may EXECUTE no admin_* function');
SELECT ok(NOT has_function_privilege('control_plane_admin', f, 'EXECUTE'),
          format('the admin role may not EXECUTE internal %s', f))
  FROM unnest(ARRAY['control_plane.runtime_node_revoke_slot(uuid, text, uuid, text)',
                    'control_plane.runtime_node_roster_of(uuid)',
                    'control_plane.page_limit(integer)']) f;

-- Calling every admin function as each role -------------------------------------------------------
-- Each admin_* function with NULL arguments: EXECUTE is checked before the arguments matter.
-- The result is the SQLSTATE (00000 when it ran to the end); SET LOCAL ROLE inside the block is
-- undone by the block's own rollback on error and by the RESET on success.
CREATE FUNCTION pg_temp.sqlstate_as(p_role text, p_call text) RETURNS text
    LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE format('SET LOCAL ROLE %I', p_role);
    EXECUTE p_call;
    RESET ROLE;
    RETURN '00000';
EXCEPTION WHEN OTHERS THEN
    RETURN SQLSTATE;
END
$$;
CREATE TEMP TABLE admin_calls ON COMMIT DROP AS
SELECT p.oid::regprocedure::text AS sig,
       format('SELECT %s(%s)', p.oid::regproc,
              (SELECT string_agg(format('NULL::%s', format_type(t, NULL)), ', ' ORDER BY i)
                 FROM unnest(p.proargtypes::oid[]) WITH ORDINALITY a (t, i))) AS call
  FROM pg_proc p
 WHERE p.pronamespace = 'control_plane'::regnamespace
   AND p.proname LIKE 'admin\_%';

SELECT ok((SELECT count(*) FROM admin_calls) >= 13, 'every admin_* function is called below');
SELECT is(ARRAY(SELECT sig || ' → ' || pg_temp.sqlstate_as('control_plane_api', call)
                  FROM admin_calls ORDER BY sig),
          ARRAY(SELECT sig || ' → 42501' FROM admin_calls ORDER BY sig),
          'the API role is refused (42501 insufficient_privilege) by every admin_* function');
SELECT is(ARRAY(SELECT sig FROM admin_calls
                 WHERE pg_temp.sqlstate_as('control_plane_admin', call) = '42501' ORDER BY sig),
          ARRAY[]::text[], 'the admin role passes the EXECUTE check of every admin_* function');
SELECT is(current_user::text, session_user::text, 'the role switches were all undone');

-- As the admin role, end to end --------------------------------------------------------------------
SET LOCAL ROLE control_plane_admin;
SELECT control_plane.admin_create_participant('role test') ->> 'participantId' AS p \gset
SELECT control_plane.admin_create_session() ->> 'sessionId' AS s \gset
SELECT is(control_plane.admin_put_membership(:'s', :'p', 'owner', 'active') ->> 'role', 'owner',
          'as the admin role: put a membership');
SELECT is(control_plane.admin_get_session(:'s') #>> '{members,0,participantId}', :'p',
          'as the admin role: read the session with its members');
SELECT throws_ok($$SELECT control_plane.runtime_node_roster(NULL, gen_random_uuid())$$, '42501',
                 NULL, 'the admin role cannot call the participants'' API');
SELECT throws_ok($$SELECT count(*) FROM control_plane.participant_tokens$$, '42501', NULL,
                 'the admin role cannot read a table directly');
RESET ROLE;

SELECT * FROM finish();
ROLLBACK;
