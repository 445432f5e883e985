-- Operations (contract §6.9). Two readers with different budgets:
-- * ops_status()  — /readyz, called on every probe: two single-row reads and yoyo's small
--   bookkeeping table; never scans the node tables.
-- * ops_metrics() — /metrics (cached ~2 s per worker by the app): the same sweep state plus the
--   node counts, which scan runtime_node_attachments and runtime_node_presence.

CREATE OR REPLACE FUNCTION control_plane.ops_sweep_status()
    RETURNS jsonb
    LANGUAGE sql
    STABLE
    SET search_path = control_plane, pg_catalog, pg_temp
AS $fn$
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
               'stallSince', s.stall_since,
               'intervalSeconds', extract(epoch FROM st.sweep_interval))
      FROM sweep_state s CROSS JOIN settings st
$fn$;
COMMENT ON FUNCTION control_plane.ops_sweep_status() IS
    'Internal: the sweep''s last run and outage-guard mode as jsonb (ageSeconds = now() - '
    'lastFinishedAt; intervalSeconds = settings.sweep_interval). Used by ops_status and ops_metrics.';

CREATE OR REPLACE FUNCTION control_plane.ops_status()
    RETURNS jsonb
    LANGUAGE plpgsql
    STABLE SECURITY DEFINER
    SET search_path = control_plane, pg_catalog, pg_temp
AS $fn$
DECLARE
    v_migrations jsonb;
BEGIN
    -- yoyo's bookkeeping lives in public; absent only before the first migrate.
    IF to_regclass('public._yoyo_migration') IS NOT NULL THEN
        -- Static SQL is fine here: PL/pgSQL plans a statement only when it first runs.
        SELECT coalesce(jsonb_agg(migration_id ORDER BY migration_id), '[]')
          INTO v_migrations
          FROM public._yoyo_migration;
    END IF;
    RETURN jsonb_build_object(
        'migrations', coalesce(v_migrations, '[]'),
        'sweep', ops_sweep_status()
    );
END
$fn$;
COMMENT ON FUNCTION control_plane.ops_status() IS
    'Operations, cheap (for /readyz): applied migration ids and the sweep state (mode, last run, '
    'age, interval). Reads single rows only — never scans the node tables; writes nothing.';
GRANT EXECUTE ON FUNCTION control_plane.ops_status() TO control_plane_api;

CREATE OR REPLACE FUNCTION control_plane.ops_metrics()
    RETURNS jsonb
    LANGUAGE sql
    STABLE SECURITY DEFINER
    SET search_path = control_plane, pg_catalog, pg_temp
AS $fn$
    SELECT jsonb_build_object(
        'sweep', ops_sweep_status(),
        'slots', (SELECT coalesce(jsonb_object_agg(c.state, c.n), '{}')
                    FROM (SELECT a.state, count(*) AS n FROM runtime_node_attachments a
                          GROUP BY a.state) c),
        'health', (SELECT coalesce(jsonb_object_agg(h.health_state, h.n), '{}')
                     FROM (SELECT p.health_state, count(*) AS n FROM runtime_node_presence p
                           GROUP BY p.health_state) h)
    )
$fn$;
COMMENT ON FUNCTION control_plane.ops_metrics() IS
    'Operations, for /metrics: the sweep state plus attachments per slot state ({state: count}) '
    'and presence rows per health ({health: count}); states with no row are absent. Scans both '
    'node tables: call it at most every few seconds (the app caches it ~2 s). Writes nothing.';
GRANT EXECUTE ON FUNCTION control_plane.ops_metrics() TO control_plane_api;
