-- Numeric MAJOR.MINOR comparison with arbitrary precision: never textual ('10.0' > '9.0').
--
-- Pinned *and* inlinable: a SET search_path clause would stop the planner from inlining these
-- into the queries that call them per row (the roster paid ~40 µs per node for it). Instead the
-- bodies are SQL-standard (RETURN …): PostgreSQL parses them at CREATE time and stores the
-- resolved objects, so the caller's search_path can never change what they call; every name is
-- schema-qualified as well. No STRICT either: a STRICT function is inlined only when its body is
-- strict, and CASE is not (NULL inputs still give NULL).
-- The order itself, once: a version's (MAJOR, MINOR) as numerics; arrays compare element by
-- element, so the major decides before the minor.
CREATE OR REPLACE FUNCTION control_plane.version_key(p_version text)
    RETURNS numeric[]
    LANGUAGE sql
    IMMUTABLE PARALLEL SAFE
RETURN CASE WHEN p_version IS NOT NULL  -- NULL, not {NULL,NULL}: arrays sort NULL elements last
            THEN ARRAY[pg_catalog.split_part(p_version, '.', 1)::pg_catalog.numeric,
                       pg_catalog.split_part(p_version, '.', 2)::pg_catalog.numeric]
       END;
COMMENT ON FUNCTION control_plane.version_key(text) IS
    'The sort key of a MAJOR.MINOR client version: ARRAY[major, minor] as numerics (arbitrary '
    'precision; NULL for NULL), compared element by element: 10.0 > 9.0, 1.10 > 1.9. The one definition of the '
    'version order (version_compare, version_below_floor). A SQL-standard body (names bound at '
    'CREATE time) without a SET clause, so the planner inlines it.';

CREATE OR REPLACE FUNCTION control_plane.version_compare(a text, b text)
    RETURNS integer
    LANGUAGE sql
    IMMUTABLE PARALLEL SAFE
RETURN CASE
    WHEN control_plane.version_key(a) OPERATOR(pg_catalog.<) control_plane.version_key(b) THEN -1
    WHEN control_plane.version_key(a) OPERATOR(pg_catalog.>) control_plane.version_key(b) THEN 1
    WHEN control_plane.version_key(a) OPERATOR(pg_catalog.=) control_plane.version_key(b) THEN 0
END;
COMMENT ON FUNCTION control_plane.version_compare(text, text) IS
    'Compares two MAJOR.MINOR client versions numerically, segment by segment, with arbitrary '
    'precision (version_key): returns -1, 0 or 1; NULL for a NULL input. 10.0 > 9.0 and '
    '1.10 > 1.9 (never a text comparison). Inputs are expected to satisfy the client_version '
    'domain. A SQL-standard body (names bound at CREATE time) without a SET clause, so the '
    'planner inlines it.';

-- The read-only verdict of contract §4, derived, never stored.
-- On keys, for a caller that compares many versions with one floor (the roster computes the
-- floor's key once per call, not once per row).
CREATE OR REPLACE FUNCTION control_plane.version_key_below(p_key numeric[], p_floor_key numeric[])
    RETURNS boolean
    LANGUAGE sql
    IMMUTABLE PARALLEL SAFE
RETURN p_floor_key IS NOT NULL AND p_key OPERATOR(pg_catalog.<) p_floor_key;
COMMENT ON FUNCTION control_plane.version_key_below(numeric[], numeric[]) IS
    'version_below_floor on version_key values: true when a floor key is given and the version''s '
    'key is strictly below it; a NULL floor admits every version. Inlinable (SQL-standard body, '
    'no SET).';

CREATE OR REPLACE FUNCTION control_plane.version_below_floor(p_version text, p_floor text)
    RETURNS boolean
    LANGUAGE sql
    IMMUTABLE PARALLEL SAFE
RETURN control_plane.version_key_below(control_plane.version_key(p_version),
                                       control_plane.version_key(p_floor));
COMMENT ON FUNCTION control_plane.version_below_floor(text, text) IS
    'Read-only verdict: true when a floor is set and the client version is strictly below it. '
    'A NULL floor admits every version read-write. A SQL-standard body (names bound at CREATE '
    'time) without a SET clause, so the planner inlines it into per-row expressions.';
