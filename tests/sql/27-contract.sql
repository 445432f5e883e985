-- The lifecycle functions' contract (docs/design.md, contract §5, §8): SECURITY DEFINER with a pinned
-- search_path, a COMMENT for DBAs, EXECUTE granted to the API role (and the internal helper not),
-- the API role reaching data only through them, and one byte-identical 403 across operations.
BEGIN;
CREATE EXTENSION IF NOT EXISTS pgtap;
SET search_path = control_plane, public, pg_catalog;
\ir _lifecycle_fixtures.psql

SELECT plan(94);

CREATE TEMP TABLE api_fn (sig text PRIMARY KEY);
INSERT INTO api_fn VALUES
    ('control_plane.runtime_node_attach(bytea,uuid,uuid,text,control_plane.client_version,jsonb)'),
    ('control_plane.runtime_node_declare(bytea,text,jsonb)'),
    ('control_plane.runtime_node_update_capabilities(bytea,text,jsonb,text,text)'),
    ('control_plane.runtime_node_heartbeat(bytea,text,text)'),
    ('control_plane.runtime_node_heartbeat_batch(bytea[],text[],text[])'),
    ('control_plane.runtime_node_detach(bytea,text,text)'),
    ('control_plane.runtime_node_events_read(bytea,uuid,bigint,integer)'),
    ('control_plane.runtime_node_events_read_v2(bytea,uuid,bigint,integer)'),
    ('control_plane.runtime_node_events_read_batch_v2(bytea[],uuid,bigint,integer)'),
    ('control_plane.runtime_node_events_authorize_v2(bytea[],uuid[])'),
    ('control_plane.runtime_node_roster(bytea,uuid)'),
    ('control_plane.runtime_node_roster_v2(bytea,uuid)'),
    ('control_plane.runtime_node_revoke(bytea,uuid,text,text)');

SELECT ok((SELECT prosecdef FROM pg_proc WHERE oid = sig::regprocedure), format('%s is SECURITY DEFINER', sig))
  FROM api_fn;
SELECT ok((SELECT 'search_path=control_plane, pg_catalog, pg_temp' = ANY (proconfig)
             FROM pg_proc WHERE oid = sig::regprocedure), format('%s pins search_path', sig))
  FROM api_fn;
SELECT ok(length(obj_description(sig::regprocedure, 'pg_proc')) > 100, format('%s has a COMMENT', sig))
  FROM api_fn;
SELECT ok(has_function_privilege('control_plane_api', sig, 'EXECUTE'),
          format('control_plane_api may EXECUTE %s', sig))
  FROM api_fn WHERE sig <> 'control_plane.runtime_node_heartbeat(bytea,text,text)';
SELECT ok(NOT has_function_privilege('control_plane_api',
                                     'control_plane.runtime_node_heartbeat(bytea,text,text)', 'EXECUTE'),
          'the single-beat function is for psql users: the app calls the batch, the API role may not');
SELECT is((SELECT pg_get_userbyid(proowner) FROM pg_proc WHERE oid = sig::regprocedure),
          'control_plane_owner', format('%s is owned by control_plane_owner', sig))
  FROM api_fn;
SELECT ok(NOT has_function_privilege('control_plane_api',
                                     'control_plane.runtime_node_lock_owned(uuid,text)', 'EXECUTE'),
          'the internal helper runtime_node_lock_owned is not granted');
SELECT ok(length(obj_description('control_plane.runtime_node_lock_owned(uuid,text)'::regprocedure,
                                 'pg_proc')) > 100, 'the internal helper has a COMMENT');
SELECT ok(NOT EXISTS (SELECT 1 FROM pg_proc p, aclexplode(coalesce(p.proacl, acldefault('f', p.proowner))) a
                      WHERE p.oid = sig::regprocedure AND a.grantee = 0),
          format('PUBLIC may not execute %s', sig))
  FROM (SELECT sig FROM api_fn
        UNION ALL SELECT 'control_plane.runtime_node_lock_owned(uuid,text)') f;

-- The API role end to end: only through the functions ---------------------------------------------
DO $$
BEGIN
    PERFORM pg_temp.mk(x) FROM unnest(ARRAY['ann', 'bob']) x;
    PERFORM pg_temp.mks('s1');
    PERFORM pg_temp.member('s1', 'ann', 'runtime_contributor');
    PERFORM pg_temp.member('s1', 'bob', 'viewer');
END $$;
-- The API role cannot read the fixture tables: bind the values as psql variables.
SELECT pg_temp.d('ann') AS ann, pg_temp.d('bob') AS bob, pg_temp.p('ann') AS ann_id,
       pg_temp.s('s1') AS s1, pg_temp.n('n1') AS n1 \gset
