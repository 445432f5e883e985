-- contract §9: the change feed. Writing (runtime_node_events_append, called by every state-changing
-- function as its very last step), reading (participant and admin), the roster's revision, and
-- the retention purge.
--
-- Ordering guarantee ("no reader ever misses an event"): ids are taken from the identity sequence
-- only while holding a transaction-level advisory lock (runtime_node_events_lock_key()), which
-- PostgreSQL releases after the commit is visible to every new snapshot. So event-writing
-- transactions commit in id order, and every snapshot that sees event N also sees every event
-- < N: a reader returning "id > cursor ORDER BY id" can never be overtaken by a late commit, and
-- max(id) of a snapshot is exactly the point up to which that snapshot's tables include every
-- event (the roster's revision). The lock is the writer's last step: it is taken after every row
-- lock the writer needs, and its holder only inserts events and commits — it never waits for a
-- row lock — so it cannot take part in a deadlock with the fixed row lock order. Why this and
-- not a snapshot (xid8) watermark: docs/decisions.md (## Change feed), measured in
-- docs/performance.md.

CREATE OR REPLACE FUNCTION control_plane.runtime_node_events_lock_key()
    RETURNS bigint
    LANGUAGE sql
    IMMUTABLE PARALLEL SAFE
    SET search_path = control_plane, pg_catalog, pg_temp
    RETURN 7163845710374912009;  -- arbitrary, fixed: 'cp events'
COMMENT ON FUNCTION control_plane.runtime_node_events_lock_key() IS
    'Internal: the pg_advisory_xact_lock key that serializes event id assignment (see '
    'runtime_node_events_append). Visible in pg_locks as locktype advisory, objid/classid of this '
    'bigint.';
REVOKE ALL ON FUNCTION control_plane.runtime_node_events_lock_key() FROM PUBLIC;

-- Server-advertised timing (contract §10), merged into attach/declaration/capability results.
CREATE OR REPLACE FUNCTION control_plane.advertised_timing()
    RETURNS jsonb
    LANGUAGE sql
    STABLE
    SET search_path = control_plane, pg_catalog, pg_temp
BEGIN ATOMIC
    SELECT jsonb_build_object(
               'heartbeatIntervalSeconds', trim_scale(extract(epoch FROM s.heartbeat_interval)),
               'degradedAfterSeconds', trim_scale(extract(epoch FROM s.degraded_after)),
               'offlineAfterSeconds', trim_scale(extract(epoch FROM s.offline_after)))
      FROM control_plane.settings s;
END;
COMMENT ON FUNCTION control_plane.advertised_timing() IS
    'Internal: {heartbeatIntervalSeconds, degradedAfterSeconds, offlineAfterSeconds} read from '
    'settings now (contract §10), added to the attach, declaration and capability-update results '
    'so a DBA''s tuning reaches every daemon at its next write. Seconds as JSON numbers (15, or '
    '15.5 for a fractional setting).';
REVOKE ALL ON FUNCTION control_plane.advertised_timing() FROM PUBLIC;

CREATE OR REPLACE FUNCTION control_plane.runtime_node_events_append(
    p_drafts control_plane.runtime_node_event_draft[]
)
    RETURNS integer
    LANGUAGE plpgsql
    VOLATILE
    SET search_path = control_plane, pg_catalog, pg_temp
AS $fn$
DECLARE
    v_count integer;
BEGIN
    IF coalesce(cardinality(p_drafts), 0) = 0 THEN
        RETURN 0;
    END IF;
    -- Held to commit: the next writer takes its ids only once this transaction is visible.
    PERFORM pg_advisory_xact_lock(runtime_node_events_lock_key());
    -- A fresh snapshot (READ COMMITTED, next statement): it sees every event writer that held the
    -- lock before us, so the axis this operation did not lock is read as of our place in the
    -- order; the axis it changed comes from the caller (read under its row lock). Presence is per
    -- node: an inactive slot shows it only while the node is active nowhere (as the roster does).
    WITH ins AS (
        INSERT INTO runtime_node_events
               (session_id, node_id, attachment_id, at, kind, state, previous_state,
                health_state, previous_health_state, actor, actor_participant_id, reason,
                capabilities)
        SELECT d.session_id, d.node_id, d.attachment_id, now(), d.kind, a.state,
               CASE WHEN d.slot_changed THEN d.previous_state ELSE a.state END,
               h.health_state,
               CASE WHEN d.health_changed THEN d.previous_health_state ELSE h.health_state END,
               d.actor, d.actor_participant_id, d.reason, d.capabilities
          FROM unnest(p_drafts) WITH ORDINALITY AS d
          JOIN runtime_node_attachments a ON a.id = d.attachment_id
          LEFT JOIN LATERAL (
              SELECT p.health_state
                FROM runtime_node_presence p
               WHERE p.node_id = d.node_id
                 AND (slot_is_active(a.state)
                      OR NOT EXISTS (SELECT 1 FROM runtime_node_attachments o
                                      WHERE o.node_id = a.node_id AND slot_is_active(o.state)))
          ) h ON true
         ORDER BY d.ordinality
        RETURNING session_id, id
    ),
    per_session AS (
        -- One notification per session per transaction (delivered at commit), however many
        -- events: payload '<session uuid>:<highest event id of it in this transaction>'.
        SELECT pg_notify('control_plane_events', ins.session_id::text || ':' || max(ins.id)),
               count(*) AS n
          FROM ins GROUP BY ins.session_id
    )
    SELECT coalesce(sum(n), 0)::integer INTO v_count FROM per_session;
    RETURN v_count;
END
$fn$;
COMMENT ON FUNCTION control_plane.runtime_node_events_append(control_plane.runtime_node_event_draft[]) IS
    'Internal (not granted): appends one event per draft, in array order, and must be the last '
    'step of the writing transaction. Takes pg_advisory_xact_lock(runtime_node_events_lock_key()) '
    'first and keeps it to commit, so ids ascend in commit order (no reader misses a late commit). '
    'state/health_state are read now, under the lock; previous_state/previous_health_state are '
    'the draft''s for the axis it changed, else equal to the current value. NOTIFY channel '
    'control_plane_events, once per session per transaction, payload ''<session uuid>:<max event '
    'id of that session in this transaction>'' (at most 57 bytes), delivered at commit. Callers '
    'must hold every row lock they need before calling it; the caller''s transaction should end '
    'right after (a DBA batching several writes in one transaction serializes every other writer '
    'behind it). Assumes READ COMMITTED. Returns the number of events written.';
REVOKE ALL ON FUNCTION control_plane.runtime_node_events_append(control_plane.runtime_node_event_draft[])
    FROM PUBLIC;

-- The id up to which a snapshot's tables include every event (exact: commit order = id order).
CREATE OR REPLACE FUNCTION control_plane.runtime_node_events_revision()
    RETURNS bigint
    LANGUAGE plpgsql
    STABLE
    SET search_path = control_plane, pg_catalog, pg_temp
AS $fn$
BEGIN
    -- PL/pgSQL, not a SQL-standard body: its plan is kept for the backend's life, where a SQL
    -- function called from another function is planned again in every transaction (~0.1 ms of
    -- every roster call, docs/performance.md "Roster").
    RETURN coalesce((SELECT max(e.id) FROM runtime_node_events e),
                    (SELECT r.purged_through FROM runtime_node_event_retention r),
                    0);
END
$fn$;
COMMENT ON FUNCTION control_plane.runtime_node_events_revision() IS
    'Internal: the highest event id visible to the calling statement''s snapshot (or the purge '
    'horizon when no event is retained). Every event up to it is visible and none after it is '
    '(event ids ascend in commit order), so a roster read in the same snapshot plus the events '
    'after it never misses or double-applies a change. One backward index probe.';
REVOKE ALL ON FUNCTION control_plane.runtime_node_events_revision() FROM PUBLIC;

-- Shared body of the participant and admin readers: p_session_id already authorized.
CREATE OR REPLACE FUNCTION control_plane.runtime_node_events_cursor_expired(p_after bigint)
    RETURNS boolean
    LANGUAGE sql
    STABLE
    SET search_path = control_plane, pg_catalog, pg_temp
RETURN p_after < (SELECT r.purged_through FROM control_plane.runtime_node_event_retention r);
COMMENT ON FUNCTION control_plane.runtime_node_events_cursor_expired(bigint) IS
    'Internal: whether a feed cursor is older than the retention horizon (events after it were '
    'purged: CPG10, events.cursor_expired); NULL for a NULL cursor (from the oldest retained).';
REVOKE ALL ON FUNCTION control_plane.runtime_node_events_cursor_expired(bigint) FROM PUBLIC;

CREATE OR REPLACE FUNCTION control_plane.runtime_node_events_page(
    p_session_id uuid,
    p_after bigint,
    p_limit integer
)
    RETURNS text
    LANGUAGE plpgsql
    STABLE
    SET search_path = control_plane, pg_catalog, pg_temp
    SET plan_cache_mode = force_generic_plan  -- re-planned on every call otherwise (docs/performance.md)
AS $fn$
DECLARE
    v_events text;
    v_count bigint;
    v_last bigint;
BEGIN
    IF runtime_node_events_cursor_expired(p_after) THEN
        RAISE EXCEPTION 'the cursor is older than the retention horizon: re-read the roster'
            USING ERRCODE = 'CPG10';
    END IF;
    -- Each event's JSON was rendered when it was written (body; migration 0011): a page only
    -- joins them. Rows written before that migration have no body and are rendered here (the
    -- plan is generic, so the renderer is planned once per backend, not per call).
    SELECT string_agg(coalesce(e.body, runtime_node_event_json(e)), ',' ORDER BY e.id),
           count(*), max(e.id)
      INTO v_events, v_count, v_last
      FROM (SELECT * FROM runtime_node_events e
             WHERE e.session_id = p_session_id AND e.id > coalesce(p_after, 0)
             ORDER BY e.id
             LIMIT p_limit) e;
    -- A short page means nothing else of this session is visible up to the snapshot's revision,
    -- and nothing can still commit below it: the cursor may jump there (fewer 410s for quiet
    -- sessions, whose cursor would otherwise fall behind the purge horizon).
    RETURN '{"events":[' || coalesce(v_events, '') || '],"next":'
        || CASE WHEN v_count = p_limit THEN v_last
                ELSE greatest(coalesce(p_after, 0), v_last, runtime_node_events_revision())
           END
        || '}';
END
$fn$;
COMMENT ON FUNCTION control_plane.runtime_node_events_page(uuid, bigint, integer) IS
    'Internal: one page of a session''s events after p_after (NULL: from the oldest retained), '
    'in id order, as a JSON document (text) {events, next}; p_after below the purge horizon → '
    'CPG10. Callers authorize.';
REVOKE ALL ON FUNCTION control_plane.runtime_node_events_page(uuid, bigint, integer) FROM PUBLIC;

CREATE OR REPLACE FUNCTION control_plane.runtime_node_events_check_page(p_after bigint, p_limit integer)
    RETURNS void
    LANGUAGE plpgsql
    IMMUTABLE
    SET search_path = control_plane, pg_catalog, pg_temp
AS $fn$
BEGIN
    -- A feed page size is always explicit (the HTTP tier sends its default); its range is
    -- page_limit's, the one rule every list shares.
    IF p_limit IS NULL THEN
        RAISE EXCEPTION 'limit must be an integer from 1 to 1000' USING ERRCODE = 'CP400';
    END IF;
    PERFORM page_limit(p_limit);
    IF p_after < 0 THEN
        RAISE EXCEPTION 'after must not be negative' USING ERRCODE = 'CP400';
    END IF;
END
$fn$;
COMMENT ON FUNCTION control_plane.runtime_node_events_check_page(bigint, integer) IS
    'Internal: CP400 unless p_limit is given and within page_limit''s range (1..1000) and '
    'p_after is NULL or >= 0.';
REVOKE ALL ON FUNCTION control_plane.runtime_node_events_check_page(bigint, integer) FROM PUBLIC;

CREATE OR REPLACE FUNCTION control_plane.runtime_node_events_read_v2(
    p_token_sha256 bytea,
    p_session_id uuid,
    p_after bigint,
    p_limit integer
)
    RETURNS text
    LANGUAGE plpgsql
    STABLE SECURITY DEFINER
    SET search_path = control_plane, pg_catalog, pg_temp
    SET plan_cache_mode = force_generic_plan  -- re-planned on every call otherwise (docs/performance.md)
AS $fn$
DECLARE
    v_caller uuid;
BEGIN
    PERFORM runtime_node_events_check_page(p_after, p_limit);  -- CP400
    v_caller := caller_participant(p_token_sha256);  -- CP401
    IF NOT EXISTS (SELECT 1 FROM session_memberships m
                    WHERE m.session_id = p_session_id AND m.participant_id = v_caller
                      AND m.state = 'active') THEN
        RAISE EXCEPTION 'permission denied' USING ERRCODE = 'CP403';
    END IF;
    RETURN runtime_node_events_page(p_session_id, p_after, p_limit);
END
$fn$;
COMMENT ON FUNCTION control_plane.runtime_node_events_read_v2(bytea, uuid, bigint, integer) IS
    'Change feed of a session (contract §9), a JSON document (text; cast it ::jsonb to query it): '
    '{events: [{id, at, sessionId, nodeId, attachmentId, '
    'kind, state, previousState, healthState, previousHealthState, actor, actorParticipantId, '
    'reason, capabilities}], next}, at most p_limit events with id > p_after in id order '
    '(p_after NULL: from the oldest retained event); pass next as p_after next time. Order: '
    'p_limit 1..1000 and p_after >= 0, else CP400 → unknown token CP401 → the caller must be an '
    'active member (any role) of the session, else CP403 ''permission denied'' (also for an '
    'unknown session) → p_after below the retention horizon (events after it were purged) → '
    'CPG10 (events.cursor_expired: re-read the roster, follow from its revision). Never misses '
    'an event (ids ascend in commit order, runtime_node_events_append). Writes nothing, takes no '
    'lock. New events are announced by NOTIFY control_plane_events ''<session>:<max id>''.';
REVOKE ALL ON FUNCTION control_plane.runtime_node_events_read_v2(bytea, uuid, bigint, integer)
    FROM PUBLIC;
GRANT EXECUTE ON FUNCTION control_plane.runtime_node_events_read_v2(bytea, uuid, bigint, integer)
    TO control_plane_api;

-- Who may read a session's feed, for many (token, session) pairs in one call: the periodic
-- re-check of idle SSE streams (contract §9), batched per worker across sessions, and the
-- verdicts of runtime_node_events_read_batch_v2.
CREATE OR REPLACE FUNCTION control_plane.runtime_node_events_authorize_v2(
    p_token_sha256s bytea[],
    p_session_ids uuid[]
)
    RETURNS text[]
    LANGUAGE plpgsql
    STABLE SECURITY DEFINER
    SET search_path = control_plane, pg_catalog, pg_temp
    SET plan_cache_mode = force_generic_plan  -- re-planned on every call otherwise (docs/performance.md)
AS $fn$
DECLARE
    v_sqlstates text[];
BEGIN
    IF p_token_sha256s IS NULL OR p_session_ids IS NULL
       OR coalesce(array_ndims(p_token_sha256s), 1) <> 1
       OR coalesce(array_ndims(p_session_ids), 1) <> 1
       OR cardinality(p_token_sha256s) <> cardinality(p_session_ids) THEN
        RAISE EXCEPTION 'token digests and session ids must be arrays of equal length'
            USING ERRCODE = 'CP400';
    END IF;
    -- The refusals of runtime_node_events_read_v2, pair by pair and in its order.
    SELECT coalesce(array_agg(
               CASE WHEN c.participant_id IS NULL THEN 'CP401'
                    WHEN NOT EXISTS (SELECT 1 FROM session_memberships m
                                      WHERE m.session_id = c.session_id
                                        AND m.participant_id = c.participant_id
                                        AND m.state = 'active') THEN 'CP403'
               END ORDER BY c.ord), '{}')
      INTO v_sqlstates
      FROM (SELECT i.ord, i.session_id, token_participant(i.token_sha256) AS participant_id
              FROM unnest(p_token_sha256s, p_session_ids)
                   WITH ORDINALITY AS i (token_sha256, session_id, ord)) c;
    RETURN v_sqlstates;
END
$fn$;
COMMENT ON FUNCTION control_plane.runtime_node_events_authorize_v2(bytea[], uuid[]) IS
    'Who may read a session''s change feed, pair by pair: item i is (token digest i, session i); '
    'the arrays must have equal length (else CP400). Returns one verdict per item, in order: '
    'NULL (an active member of that session), CP401 (unknown, expired or revoked token), CP403 '
    '(not an active member, or no such session) — runtime_node_events_read_v2''s refusals, '
    'without reading events. The HTTP tier re-checks idle SSE streams with it (contract §9). '
    'Writes nothing, takes no lock.';
REVOKE ALL ON FUNCTION control_plane.runtime_node_events_authorize_v2(bytea[], uuid[]) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION control_plane.runtime_node_events_authorize_v2(bytea[], uuid[])
    TO control_plane_api;

-- Own reads batched (control_plane/feed.py, OwnReads): the followers of a session that re-read
-- the same page at the same moment (long-poll requests answered by one wake-up come back
-- together) are authorized one by one and read the page once, in one round trip.
CREATE OR REPLACE FUNCTION control_plane.runtime_node_events_read_batch_v2(
    p_token_sha256s bytea[],
    p_session_id uuid,
    p_after bigint,
    p_limit integer,
    OUT sqlstates text[],
    OUT page text
)
    LANGUAGE plpgsql
    STABLE SECURITY DEFINER
    SET search_path = control_plane, pg_catalog, pg_temp
    SET plan_cache_mode = force_generic_plan  -- re-planned on every call otherwise (docs/performance.md)
AS $fn$
BEGIN
    PERFORM runtime_node_events_check_page(p_after, p_limit);  -- CP400, the same for every caller
    IF p_token_sha256s IS NULL OR coalesce(array_ndims(p_token_sha256s), 1) <> 1 THEN
        RAISE EXCEPTION 'token digests must be a one-dimensional array' USING ERRCODE = 'CP400';
    END IF;
    sqlstates := runtime_node_events_authorize_v2(
        p_token_sha256s, array_fill(p_session_id, ARRAY[cardinality(p_token_sha256s)]));
    IF array_position(sqlstates, NULL) IS NULL THEN
        RETURN;  -- nobody may read this session: no page, and nothing said about its feed
    END IF;
    IF runtime_node_events_cursor_expired(p_after) THEN
        sqlstates := array_replace(sqlstates, NULL, 'CPG10');
        RETURN;
    END IF;
    page := runtime_node_events_page(p_session_id, p_after, p_limit);
END
$fn$;
COMMENT ON FUNCTION control_plane.runtime_node_events_read_batch_v2(bytea[], uuid, bigint, integer) IS
    'runtime_node_events_read_v2 for several callers of the same page (session, p_after, '
    'p_limit) in one call: p_limit or p_after out of range → CP400 for the whole call; otherwise '
    'sqlstates holds one verdict per digest, in order — NULL (may read), CP401 (unknown, expired '
    'or revoked token), CP403 (not an active member, or no such session), CPG10 (may read, but '
    'p_after is below the retention horizon) — and page is the {events, next} document every '
    'NULL-verdict caller may read (NULL when none may). Writes nothing, takes no lock.';
REVOKE ALL ON FUNCTION control_plane.runtime_node_events_read_batch_v2(bytea[], uuid, bigint, integer)
    FROM PUBLIC;
GRANT EXECUTE ON FUNCTION control_plane.runtime_node_events_read_batch_v2(bytea[], uuid, bigint, integer)
    TO control_plane_api;

-- Deprecated in 0.3.0: the 0.2.0 result type (jsonb), for SQL callers. The app calls _v2.
CREATE OR REPLACE FUNCTION control_plane.runtime_node_events_read(
    p_token_sha256 bytea,
    p_session_id uuid,
    p_after bigint,
    p_limit integer
)
    RETURNS jsonb
    LANGUAGE plpgsql
    STABLE SECURITY DEFINER
    SET search_path = control_plane, pg_catalog, pg_temp
AS $fn$
BEGIN
    RETURN runtime_node_events_read_v2(p_token_sha256, p_session_id, p_after, p_limit)::jsonb;
END
$fn$;
COMMENT ON FUNCTION control_plane.runtime_node_events_read(bytea, uuid, bigint, integer) IS
    'Deprecated (0.3.0; dropped in a later release): runtime_node_events_read_v2 as jsonb (the '
    '0.2.0 result type). Same rules and refusals.';
REVOKE ALL ON FUNCTION control_plane.runtime_node_events_read(bytea, uuid, bigint, integer)
    FROM PUBLIC;
GRANT EXECUTE ON FUNCTION control_plane.runtime_node_events_read(bytea, uuid, bigint, integer)
    TO control_plane_api;

CREATE OR REPLACE FUNCTION control_plane.admin_session_events_v2(
    p_session_id uuid,
    p_after bigint,
    p_limit integer
)
    RETURNS text
    LANGUAGE plpgsql
    STABLE SECURITY DEFINER
    SET search_path = control_plane, pg_catalog, pg_temp
    SET plan_cache_mode = force_generic_plan  -- re-planned on every call otherwise (docs/performance.md)
AS $fn$
BEGIN
    PERFORM runtime_node_events_check_page(p_after, p_limit);  -- CP400
    IF NOT EXISTS (SELECT 1 FROM sessions s WHERE s.id = p_session_id) THEN
        RAISE EXCEPTION 'session not found' USING ERRCODE = 'CPN04';
    END IF;
    RETURN runtime_node_events_page(p_session_id, p_after, p_limit);
END
$fn$;
COMMENT ON FUNCTION control_plane.admin_session_events_v2(uuid, bigint, integer) IS
    'Admin (contract §9, §11): a session''s change feed, the same page as runtime_node_events_read_v2 '
    '({events, next}; CP400 for a bad limit/after; CPG10 for a cursor below the retention horizon) '
    'without a participant token; unknown session → CPN04 (not_found).';
REVOKE ALL ON FUNCTION control_plane.admin_session_events_v2(uuid, bigint, integer) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION control_plane.admin_session_events_v2(uuid, bigint, integer)
    TO control_plane_admin;

-- Deprecated in 0.3.0: the 0.2.0 result type (jsonb), for SQL callers. The app calls _v2.
CREATE OR REPLACE FUNCTION control_plane.admin_session_events(
    p_session_id uuid,
    p_after bigint,
    p_limit integer
)
    RETURNS jsonb
    LANGUAGE plpgsql
    STABLE SECURITY DEFINER
    SET search_path = control_plane, pg_catalog, pg_temp
AS $fn$
BEGIN
    RETURN admin_session_events_v2(p_session_id, p_after, p_limit)::jsonb;
END
$fn$;
COMMENT ON FUNCTION control_plane.admin_session_events(uuid, bigint, integer) IS
    'Deprecated (0.3.0; dropped in a later release): admin_session_events_v2 as jsonb (the 0.2.0 '
    'result type). Same rules and refusals.';
REVOKE ALL ON FUNCTION control_plane.admin_session_events(uuid, bigint, integer) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION control_plane.admin_session_events(uuid, bigint, integer)
    TO control_plane_admin;

-- Retention: deletes, oldest first, the events older than settings.event_retention, at most
-- p_max_rows per call (pg_cron calls it every minute). DELETE by id range rather than dropping
-- partitions: measured in docs/performance.md (## Change feed retention).
CREATE OR REPLACE FUNCTION control_plane.runtime_node_events_purge(
    p_now timestamptz DEFAULT now(),
    p_max_rows integer DEFAULT 50000
)
    RETURNS bigint
    LANGUAGE plpgsql
    VOLATILE
    SET search_path = control_plane, pg_catalog, pg_temp
AS $fn$
DECLARE
    v_from bigint;
    v_horizon bigint;
    v_young bigint;
    v_cutoff timestamptz;
    v_deleted bigint;
BEGIN
    IF p_now IS NULL OR p_max_rows IS NULL OR p_max_rows < 1 THEN
        RAISE EXCEPTION 'p_now must not be null and p_max_rows must be positive'
            USING ERRCODE = 'CP400';
    END IF;
    -- Serializes purges (the cron job and a DBA's call).
    SELECT r.purged_through INTO STRICT v_from FROM runtime_node_event_retention r FOR UPDATE;
    SELECT p_now - s.event_retention INTO STRICT v_cutoff FROM settings s;
    -- The horizon only moves over a prefix of ids that are all older than the cutoff, so every
    -- id <= purged_through is gone and a reader's "after NULL" really starts at the oldest
    -- retained event. (at is the writer's transaction start, nearly but not strictly in id
    -- order: a late-committing event holds the horizon back a little, never the other way.)
    -- The first event not old enough, looking at most p_max_rows ids ahead (an index scan that
    -- stops there: in the steady state it reads about a minute of events).
    SELECT e.id INTO v_young
      FROM (SELECT e.id, e.at FROM runtime_node_events e
             WHERE e.id > v_from ORDER BY e.id LIMIT p_max_rows) e
     WHERE e.at >= v_cutoff
     ORDER BY e.id LIMIT 1;
    IF v_young IS NOT NULL THEN
        v_horizon := v_young - 1;
    ELSE
        SELECT max(e.id) INTO v_horizon
          FROM (SELECT e.id FROM runtime_node_events e
                 WHERE e.id > v_from ORDER BY e.id LIMIT p_max_rows) e;
    END IF;
    IF v_horizon IS NULL OR v_horizon <= v_from THEN
        UPDATE runtime_node_event_retention SET last_purged_at = p_now, last_deleted = 0;
        RETURN 0::bigint;
    END IF;
    DELETE FROM runtime_node_events e WHERE e.id > v_from AND e.id <= v_horizon;
    GET DIAGNOSTICS v_deleted = ROW_COUNT;
    UPDATE runtime_node_event_retention
       SET purged_through = v_horizon, last_purged_at = p_now, last_deleted = v_deleted,
           total_deleted = total_deleted + v_deleted;
    RETURN v_deleted;
END
$fn$;
COMMENT ON FUNCTION control_plane.runtime_node_events_purge(timestamptz, integer) IS
    'Retention of runtime_node_events (contract §9), run every minute by pg_cron job '
    'runtime-node-events-purge. Deletes, oldest id first, events whose at is older than p_now - '
    'settings.event_retention, at most p_max_rows (default 50000) per call, stopping at the first '
    'event that is not old enough; records the new horizon in '
    'runtime_node_event_retention.purged_through (readers with a cursor below it get CPG10, '
    'events.cursor_expired). Returns the number of events deleted. p_now is for tests. Not '
    'granted to the API role.';
REVOKE ALL ON FUNCTION control_plane.runtime_node_events_purge(timestamptz, integer) FROM PUBLIC;
