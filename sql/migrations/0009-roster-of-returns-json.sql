-- runtime_node_roster_of (the roster body shared by member and admin reads) is built as json,
-- like runtime_node_roster (0008): CREATE OR REPLACE cannot change a result type, so the jsonb
-- version is dropped here and sql/functions/runtime_node_roster.sql recreates it right after.
-- depends: 0008-roster-returns-json
DROP FUNCTION IF EXISTS control_plane.runtime_node_roster_of(uuid);
