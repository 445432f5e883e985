-- contract §9: retention of runtime_node_events. pg_cron runs the purge every minute; each run
-- deletes at most one batch of events older than settings.event_retention (see
-- runtime_node_events_purge), so a backlog drains in bounded steps and the steady state deletes
-- about a minute's worth of events per run. The job's run history is kept bounded by
-- runtime-node-cron-history-purge (it matches every 'runtime-node-%' job).
-- depends: 0005-runtime-node-events

DO $schedule$
BEGIN
    PERFORM cron.schedule('runtime-node-events-purge', '* * * * *',
                          'SELECT control_plane.runtime_node_events_purge()');
END
$schedule$;
