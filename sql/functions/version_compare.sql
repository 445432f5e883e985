-- Numeric MAJOR.MINOR comparison with arbitrary precision: never textual ('10.0' > '9.0').
CREATE OR REPLACE FUNCTION control_plane.version_compare(a text, b text)
    RETURNS integer
    LANGUAGE sql
    IMMUTABLE STRICT PARALLEL SAFE
    SET search_path = control_plane, pg_catalog, pg_temp
RETURN CASE
    WHEN split_part(a, '.', 1)::numeric <> split_part(b, '.', 1)::numeric
        THEN sign(split_part(a, '.', 1)::numeric - split_part(b, '.', 1)::numeric)::integer
    ELSE sign(split_part(a, '.', 2)::numeric - split_part(b, '.', 2)::numeric)::integer
END;
COMMENT ON FUNCTION control_plane.version_compare(text, text) IS
    'Compares two MAJOR.MINOR client versions numerically, segment by segment, with arbitrary '
    'precision: returns -1, 0 or 1. 10.0 > 9.0 and 1.10 > 1.9 (never a text comparison). '
    'Inputs are expected to satisfy the client_version domain.';

-- The read-only verdict of contract §4, derived, never stored.
CREATE OR REPLACE FUNCTION control_plane.version_below_floor(p_version text, p_floor text)
    RETURNS boolean
    LANGUAGE sql
    IMMUTABLE PARALLEL SAFE
    SET search_path = control_plane, pg_catalog, pg_temp
RETURN p_floor IS NOT NULL AND control_plane.version_compare(p_version, p_floor) < 0;
COMMENT ON FUNCTION control_plane.version_below_floor(text, text) IS
    'Read-only verdict: true when a floor is set and the client version is strictly below it. '
    'A NULL floor admits every version read-write.';
