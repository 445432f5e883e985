-- One error vocabulary and one active-slot rule (docs/design.md).
--
-- 1. runtime_node_heartbeat_batch now returns one SQLSTATE per item (text[], NULL = accepted)
--    instead of HTTP numbers. CREATE OR REPLACE cannot change a result type, so the old
--    function goes here; sql/functions re-creates it right after the migrations.
-- 2. The "active slot" predicate (registering, online, degraded) is written once, as an
--    IMMUTABLE SQL function that the partial unique index and every function use. Its body is a
--    SQL-standard body (bound at creation, so no search_path applies) and it is inlined by the
--    planner: queries that call it still match the partial index. It lives in a migration, not
--    in sql/functions: the index depends on it, so changing it means a migration (and REINDEX).
-- depends: 0002-sweep-schedule

DROP FUNCTION IF EXISTS control_plane.runtime_node_heartbeat_batch(bytea[], text[], text[]);

SET ROLE control_plane_owner;

CREATE FUNCTION control_plane.slot_is_active(p_state text)
    RETURNS boolean
    LANGUAGE sql
    IMMUTABLE STRICT PARALLEL SAFE
RETURN p_state OPERATOR(pg_catalog.=) ANY (ARRAY['registering', 'online', 'degraded']::text[]);
COMMENT ON FUNCTION control_plane.slot_is_active(text) IS
    'Internal (not granted): true when an attachment''s slot state holds its node''s one active '
    'slot (registering, online or degraded; contract §3). The partial unique index '
    'runtime_node_attachments_one_active and every function use it, so the rule is written once. '
    'IMMUTABLE with a SQL-standard body: inlined by the planner, bound at creation (no '
    'search_path). The index depends on it: change it only in a migration that reindexes.';
REVOKE ALL ON FUNCTION control_plane.slot_is_active(text) FROM PUBLIC;

-- The same rows as before (state IN (...)), now through the one definition. Built before the
-- old index goes, so the rule is enforced throughout.
CREATE UNIQUE INDEX runtime_node_attachments_one_active_new
    ON control_plane.runtime_node_attachments (node_id)
    WHERE control_plane.slot_is_active(state);
DROP INDEX control_plane.runtime_node_attachments_one_active;
ALTER INDEX control_plane.runtime_node_attachments_one_active_new
    RENAME TO runtime_node_attachments_one_active;

RESET ROLE;
