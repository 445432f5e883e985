-- contract §6.4: the hot path. One set-based statement authorizes every beat with its own token and
-- upserts presence on the database clock. Exempt from the version floor.
--
-- Concurrency: each authorized beat takes FOR KEY SHARE on the node's attachment. Detach and
-- revoke take FOR UPDATE on it, which conflicts: a beat either commits before the detach (and the
-- detach then sets presence offline) or waits and re-checks the slot, finds it no longer active
-- and is refused — a detached node is never left online. Declarations and capability updates
-- take only NO KEY UPDATE, so beats never wait for them. Presence rows are written in node_id
-- order, so concurrent batches cannot deadlock on them.
--
-- Durability: commits are synchronous like every other write (contract §8: no acknowledged write is
-- lost). The HTTP tier coalesces concurrent beats into one call, so one WAL flush acknowledges a
-- whole batch; asynchronous commit would buy little and break that promise.
CREATE OR REPLACE FUNCTION control_plane.runtime_node_heartbeat_batch(
    p_token_sha256s bytea[],
    p_node_ids text[],
    p_health_states text[]
)
    RETURNS text[]
    LANGUAGE plpgsql
    VOLATILE SECURITY DEFINER
    SET search_path = control_plane, pg_catalog, pg_temp
    -- The statement's plan does not depend on the arrays (per-item LATERAL probes), but with
    -- the default plan_cache_mode PL/pgSQL re-plans it for every call (custom plans look
    -- cheaper): ~0.3 ms of planning per call, 2-4x the cost of a small batch (docs/performance.md).
    SET plan_cache_mode = force_generic_plan
AS $fn$
DECLARE
    v_sqlstates text[];
    v_events runtime_node_event_draft[];
