-- Numeric MAJOR.MINOR comparison with arbitrary precision: never textual ('10.0' > '9.0').
--
-- Pinned *and* inlinable: a SET search_path clause would stop the planner from inlining these
-- into the queries that call them per row (the roster paid ~40 µs per node for it). Instead the
-- bodies are SQL-standard (RETURN …): PostgreSQL parses them at CREATE time and stores the
-- resolved objects, so the caller's search_path can never change what they call; every name is
-- schema-qualified as well. No STRICT either: a STRICT function is inlined only when its body is
-- strict, and CASE is not (NULL inputs still give NULL).
CREATE OR REPLACE FUNCTION control_plane.version_compare(a text, b text)
    RETURNS integer
    LANGUAGE sql
    IMMUTABLE PARALLEL SAFE
RETURN CASE
    WHEN pg_catalog.split_part(a, '.', 1)::pg_catalog.numeric
         OPERATOR(pg_catalog.<>) pg_catalog.split_part(b, '.', 1)::pg_catalog.numeric
        THEN pg_catalog.sign(pg_catalog.split_part(a, '.', 1)::pg_catalog.numeric
                             OPERATOR(pg_catalog.-) pg_catalog.split_part(b, '.', 1)::pg_catalog.numeric
             )::pg_catalog.int4
    ELSE pg_catalog.sign(pg_catalog.split_part(a, '.', 2)::pg_catalog.numeric
                         OPERATOR(pg_catalog.-) pg_catalog.split_part(b, '.', 2)::pg_catalog.numeric
         )::pg_catalog.int4
END;
COMMENT ON FUNCTION control_plane.version_compare(text, text) IS
    'Compares two MAJOR.MINOR client versions numerically, segment by segment, with arbitrary '
    'precision: returns -1, 0 or 1. 10.0 > 9.0 and 1.10 > 1.9 (never a text comparison). '
    'Inputs are expected to satisfy the client_version domain. A SQL-standard body (names bound '
    'at CREATE time) without a SET clause, so the planner inlines it.';

-- The read-only verdict of contract §4, derived, never stored.
CREATE OR REPLACE FUNCTION control_plane.version_below_floor(p_version text, p_floor text)
    RETURNS boolean
    LANGUAGE sql
    IMMUTABLE PARALLEL SAFE
RETURN p_floor IS NOT NULL
       AND control_plane.version_compare(p_version, p_floor) OPERATOR(pg_catalog.<) 0;
COMMENT ON FUNCTION control_plane.version_below_floor(text, text) IS
    'Read-only verdict: true when a floor is set and the client version is strictly below it. '
    'A NULL floor admits every version read-write. A SQL-standard body (names bound at CREATE '
    'time) without a SET clause, so the planner inlines it into per-row expressions.';