SET LOCAL ROLE control_plane_api;
SELECT is(control_plane.runtime_node_attach(:'ann', :'s1', :'ann_id', :'n1', '1.0', '{"a": 1}') ->> 'state',
          'registering', 'as the API role: attach');
SELECT is(control_plane.runtime_node_declare(:'ann', :'n1', '{"a": 2}') ->> 'state', 'online',
          'as the API role: declare');
SELECT is(control_plane.runtime_node_update_capabilities(:'ann', :'n1', '{"a": 3}', 'degraded', 'why') ->> 'state',
          'degraded', 'as the API role: capability update');
SELECT throws_ok(format($$SELECT control_plane.runtime_node_heartbeat(%L, %L, 'online')$$, :'ann', :'n1'),
                 '42501', NULL, 'as the API role: the single-beat function is not granted');
SELECT is(control_plane.runtime_node_heartbeat_batch(ARRAY[:'ann'::bytea], ARRAY[:'n1'], ARRAY['online']),
          ARRAY[NULL]::text[], 'as the API role: batch heartbeat (NULL = accepted)');
SELECT is(jsonb_array_length(control_plane.runtime_node_roster_v2(:'bob', :'s1')::jsonb -> 'nodes'), 1,
          'as the API role: roster');
SELECT lives_ok(format($$SELECT control_plane.runtime_node_detach(%L, %L)$$, :'ann', :'n1'),
                'as the API role: detach');
SELECT throws_ok(format($$SELECT control_plane.admin_revoke_runtime_node(%L, %L)$$, :'s1', :'n1'),
                 '42501', NULL, 'as the API role: revoke as admin is refused (the admin role''s alone)');
SELECT throws_ok($$SELECT count(*) FROM control_plane.runtime_node_attachments$$, '42501', NULL,
                 'the API role cannot read attachments directly');
SELECT throws_ok($$UPDATE control_plane.runtime_node_presence SET health_state = 'online'$$, '42501', NULL,
                 'the API role cannot write presence directly');
SELECT throws_ok(format($$SELECT control_plane.runtime_node_lock_owned(%L, %L)$$, :'ann_id', :'n1'),
                 '42501', NULL, 'the API role cannot call the internal helper');
RESET ROLE;

-- One byte-identical 403 across every operation -------------------------------------------------
SELECT pg_temp.attach('ann', 's1', 'n2') \g /dev/null
CREATE TEMP TABLE refusals (op text, state text, msg text);
DO $$
DECLARE
    v_sql text;
BEGIN
    FOR v_sql IN
        SELECT unnest(ARRAY[
            format('SELECT control_plane.runtime_node_attach(%L, %L, %L, %L, ''1.0'', ''{}'')',
                   pg_temp.d('bob'), pg_temp.s('s1'), pg_temp.p('bob'), pg_temp.n('x')),
            format('SELECT control_plane.runtime_node_declare(%L, %L, ''{"a": 1}'')',
                   pg_temp.d('bob'), pg_temp.n('n2')),
            format('SELECT control_plane.runtime_node_update_capabilities(%L, %L, ''{}'')',
                   pg_temp.d('bob'), pg_temp.n('n2')),
            format('SELECT control_plane.runtime_node_heartbeat(%L, %L, ''online'')',
                   pg_temp.d('bob'), pg_temp.n('n2')),
            format('SELECT control_plane.runtime_node_detach(%L, %L)', pg_temp.d('bob'), pg_temp.n('n2')),
            format('SELECT control_plane.runtime_node_roster_v2(%L, %L)', pg_temp.d('bob'), gen_random_uuid()),
            format('SELECT control_plane.runtime_node_revoke(%L, %L, %L)',
                   pg_temp.d('bob'), pg_temp.s('s1'), pg_temp.n('n2'))])
    LOOP
        BEGIN
            EXECUTE v_sql;
            INSERT INTO refusals VALUES (v_sql, 'no error', NULL);
        EXCEPTION WHEN OTHERS THEN
            INSERT INTO refusals VALUES (v_sql, SQLSTATE, SQLERRM);
        END;
    END LOOP;
END $$;
SELECT is((SELECT count(*) FROM refusals), 7::bigint, 'seven operations refused');
SELECT results_eq($$SELECT DISTINCT state, msg FROM refusals$$,
                  $$VALUES ('CP403'::text, 'permission denied'::text)$$,
                  'every operation''s 403 is the same SQLSTATE and the same constant message');

SELECT * FROM finish();
ROLLBACK;
