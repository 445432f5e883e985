-- The roster is built as json (text, in row order) instead of jsonb: for a 100-node session
-- jsonb's per-row tree building, key sorting and re-serialization cost more than everything
-- else in the call (docs/performance.md, "Roster"). CREATE OR REPLACE cannot change a result
-- type, so the old function is dropped here and sql/functions/runtime_node_roster.sql creates
-- the new one right after the migrations, in the same migrate run.
-- depends: 0002-sweep-schedule
DROP FUNCTION IF EXISTS control_plane.runtime_node_roster(bytea, uuid);
