-- A copy of the shipped runtime_node_heartbeat_batch in schema bench with PostgreSQL's default
-- plan cache mode (custom plans), to measure in the same run what the shipped function's
-- `SET plan_cache_mode = force_generic_plan` buys. bench/run.sh drops it again.
\set ON_ERROR_STOP on
DO $do$
DECLARE
    v_def text;
BEGIN
    v_def := pg_get_functiondef(
        'control_plane.runtime_node_heartbeat_batch(bytea[], text[], text[])'::regprocedure);
    v_def := replace(v_def, 'FUNCTION control_plane.runtime_node_heartbeat_batch(',
                     'FUNCTION bench.heartbeat_batch_custom_plans(');
    v_def := regexp_replace(v_def, E'\\n\\s*SET plan_cache_mode[^\\n]*', '');
    EXECUTE v_def;
END
$do$;