BEGIN
    IF p_token_sha256s IS NULL OR p_node_ids IS NULL OR p_health_states IS NULL
       OR coalesce(array_ndims(p_token_sha256s), 1) <> 1
       OR coalesce(array_ndims(p_node_ids), 1) <> 1
       OR coalesce(array_ndims(p_health_states), 1) <> 1
       OR cardinality(p_token_sha256s) <> cardinality(p_node_ids)
       OR cardinality(p_token_sha256s) <> cardinality(p_health_states) THEN
        RAISE EXCEPTION 'token digests, node ids and health states must be arrays of equal length'
            USING ERRCODE = 'CP400';
    END IF;

    -- Per-item LATERAL lookups with LIMIT (never pulled up): each item costs a few index probes
    -- whatever the statistics say, instead of a plan that scans tokens or a session's slots.
    WITH item AS (
        SELECT i.ord, i.node, i.health, t.participant_id
          FROM unnest(p_token_sha256s, p_node_ids, p_health_states)
               WITH ORDINALITY AS i (token_sha256, node, health, ord)
          LEFT JOIN LATERAL (
              SELECT t.participant_id
                FROM participant_tokens t
               WHERE t.token_sha256 = i.token_sha256
                 AND t.revoked_at IS NULL
                 AND (t.expires_at IS NULL OR t.expires_at > now())
               LIMIT 1) t ON true
    ),
    allowed AS (
        -- The caller owns the node's active attachment and is an active member of its
        -- session. The lock re-checks these conditions if a detach/revoke got there first.
        SELECT item.ord, a.node_id, item.health, a.id AS attachment_id, a.session_id,
               item.participant_id
          FROM (SELECT * FROM item
                 WHERE item.participant_id IS NOT NULL AND item.health IN ('online', 'degraded')
                 ORDER BY item.node) item
         CROSS JOIN LATERAL (
              SELECT a.node_id, a.id, a.session_id
                FROM runtime_node_attachments a
               WHERE a.node_id = item.node
                 AND slot_is_active(a.state)
                 AND a.participant_id = item.participant_id
                 AND EXISTS (SELECT 1 FROM session_memberships m
                              WHERE m.session_id = a.session_id
                                AND m.participant_id = a.participant_id
                                AND m.state = 'active')
               LIMIT 1
                 FOR KEY SHARE) a
    ),
    beat AS (
        -- A node beating twice in one batch: the last item wins (both get 204).
        -- health_before_last_beat: NULL for a first beat (insert), else the health this upsert
        -- replaced (the locked row's), so RETURNING tells a health change from a steady beat.
        INSERT INTO runtime_node_presence AS p
               (node_id, last_heartbeat_at, health_state, health_before_last_beat)
        SELECT DISTINCT ON (allowed.node_id) allowed.node_id, now(), allowed.health, NULL
          FROM allowed
         ORDER BY allowed.node_id, allowed.ord DESC
        ON CONFLICT (node_id) DO UPDATE
           SET last_heartbeat_at = EXCLUDED.last_heartbeat_at,
               health_state = EXCLUDED.health_state,
               health_before_last_beat = p.health_state
        RETURNING p.node_id, p.health_state, p.health_before_last_beat
    ),
    changed AS (
        -- contract §9: the first beat, a new self-report, a recovery from a sweep demotion.
        -- A steady beat (same health) is not an event: the hot path stays one statement.
        SELECT array_agg(ROW(
                   beat.node_id, w.attachment_id, w.session_id, 'health_changed', false, NULL,
                   true, beat.health_before_last_beat, 'daemon', w.participant_id, NULL, NULL
               )::runtime_node_event_draft ORDER BY beat.node_id) AS drafts
          FROM beat
          JOIN (SELECT DISTINCT ON (allowed.node_id) allowed.*
                  FROM allowed ORDER BY allowed.node_id, allowed.ord DESC) w
            ON w.node_id = beat.node_id
         WHERE beat.health_before_last_beat IS DISTINCT FROM beat.health_state
    )
    -- One SQLSTATE per item, in order; NULL = accepted (the HTTP tier maps them through the same
    -- table as every raised SQLSTATE).
    SELECT (SELECT changed.drafts FROM changed), coalesce(array_agg(
               CASE WHEN item.health IS NULL OR item.health NOT IN ('online', 'degraded')
                        THEN 'CP400'
                    WHEN item.participant_id IS NULL THEN 'CP401'
                    WHEN ok.ord IS NOT NULL THEN NULL
                    ELSE 'CP403'
               END ORDER BY item.ord), '{}')
      FROM item
      LEFT JOIN (SELECT DISTINCT allowed.ord FROM allowed) ok ON ok.ord = item.ord
    INTO v_events, v_sqlstates;
    -- Last step, after every row lock: the event lock, held to commit (runtime_node_events_append).
    IF v_events IS NOT NULL THEN
        PERFORM runtime_node_events_append(v_events);
    END IF;
    RETURN v_sqlstates;
END
$fn$;
COMMENT ON FUNCTION control_plane.runtime_node_heartbeat_batch(bytea[], text[], text[]) IS
    'Heartbeats, set-based (contract §6.4): item i is (token digest i, node id i, health i); the three '
    'arrays must have equal length (else CP400). Returns one SQLSTATE per item, in order: NULL '
    'accepted, presence upserted with last_heartbeat_at = now() (database clock) and the reported '
    'health; CP400 health not online|degraded; CP401 unknown, expired or revoked token; CP403 the '
    'token''s participant does not own the node''s active attachment or is not an active member '
    'of its session (no presence written). Each item is authorized with its own token. A node '
    'beating twice in one batch: the last item wins. Exempt from the version floor. Takes FOR KEY '
    'SHARE on each attachment (detach/revoke take FOR UPDATE) and writes presence rows in node_id '
    'order. A beat that changes the node''s health (first beat, new self-report, recovery from a '
    'sweep demotion) writes one health_changed event under the session of its active attachment '
    '(contract §9; actor daemon); a steady beat writes none. Commits synchronously: an '
    'acknowledged beat survives a crash.';
REVOKE ALL ON FUNCTION control_plane.runtime_node_heartbeat_batch(bytea[], text[], text[])
    FROM PUBLIC;
GRANT EXECUTE ON FUNCTION control_plane.runtime_node_heartbeat_batch(bytea[], text[], text[])
    TO control_plane_api;

-- For DBAs in psql (the HTTP tier always calls the batch): one beat, its item's SQLSTATE raised.
CREATE OR REPLACE FUNCTION control_plane.runtime_node_heartbeat(
    p_token_sha256 bytea,
    p_node_id text,
    p_health_state text
)
    RETURNS void
    LANGUAGE plpgsql
    VOLATILE SECURITY DEFINER
    SET search_path = control_plane, pg_catalog, pg_temp
AS $fn$
BEGIN
    -- One rule set: the batch of one.
    CASE (runtime_node_heartbeat_batch(
              ARRAY[p_token_sha256], ARRAY[p_node_id], ARRAY[p_health_state]))[1]
        WHEN 'CP400' THEN
            RAISE EXCEPTION 'healthState must be online or degraded' USING ERRCODE = 'CP400';
        WHEN 'CP401' THEN
            RAISE EXCEPTION 'missing, unknown, expired or revoked bearer token'
                USING ERRCODE = 'CP401';
        WHEN 'CP403' THEN
            RAISE EXCEPTION 'permission denied' USING ERRCODE = 'CP403';
        ELSE
            RETURN;  -- NULL: accepted
    END CASE;
END
$fn$;
COMMENT ON FUNCTION control_plane.runtime_node_heartbeat(bytea, text, text) IS
    'Heartbeat of one node, for DBAs in psql (contract §6.4; the HTTP tier calls '
    'runtime_node_heartbeat_batch and is not granted this one): the batch with one item, its '
    'SQLSTATE raised — CP400 (health not online|degraded), CP401 (token) or CP403 ''permission '
    'denied'' (caller does not own the node''s active attachment or is not an active member of '
    'its session; no presence row is written). On success presence is upserted with '
    'last_heartbeat_at = now() (database clock) and the reported health. Exempt from the version '
    'floor.';
REVOKE ALL ON FUNCTION control_plane.runtime_node_heartbeat(bytea, text, text) FROM PUBLIC;
