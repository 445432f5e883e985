-- contract §7: pg_cron drives the liveness sweep inside the database.
-- Runs as the migrating superuser, in the database named by cron.database_name (migrate checks
-- it), so the jobs belong to that superuser and run as it.
--
-- pg_cron >= 1.5 schedules in seconds: the job calls the sweep every settings.sweep_interval.
-- Older pg_cron (Debian 12 ships 1.4) only knows 5-field cron strings by the minute (and reads a
-- 6-field '*/5 * * * * *' as every 5 *minutes*): there the job runs every minute a procedure that
-- sweeps, COMMITs and sleeps to the next slot until second 55 of that minute.
-- The function and procedure are (re)created by sql/functions after the migrations; until then
-- a run fails harmlessly and is retried at the next slot.
-- depends: 0001-schema

CREATE EXTENSION IF NOT EXISTS pg_cron;

DO $schedule$
DECLARE
    v_version integer[];
    v_seconds integer;
BEGIN
    -- '1.4-1' → {1,4}; '1.6.2' → {1,6,2}.
    SELECT string_to_array(regexp_replace(extversion, '[^0-9.].*$', ''), '.')::integer[]
      INTO v_version
      FROM pg_extension WHERE extname = 'pg_cron';
    IF v_version >= ARRAY[1, 5] THEN
        SELECT ceil(extract(epoch FROM sweep_interval))::integer INTO v_seconds
          FROM control_plane.settings;
        PERFORM cron.schedule('runtime-node-staleness-sweep', format('%s seconds', v_seconds),
                              'SELECT count(*) FROM control_plane.runtime_node_sweep()');
    ELSE
        PERFORM cron.schedule('runtime-node-staleness-sweep', '* * * * *',
                              'CALL control_plane.runtime_node_sweep_loop()');
    END IF;
    -- Keep cron.job_run_details bounded: this schema's jobs' history older than
    -- settings.cron_history_retention (finished runs, and runs a crash left "running").
    PERFORM cron.schedule('runtime-node-cron-history-purge', '*/10 * * * *',
        'DELETE FROM cron.job_run_details d'
        || ' WHERE d.jobid IN (SELECT j.jobid FROM cron.job j'
        || ' WHERE j.jobname LIKE ''runtime-node-%'')'
        || ' AND coalesce(d.end_time, d.start_time)'
        || ' < now() - (SELECT s.cron_history_retention FROM control_plane.settings s)');
END
$schedule$;
