-- A hash index on presence's node_id, for the roster's per-slot presence probe (100 probes per
-- 100-node roster). The primary key's B-tree descends three levels comparing node ids under
-- the database collation (strcoll) for every probe; a hash probe reads one bucket page and
-- compares 32-bit hash codes. Measured on the bench fleet (10,000 presence rows): the whole
-- runtime_node_roster_v2 call −20 % of backend CPU (median of 8 alternating rounds;
-- docs/performance.md, "Roster"). Heartbeats do not pay for it: they never change node_id, so
-- their updates stay HOT and touch no index; only a node's first beat (an insert) adds one
-- index entry. The primary key stays: it is the upsert's ON CONFLICT target.
--
-- Building it holds a SHARE lock on presence (beats wait; ~1 s per million rows). On a large
-- fleet build it beforehand without blocking — CREATE INDEX CONCURRENTLY
-- runtime_node_presence_node_hash ON control_plane.runtime_node_presence USING hash (node_id),
-- as the owner role — and this migration finds it (IF NOT EXISTS; docs/operations.md).
-- depends: 0011-event-body

SET ROLE control_plane_owner;

CREATE INDEX IF NOT EXISTS runtime_node_presence_node_hash
    ON control_plane.runtime_node_presence USING hash (node_id);
COMMENT ON INDEX control_plane.runtime_node_presence_node_hash IS
    'Equality probes of presence by node (the roster): cheaper than the primary key''s B-tree '
    '(migration 0012).';

RESET ROLE;
