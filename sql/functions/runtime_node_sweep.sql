-- contract §4 (presence axis) and §7: the liveness sweep, its outage guard, and the loop that drives
-- it every sweep interval on pg_cron < 1.5 (which cannot schedule in seconds).
--
-- Not SECURITY DEFINER: pg_cron runs it as the migrating superuser (the job owner) and DBAs call
-- it in psql as a superuser or as control_plane_owner. The API role may not execute it.
--
-- Concurrency:
-- * Two sweeps (the cron job and a DBA's call) serialize on the sweep_state row, locked first.
-- * Heartbeats never touch sweep_state. The demotion is one UPDATE whose WHERE carries the whole
--   staleness rule, so READ COMMITTED re-evaluates it on the newest row version if a heartbeat
--   committed in between: a fresh beat is never demoted and no beat is ever lost.
-- * Candidate rows are locked with SKIP LOCKED: a row some heartbeat is writing right now is
--   about to be fresh anyway, and the sweep never waits for a row lock, so it can neither stall
--   the hot path behind it for long nor take part in a deadlock with a batch of heartbeats.
-- * No index on last_heartbeat_at (heartbeats must stay HOT updates): the sweep scans the table.
CREATE OR REPLACE FUNCTION control_plane.runtime_node_sweep(p_now timestamptz DEFAULT now())
    RETURNS TABLE (node_id text, health_state text)
    LANGUAGE plpgsql
    VOLATILE
    SET search_path = control_plane, pg_catalog, pg_temp
AS $fn$
#variable_conflict use_column
DECLARE
    v_clock_start    timestamptz := clock_timestamp();
    v_set            settings;
    v_prev           sweep_state;
    v_resumed        timestamptz;
    v_stall_since    timestamptz;
    v_fresh          boolean;
    v_live           bigint;
    v_hold           boolean := false;
    v_in_grace       boolean;
    v_floor          timestamptz;
    v_degraded_before timestamptz;
    v_offline_before timestamptz;
    v_mode           text;
    v_transitions    integer;
    v_elapsed        interval;
    v_nodes          text[];
    v_healths        text[];
    v_previous       text[];
    v_events         runtime_node_event_draft[];
BEGIN
    IF p_now IS NULL THEN
        RAISE EXCEPTION 'p_now must not be null' USING ERRCODE = 'CP400';
    END IF;
    -- Serializes concurrent sweeps; heartbeats never lock this row.
    SELECT * INTO STRICT v_prev FROM sweep_state FOR UPDATE;
    SELECT * INTO STRICT v_set FROM settings;

    v_resumed := v_prev.resumed_at;
    v_stall_since := v_prev.stall_since;

    -- Gap guard: nobody was watching (first sweep ever, pg_cron stopped, failover, restore).
    IF v_prev.last_finished_at IS NULL
       OR p_now - v_prev.last_finished_at > v_set.gap_grace THEN
        v_resumed := p_now;
    END IF;

    -- Ingestion-stall guard. In a healthy fleet this EXISTS usually stops at one of the first
    -- rows it reads; at worst (a stall, or a heap full of long-offline rows) it costs one more
    -- sequential scan, and the count below stops after stall_min_nodes rows.
    v_fresh := EXISTS (SELECT 1 FROM runtime_node_presence p
                        WHERE p.last_heartbeat_at >= p_now - v_set.degraded_after);
    IF v_fresh THEN
        IF v_prev.mode = 'stall_hold' THEN
            v_resumed := p_now;  -- heartbeats arrive again: grace from now on
        END IF;
        v_stall_since := NULL;
    ELSE
        SELECT count(*) INTO v_live
          FROM (SELECT 1 FROM runtime_node_presence p
                 WHERE p.health_state <> 'offline'
                 LIMIT v_set.stall_min_nodes) l;
        v_hold := v_live >= v_set.stall_min_nodes;
        IF v_hold THEN
            v_stall_since := CASE WHEN v_prev.mode = 'stall_hold'
                                  THEN coalesce(v_prev.stall_since, p_now) ELSE p_now END;
        ELSE
            -- Too few live nodes to tell a broken control plane from a dead fleet (or a DBA
            -- took them offline to release the hold): normal rules.
            v_stall_since := NULL;
        END IF;
    END IF;

    -- Within [resumed_at, resumed_at + offline_after] staleness counts from resumed_at at most.
    v_in_grace := v_resumed IS NOT NULL
                  AND p_now >= v_resumed
                  AND p_now <= v_resumed + v_set.offline_after;
    v_floor := CASE WHEN v_in_grace THEN v_resumed ELSE '-infinity'::timestamptz END;
    -- Strict >: "p_now - t > degraded_after" is "t < p_now - degraded_after".
    v_degraded_before := p_now - v_set.degraded_after;
    v_offline_before := CASE WHEN v_hold THEN '-infinity'::timestamptz
                             ELSE p_now - v_set.offline_after END;
    v_mode := CASE WHEN v_hold THEN 'stall_hold'
                   WHEN v_in_grace THEN 'gap_grace'
                   ELSE 'normal' END;

    -- Transition-only: online → degraded | offline, degraded → offline. Never a promotion,
    -- never a rewrite of a row already at its target, never offline → anything.
    WITH stale AS (
        -- FOR NO KEY UPDATE returns the newest version it locked: its health is the previous one.
        SELECT p.node_id, p.health_state AS previous
          FROM runtime_node_presence p
         WHERE (p.health_state = 'online'
                AND greatest(p.last_heartbeat_at, v_floor) < v_degraded_before)
            OR (p.health_state = 'degraded'
                AND greatest(p.last_heartbeat_at, v_floor) < v_offline_before)
           FOR NO KEY UPDATE SKIP LOCKED
    ),
    moved AS (
        UPDATE runtime_node_presence p
           SET health_state = CASE
                   WHEN greatest(p.last_heartbeat_at, v_floor) < v_offline_before THEN 'offline'
                   ELSE 'degraded'
               END
          FROM stale
         WHERE p.node_id = stale.node_id
           -- Re-checked on the row version this UPDATE locks.
           AND ((p.health_state = 'online'
                 AND greatest(p.last_heartbeat_at, v_floor) < v_degraded_before)
                OR (p.health_state = 'degraded'
                    AND greatest(p.last_heartbeat_at, v_floor) < v_offline_before))
        RETURNING p.node_id::text AS node_id, p.health_state, stale.previous
    )
    SELECT coalesce(array_agg(moved.node_id ORDER BY moved.node_id), '{}'),
           coalesce(array_agg(moved.health_state ORDER BY moved.node_id), '{}'),
           coalesce(array_agg(moved.previous ORDER BY moved.node_id), '{}')
      INTO v_nodes, v_healths, v_previous
      FROM moved;
    v_transitions := cardinality(v_nodes);
    RETURN QUERY SELECT m.node_id, m.health_state FROM unnest(v_nodes, v_healths) AS m (node_id, health_state);

    -- contract §9: one health_changed event per demotion, under the session of the node's active
    -- attachment (none → no event). Read without a lock: a detach or revoke of that slot must
    -- first update the presence row this transaction holds, so it commits after us.
    SELECT array_agg(ROW(m.node_id, a.id, a.session_id, 'health_changed', false, NULL, true,
                         m.previous, 'sweep', NULL, NULL, NULL)::runtime_node_event_draft
                     ORDER BY a.session_id, m.node_id)
      INTO v_events
      FROM unnest(v_nodes, v_previous) AS m (node_id, previous)
      JOIN runtime_node_attachments a
        ON a.node_id = m.node_id AND a.state IN ('registering', 'online', 'degraded');

    -- Recorded on the sweep's own clock (p_now), so explicit calls with a p_now far from the
    -- real clock keep the gap guard consistent from one call to the next.
    v_elapsed := clock_timestamp() - v_clock_start;
    UPDATE sweep_state
       SET last_started_at = p_now,
           last_finished_at = p_now + v_elapsed,
           last_duration_ms = extract(epoch FROM v_elapsed) * 1000,
           last_transitions = v_transitions,
           total_runs = total_runs + 1,
           total_transitions = total_transitions + v_transitions,
           mode = v_mode,
           resumed_at = v_resumed,
           stall_since = v_stall_since;
    -- Last step: the event lock, held to commit (runtime_node_events_append).
    PERFORM runtime_node_events_append(v_events);
END
$fn$;
COMMENT ON FUNCTION control_plane.runtime_node_sweep(timestamptz) IS
    'Liveness sweep (contract §4, §7), run by pg_cron every sweep interval. Demotes presence rows whose '
    'last heartbeat is older than settings.degraded_after (strict >) from online to degraded and '
    'older than settings.offline_after (strict >) to offline; transition-only and idempotent (never '
    'promotes, never rewrites a row at its target, never turns offline into degraded). Returns the '
    'rows it transitioned and records the run in sweep_state, and writes one health_changed '
    'event (actor sweep) per demotion of a node with an active attachment, under that '
    'attachment''s session (contract §9), as its last step. Outage guard: '
    'after a gap of more than gap_grace since the previous sweep (or on the first sweep) it sets '
    'resumed_at and until resumed_at + offline_after measures staleness from '
    'greatest(last_heartbeat_at, resumed_at) (mode gap_grace); when at least stall_min_nodes rows '
    'are not offline and none has beaten within degraded_after it demotes no one to offline (mode '
    'stall_hold) until a heartbeat arrives, which then grants the same grace. p_now (default '
    'now()) is for tests: sweep_state is recorded on that clock. Rows being written by a '
    'concurrent heartbeat are skipped (SKIP LOCKED). Not granted to the API role.';

-- pg_cron < 1.5 schedules by the minute only: this procedure, started every minute, sweeps
-- every sweep interval until second 55 of its minute. It COMMITs after each sweep (so it cannot
-- be SECURITY DEFINER nor carry a SET clause: every name is schema-qualified instead) and runs
-- as the cron job's owner.
CREATE OR REPLACE PROCEDURE control_plane.runtime_node_sweep_loop(
    p_interval interval DEFAULT NULL,
    p_until timestamptz DEFAULT NULL
)
    LANGUAGE plpgsql
AS $proc$
DECLARE
    v_anchor   timestamptz := date_trunc('minute', clock_timestamp());
    v_interval interval;
    v_step     double precision;
    v_until    timestamptz;
    v_next     timestamptz;
BEGIN
    v_interval := coalesce(p_interval,
                           (SELECT s.sweep_interval FROM control_plane.settings s));
    IF v_interval IS NULL OR v_interval <= interval '0' THEN
        RAISE EXCEPTION 'sweep interval must be positive' USING ERRCODE = 'CP400';
    END IF;
    v_step := extract(epoch FROM v_interval)::double precision;  -- extract() is numeric
    -- Leave room for the last sweep before the next minute's run starts.
    v_until := coalesce(p_until, v_anchor + interval '55 seconds');
    LOOP
        BEGIN
            PERFORM count(*) FROM control_plane.runtime_node_sweep(now());
        EXCEPTION WHEN OTHERS THEN
            -- One failed pass must not stop sweeping for the rest of the minute (a cancel,
            -- QUERY_CANCELED, is not caught by OTHERS and does stop the loop).
            RAISE WARNING 'runtime_node_sweep failed: % (SQLSTATE %)', SQLERRM, SQLSTATE;
        END;
        COMMIT;
        -- Next slot on the minute's grid (anchor + k * interval), strictly in the future.
        v_next := v_anchor + make_interval(secs => v_step * (floor(
                      extract(epoch FROM clock_timestamp() - v_anchor) / v_step) + 1));
        EXIT WHEN v_next > v_until;
        -- Sleep in short steps, each in its own transaction: a statement keeps its snapshot
        -- (backend_xmin) while it runs, and one 5 s sleep would keep the dead presence row
        -- versions of those 5 s from being pruned, so heartbeat updates would stop being HOT
        -- (measured: HOT ratio 0.72 instead of ~1 under load; docs/performance.md).
        WHILE clock_timestamp() < v_next LOOP
            PERFORM pg_sleep(least(0.1, extract(epoch FROM v_next - clock_timestamp())));
            COMMIT;  -- a fresh transaction: now() is the wake-up time, the snapshot released
        END LOOP;
    END LOOP;
END
$proc$;
COMMENT ON PROCEDURE control_plane.runtime_node_sweep_loop(interval, timestamptz) IS
    'pg_cron < 1.5 driver of the liveness sweep: scheduled every minute (* * * * *), it calls '
    'runtime_node_sweep(), COMMITs and sleeps to the next slot of p_interval (default '
    'settings.sweep_interval) on the minute''s grid, and starts no sweep after p_until (default '
    'second 55 of the minute it started in), so it ends before the next minute''s run. A failing '
    'pass is logged as a WARNING and the loop goes on. Must be CALLed outside a transaction block.';
