-- Runtime-node control plane: roles, schema, version domain and every table of contract §3.
-- Tables are owned by control_plane_owner (NOLOGIN) so SECURITY DEFINER functions never run
-- with a superuser's rights; the HTTP tier logs in as control_plane_api (EXECUTE only).

DO $roles$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'control_plane_owner') THEN
        CREATE ROLE control_plane_owner NOLOGIN;
    END IF;
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'control_plane_api') THEN
        CREATE ROLE control_plane_api LOGIN NOINHERIT;
    END IF;
END
$roles$;

-- The API role fails fast instead of queueing forever behind a stuck lock or query.
ALTER ROLE control_plane_api SET statement_timeout = '5s';
ALTER ROLE control_plane_api SET lock_timeout = '3s';
ALTER ROLE control_plane_api SET idle_in_transaction_session_timeout = '10s';
ALTER ROLE control_plane_api SET timezone = 'UTC';

CREATE SCHEMA control_plane AUTHORIZATION control_plane_owner;
REVOKE ALL ON SCHEMA control_plane FROM PUBLIC;
GRANT USAGE ON SCHEMA control_plane TO control_plane_api;

SET ROLE control_plane_owner;

-- Functions are EXECUTE-able by PUBLIC by default; nothing in this schema should be.
ALTER DEFAULT PRIVILEGES IN SCHEMA control_plane REVOKE EXECUTE ON FUNCTIONS FROM PUBLIC;

-- MAJOR.MINOR, numeric segments without leading zeros, at most 64 characters.
CREATE DOMAIN control_plane.client_version AS text
    CONSTRAINT client_version_format CHECK (
        char_length(VALUE) <= 64
        AND VALUE ~ '^(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)$'
    );

-- 1–256 characters, none of them a C0/C1 control character.
CREATE DOMAIN control_plane.node_id AS text
    CONSTRAINT node_id_format CHECK (
        char_length(VALUE) BETWEEN 1 AND 256
        AND VALUE !~ '[\x01-\x1f\x7f-\x9f]'
    );

