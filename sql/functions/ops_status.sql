CREATE OR REPLACE FUNCTION control_plane.ops_status()
    RETURNS jsonb
    LANGUAGE plpgsql
    STABLE SECURITY DEFINER
    SET search_path = control_plane, pg_catalog, pg_temp
AS $fn$
DECLARE
    v_migrations jsonb;
    v_sweep jsonb;
BEGIN
    -- yoyo's bookkeeping lives in public; absent only before the first migrate.
    IF to_regclass('public._yoyo_migration') IS NOT NULL THEN
        EXECUTE 'SELECT coalesce(jsonb_agg(migration_id ORDER BY migration_id), ''[]'')
                   FROM public._yoyo_migration' INTO v_migrations;
    END IF;
    SELECT jsonb_build_object(
               'mode', s.mode,
               'lastStartedAt', s.last_started_at,
               'lastFinishedAt', s.last_finished_at,
               'ageSeconds', extract(epoch FROM now() - s.last_finished_at),
               'lastDurationMs', s.last_duration_ms,
               'lastTransitions', s.last_transitions,
               'totalRuns', s.total_runs,
               'totalTransitions', s.total_transitions,
               'resumedAt', s.resumed_at,
               'intervalSeconds', extract(epoch FROM st.sweep_interval))
      INTO v_sweep
      FROM sweep_state s CROSS JOIN settings st;
    RETURN jsonb_build_object(
        'migrations', coalesce(v_migrations, '[]'),
        'sweep', v_sweep,
        'slots', (SELECT coalesce(jsonb_object_agg(state, n), '{}')
                    FROM (SELECT state, count(*) AS n FROM runtime_node_attachments
                          GROUP BY state) c),
        'health', (SELECT coalesce(jsonb_object_agg(health_state, n), '{}')
                     FROM (SELECT health_state, count(*) AS n FROM runtime_node_presence
                           GROUP BY health_state) h)
    );
END
$fn$;
COMMENT ON FUNCTION control_plane.ops_status() IS
    'Operations: applied migration ids, the sweep state (mode, last run, age), attachments per slot '
    'state and presence rows per health. Read by /readyz and /metrics; writes nothing.';
GRANT EXECUTE ON FUNCTION control_plane.ops_status() TO control_plane_api;
