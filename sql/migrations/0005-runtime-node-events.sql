-- contract §9: transition history and the change feed. The events table, its retention state and
-- setting, the draft type the writing functions hand to runtime_node_events_append, and the
-- presence column that lets one heartbeat upsert tell whether it changed the node's health.
-- The purge job is scheduled by 0005-runtime-node-events-purge-schedule (pg_cron lives apart).
-- depends: 0002-sweep-schedule

SET ROLE control_plane_owner;

-- Append-only history, one row per change (kind names the operation). No foreign keys on purpose:
-- a key check takes KEY SHARE on the parent row, and event writers must never wait for a row
-- lock while they hold the event lock (runtime_node_events_append); attachments are never
-- deleted anyway, and history must outlive whatever a DBA does to them.
CREATE TABLE control_plane.runtime_node_events (
    -- Assigned under the event lock, so commit order = id order (runtime_node_events_append).
    id                    bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    session_id            uuid NOT NULL,
    node_id               control_plane.node_id NOT NULL,
    attachment_id         uuid NOT NULL,
    at                    timestamptz NOT NULL DEFAULT now(),
    kind                  text NOT NULL CHECK (kind IN (
                              'attached', 'declared', 'capabilities_updated', 'state_changed',
                              'health_changed', 'detached', 'revoked')),
    state                 text NOT NULL
                          CHECK (state IN ('registering', 'online', 'degraded', 'offline',
                                           'revoked')),
    previous_state        text
                          CHECK (previous_state IN ('registering', 'online', 'degraded',
                                                    'offline', 'revoked')),
    health_state          text CHECK (health_state IN ('online', 'degraded', 'offline')),
    previous_health_state text CHECK (previous_health_state IN ('online', 'degraded', 'offline')),
    actor                 text NOT NULL CHECK (actor IN ('daemon', 'owner', 'admin', 'sweep')),
    actor_participant_id  uuid,
    reason                text CHECK (char_length(reason) BETWEEN 1 AND 512),
    capabilities          jsonb CHECK (jsonb_typeof(capabilities) = 'object'),
    CONSTRAINT runtime_node_events_actor_participant
        CHECK ((actor IN ('daemon', 'owner')) = (actor_participant_id IS NOT NULL)),
    CONSTRAINT runtime_node_events_capabilities_kind
        CHECK ((capabilities IS NOT NULL)
               = (kind IN ('attached', 'declared', 'capabilities_updated'))),
    -- Only 'attached' (a brand-new slot) has no previous slot state.
    CONSTRAINT runtime_node_events_previous_state
        CHECK (previous_state IS NOT NULL OR kind = 'attached')
);
-- The feed: one session's events after a cursor.
CREATE INDEX runtime_node_events_session_id ON control_plane.runtime_node_events (session_id, id);
-- A node's history (operators, DBAs).
CREATE INDEX runtime_node_events_node_id ON control_plane.runtime_node_events (node_id, id);
COMMENT ON TABLE control_plane.runtime_node_events IS
    'Transition history and change feed (contract §9): one row per operation that changed a '
    'slot''s state, its capabilities or a node''s presence health, written in the same transaction. '
    'id ascends in commit order (ids are taken under advisory lock runtime_node_events_lock_key() '
    'held to commit), so a reader that returns id > cursor never misses an event. Purged after '
    'settings.event_retention by the scheduled job runtime-node-events-purge.';

-- What the purge removed: every id <= purged_through is gone; a cursor below it has expired.
CREATE TABLE control_plane.runtime_node_event_retention (
    singleton      boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    purged_through bigint NOT NULL DEFAULT 0 CHECK (purged_through >= 0),
    last_purged_at timestamptz,
    last_deleted   bigint NOT NULL DEFAULT 0,
    total_deleted  bigint NOT NULL DEFAULT 0
);
INSERT INTO control_plane.runtime_node_event_retention DEFAULT VALUES;

ALTER TABLE control_plane.settings
    ADD COLUMN event_retention interval NOT NULL DEFAULT '7 days',
    ADD CONSTRAINT settings_event_retention_range
        CHECK (event_retention >= interval '1 hour' AND event_retention <= interval '10 years');

-- The health the row had before the last heartbeat wrote it (NULL: that beat inserted the row).
-- Set by the heartbeat upsert itself, so its RETURNING tells a changed health from a steady beat
-- without a second statement or a row lock on the hot path. Not meaningful for other writers.
ALTER TABLE control_plane.runtime_node_presence
    ADD COLUMN health_before_last_beat text
        CHECK (health_before_last_beat IN ('online', 'degraded', 'offline'));

-- One change, as a writing function describes it to runtime_node_events_append. For the axis the
-- operation changed (slot_changed / health_changed) the function gives the previous value it read
-- under its row lock; the current values of both axes are read by the append itself, under the
-- event lock.
CREATE TYPE control_plane.runtime_node_event_draft AS (
    node_id               text,
    attachment_id         uuid,
    session_id            uuid,
    kind                  text,
    slot_changed          boolean,
    previous_state        text,
    health_changed        boolean,
    previous_health_state text,
    actor                 text,
    actor_participant_id  uuid,
    reason                text,
    capabilities          jsonb
);

RESET ROLE;

-- detach and revoke gained an optional p_reason (now stored): the old signatures would otherwise
-- stay behind as overloads (sql/functions creates the new ones).
DROP FUNCTION IF EXISTS control_plane.runtime_node_detach(bytea, text);
DROP FUNCTION IF EXISTS control_plane.runtime_node_revoke(bytea, uuid, text, boolean);