CREATE TABLE control_plane.participants (
    id           uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    display_name text CHECK (char_length(display_name) BETWEEN 1 AND 200),
    created_at   timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE control_plane.participant_tokens (
    id             uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    participant_id uuid NOT NULL REFERENCES control_plane.participants (id),
    token_sha256   bytea NOT NULL UNIQUE CHECK (octet_length(token_sha256) = 32),
    label          text CHECK (char_length(label) BETWEEN 1 AND 200),
    created_at     timestamptz NOT NULL DEFAULT now(),
    expires_at     timestamptz,
    revoked_at     timestamptz,
    CHECK (expires_at IS NULL OR expires_at > created_at)
);
CREATE INDEX participant_tokens_participant_id ON control_plane.participant_tokens (participant_id);

CREATE TABLE control_plane.sessions (
    id                 uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    state              text NOT NULL DEFAULT 'active'
                       CHECK (state IN ('provisioning', 'active', 'archived', 'closed')),
    min_client_version control_plane.client_version,
    created_at         timestamptz NOT NULL DEFAULT now(),
    updated_at         timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE control_plane.session_memberships (
    session_id     uuid NOT NULL REFERENCES control_plane.sessions (id),
    participant_id uuid NOT NULL REFERENCES control_plane.participants (id),
    role           text NOT NULL
                   CHECK (role IN ('owner', 'collaborator', 'runtime_contributor', 'viewer')),
    state          text NOT NULL CHECK (state IN ('pending', 'active', 'suspended', 'revoked')),
    joined_at      timestamptz,
    updated_at     timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT session_memberships_session_participant UNIQUE (session_id, participant_id)
);
CREATE INDEX session_memberships_participant_id
    ON control_plane.session_memberships (participant_id);

CREATE TABLE control_plane.runtime_node_attachments (
    id             uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    session_id     uuid NOT NULL REFERENCES control_plane.sessions (id),
    participant_id uuid NOT NULL REFERENCES control_plane.participants (id),
    node_id        control_plane.node_id NOT NULL,
    capabilities   jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(capabilities) = 'object'),
    client_version control_plane.client_version NOT NULL,
    state          text NOT NULL DEFAULT 'registering'
                   CHECK (state IN ('registering', 'online', 'degraded', 'offline', 'revoked')),
    attached_at    timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now(),
    -- The owner must have been a member of the session (memberships are never deleted).
    FOREIGN KEY (session_id, participant_id)
        REFERENCES control_plane.session_memberships (session_id, participant_id),
    -- The attach upsert's conflict target.
    CONSTRAINT runtime_node_attachments_node_session UNIQUE (node_id, session_id)
);
-- A node has at most one active attachment across all sessions: enforced here, never in code.
CREATE UNIQUE INDEX runtime_node_attachments_one_active
    ON control_plane.runtime_node_attachments (node_id)
    WHERE state IN ('registering', 'online', 'degraded');
-- Roster order.
CREATE INDEX runtime_node_attachments_roster
    ON control_plane.runtime_node_attachments (session_id, attached_at, node_id);

-- Owner and attached_at are facts of the slot's birth: no UPDATE may rewrite them.
CREATE FUNCTION control_plane.runtime_node_attachments_guard_immutable()
    RETURNS trigger
    LANGUAGE plpgsql
    SET search_path = control_plane, pg_catalog, pg_temp
AS $fn$
BEGIN
    IF NEW.participant_id IS DISTINCT FROM OLD.participant_id
       OR NEW.attached_at IS DISTINCT FROM OLD.attached_at
       OR NEW.session_id IS DISTINCT FROM OLD.session_id
       OR NEW.node_id IS DISTINCT FROM OLD.node_id THEN
        RAISE EXCEPTION 'runtime_node_attachments: owner, session, node and attached_at are immutable'
            USING ERRCODE = 'check_violation';
    END IF;
    IF OLD.state = 'revoked' AND NEW.state <> 'revoked' THEN
        RAISE EXCEPTION 'runtime_node_attachments: revoked is terminal'
            USING ERRCODE = 'check_violation';
    END IF;
    RETURN NEW;
END
$fn$;
COMMENT ON FUNCTION control_plane.runtime_node_attachments_guard_immutable() IS
    'Trigger: refuses UPDATEs that change an attachment''s owner, session, node id or attached_at, '
    'or that leave the terminal revoked state. Applies to DBAs too.';
CREATE TRIGGER runtime_node_attachments_guard_immutable
    BEFORE UPDATE ON control_plane.runtime_node_attachments
    FOR EACH ROW EXECUTE FUNCTION control_plane.runtime_node_attachments_guard_immutable();

-- Liveness, one row per node; the hottest table. No index besides the key (HOT updates),
-- and free space on every page so an update can stay on its page.
CREATE TABLE control_plane.runtime_node_presence (
    node_id           control_plane.node_id PRIMARY KEY,
    last_heartbeat_at timestamptz NOT NULL,
    health_state      text NOT NULL CHECK (health_state IN ('online', 'degraded', 'offline'))
) WITH (fillfactor = 70);

CREATE TABLE control_plane.settings (
    singleton          boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    heartbeat_interval interval NOT NULL DEFAULT '15 seconds',
    degraded_after     interval NOT NULL DEFAULT '30 seconds',
    offline_after      interval NOT NULL DEFAULT '60 seconds',
    sweep_interval     interval NOT NULL DEFAULT '5 seconds',
    -- Outage guard: a sweep that finds the previous run older than this resumes with grace.
    gap_grace          interval NOT NULL DEFAULT '15 seconds',
    -- Outage guard: at least this many live nodes, none beating → hold offline demotions.
    stall_min_nodes    integer NOT NULL DEFAULT 10,
    -- How long pg_cron's run history is kept.
    cron_history_retention interval NOT NULL DEFAULT '1 hour',
    CONSTRAINT settings_heartbeat_before_degraded
        CHECK (heartbeat_interval > interval '0' AND heartbeat_interval < degraded_after),
    CONSTRAINT settings_degraded_before_offline CHECK (degraded_after < offline_after),
    CONSTRAINT settings_sweep_interval_range
        CHECK (sweep_interval >= interval '1 second' AND sweep_interval <= interval '30 seconds'),
    CONSTRAINT settings_gap_grace_covers_sweep CHECK (gap_grace >= sweep_interval),
    CONSTRAINT settings_stall_min_nodes_positive CHECK (stall_min_nodes >= 1),
    CONSTRAINT settings_cron_history_retention_positive
        CHECK (cron_history_retention >= interval '1 minute')
);
INSERT INTO control_plane.settings DEFAULT VALUES;

CREATE TABLE control_plane.sweep_state (
    singleton         boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    last_started_at   timestamptz,
    last_finished_at  timestamptz,
    last_duration_ms  double precision,
    last_transitions  integer NOT NULL DEFAULT 0,
    total_runs        bigint NOT NULL DEFAULT 0,
    total_transitions bigint NOT NULL DEFAULT 0,
    -- normal | gap_grace (resumed after a gap) | stall_hold (no heartbeats arrive at all)
    mode              text NOT NULL DEFAULT 'normal'
                      CHECK (mode IN ('normal', 'gap_grace', 'stall_hold')),
    resumed_at        timestamptz,
    stall_since       timestamptz
);
INSERT INTO control_plane.sweep_state DEFAULT VALUES;

RESET ROLE;
